#include "storage/number.hpp"

#include <cmath>
#include <cstdio>

#include "storage/error.hpp"

namespace hllm::storage {
namespace number_detail {

void throw_bad_number(std::string_view text, std::string_view what, const char* problem, const std::string& range) {
  std::string shown;
  for (std::size_t i = 0; i < text.size() && i < 40; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    shown += c < 0x20 || c == 0x7f ? '?' : static_cast<char>(c);
  }
  if (text.size() > 40) shown += "...";
  throw error(errc::invalid_input,
              std::string(what) + " = '" + shown + "' " + problem + " (allowed: " + range + ")");
}

std::string range_text(long long min, long long max) {
  if (max == std::numeric_limits<long long>::max()) return "an integer >= " + std::to_string(min);
  return std::to_string(min) + ".." + std::to_string(max);
}

std::string range_text(unsigned long long min, unsigned long long max) {
  if (max == std::numeric_limits<unsigned long long>::max()) return "an integer >= " + std::to_string(min);
  return std::to_string(min) + ".." + std::to_string(max);
}

std::string range_text(double min, double max) {
  char buf[96];
  const bool no_min = min == -std::numeric_limits<double>::max();
  const bool no_max = max == std::numeric_limits<double>::max();
  if (no_min && no_max) return "a finite number";
  if (no_max) {
    std::snprintf(buf, sizeof buf, "a number >= %g", min);
  } else if (no_min) {
    std::snprintf(buf, sizeof buf, "a number <= %g", max);
  } else {
    std::snprintf(buf, sizeof buf, "%g..%g", min, max);
  }
  return buf;
}

}  // namespace number_detail

double parse_float(std::string_view text, std::string_view what, double min, double max) {
  const auto range = [&] { return number_detail::range_text(min, max); };
  if (text.empty()) number_detail::throw_bad_number(text, what, "is empty", range());
  double v = 0;
  // from_chars reads "nan", "inf" and "infinity" too; a number starts with a digit, '-' or '.'.
  const char c0 = text.front() == '-' && text.size() > 1 ? text[1] : text.front();
  const bool starts_like_number = (c0 >= '0' && c0 <= '9') || c0 == '.';
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v, std::chars_format::general);
  const bool whole = ptr == text.data() + text.size();
  if (!starts_like_number || !whole || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    number_detail::throw_bad_number(text, what, "is not a number", range());
  }
  if (ec == std::errc::result_out_of_range || !std::isfinite(v) || v < min || v > max) {
    number_detail::throw_bad_number(text, what, "is out of range", range());
  }
  return v;
}

}  // namespace hllm::storage
