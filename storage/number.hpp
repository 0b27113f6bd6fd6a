#pragma once
// Strict numbers from outside the program: environment variables, command-line flags, config values and file
// headers. One helper for all of them: the whole text must be the number (no spaces, no trailing characters, no '+',
// no '-' where the range has no negatives), the value must lie in [min, max], and the error names what was read
// (the variable, the flag, the file), the text and the allowed range: hllm::error(errc::invalid_input), e.g.
//   MASTER_PORT = '70000' is out of range (allowed: 1..65535)
// No std::atoi/std::stoul: they accept "12abc", wrap around and truncate silently.
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace hllm::storage {

namespace number_detail {
// Throws hllm::error(invalid_input): "<what> = '<text>' <problem> (allowed: <range>)". The text is cut at 40 bytes
// and control bytes are shown as '?', so a binary file header cannot garble a terminal.
[[noreturn]] void throw_bad_number(std::string_view text, std::string_view what, const char* problem,
                                   const std::string& range);
std::string range_text(long long min, long long max);
std::string range_text(unsigned long long min, unsigned long long max);
std::string range_text(double min, double max);
}  // namespace number_detail

// An integer of type T in [min, max]: decimal digits with an optional leading '-' only, nothing else.
template <class T>
T parse_int(std::string_view text, std::string_view what, T min = std::numeric_limits<T>::min(),
            T max = std::numeric_limits<T>::max()) {
  static_assert(std::is_integral_v<T> && !std::is_same_v<T, bool>);
  using wide = std::conditional_t<std::is_signed_v<T>, long long, unsigned long long>;
  const auto range = [&] { return number_detail::range_text(static_cast<wide>(min), static_cast<wide>(max)); };
  if (text.empty()) number_detail::throw_bad_number(text, what, "is empty", range());
  const bool negative = text.front() == '-';
  if (negative && min >= T(0)) number_detail::throw_bad_number(text, what, "must not be negative", range());
  // from_chars of an unsigned type refuses '-'; read the digits as the widest type of the same signedness so that
  // "4294967296" for a uint32_t is "out of range", not "not an integer".
  wide v{};
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  const bool digits_only = ptr == text.data() + text.size();
  if (ec == std::errc::result_out_of_range && digits_only) {
    number_detail::throw_bad_number(text, what, "is out of range", range());
  }
  if (ec != std::errc() || !digits_only) number_detail::throw_bad_number(text, what, "is not an integer", range());
  if (v < static_cast<wide>(min) || v > static_cast<wide>(max)) {
    number_detail::throw_bad_number(text, what, "is out of range", range());
  }
  return static_cast<T>(v);
}

// A finite decimal number in [min, max] ("0.5", "-3", "1e-3"; no "nan", "inf", hex floats or spaces).
double parse_float(std::string_view text, std::string_view what, double min = -std::numeric_limits<double>::max(),
                   double max = std::numeric_limits<double>::max());

// The environment variable `name` parsed with parse_int (the error names the variable); nullopt when it is unset.
// Set but empty is an error: `RANK= hllm ...` is a mistake, not "unset".
template <class T>
std::optional<T> env_int(const char* name, T min = std::numeric_limits<T>::min(),
                         T max = std::numeric_limits<T>::max()) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return parse_int<T>(v, std::string("environment variable ") + name, min, max);
}

// The same with a value for "unset".
template <class T>
T env_int(const char* name, T fallback, T min, T max) {
  return env_int<T>(name, min, max).value_or(fallback);
}

// a * b, or nullopt when it does not fit in T (sizes read from file headers: rows * cols * 4).
template <class T>
std::optional<T> checked_mul(T a, T b) {
  T out{};
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

}  // namespace hllm::storage
