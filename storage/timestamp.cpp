#include "storage/timestamp.hpp"

#include <charconv>
#include <cmath>

#include "storage/error.hpp"

namespace hllm::storage {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Reads exactly `n` digits at s[p..]; advances p.
bool digits(std::string_view s, std::size_t& p, int n, int& out) {
  if (p + static_cast<std::size_t>(n) > s.size()) return false;
  int v = 0;
  for (int k = 0; k < n; ++k) {
    char c = s[p + static_cast<std::size_t>(k)];
    if (!is_digit(c)) return false;
    v = v * 10 + (c - '0');
  }
  p += static_cast<std::size_t>(n);
  out = v;
  return true;
}

bool leap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : d[m - 1];
}

timestamp_error fail(std::string* why, const char* what) {
  if (why != nullptr) *why = what;
  return timestamp_error::bad_date;
}

timestamp_error not_numeric(std::string* why, const char* what) {
  if (why != nullptr) *why = what;
  return timestamp_error::not_numeric;
}

// A number: [-]digits[.digits][e[+-]digits], as integers and pandas' floats are written. Fractions are rounded down.
timestamp_error parse_number(std::string_view s, int64_t& out, std::string* why) {
  const char* const end = s.data() + s.size();
  const std::size_t sign = s[0] == '-' ? 1 : 0;
  if (sign == s.size() || !is_digit(s[sign])) return not_numeric(why, "not a number or a date (YYYY-MM-DD...)");
  int64_t whole = 0;
  auto res = std::from_chars(s.data(), end, whole);
  if (res.ec == std::errc::result_out_of_range) return not_numeric(why, "does not fit in 64 bits");
  if (res.ec != std::errc()) return not_numeric(why, "not a number or a date (YYYY-MM-DD...)");
  if (res.ptr == end) {
    out = whole;
    return timestamp_error::none;
  }
  // A fraction and/or an exponent: digits only, so "12abc" or "1.5x" stay errors.
  const char* p = res.ptr;
  bool fraction_nonzero = false;
  if (*p == '.') {
    ++p;
    const char* digits_start = p;
    for (; p != end && is_digit(*p); ++p) fraction_nonzero |= *p != '0';
    if (p == digits_start) return not_numeric(why, "expected digits after the decimal point");
  }
  if (p != end && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p != end && (*p == '+' || *p == '-')) ++p;
    const char* digits_start = p;
    while (p != end && is_digit(*p)) ++p;
    if (p == digits_start || p != end) return not_numeric(why, "not a number or a date (YYYY-MM-DD...)");
    double v = 0;
    auto r = std::from_chars(s.data(), end, v);
    // 2^63 is the first double beyond int64.
    if (r.ec != std::errc() || r.ptr != end || !std::isfinite(v) || std::floor(v) >= 9223372036854775808.0 ||
        std::floor(v) < -9223372036854775808.0) {
      return not_numeric(why, "does not fit in 64 bits");
    }
    out = static_cast<int64_t>(std::floor(v));
    return timestamp_error::none;
  }
  if (p != end) return not_numeric(why, "not a number or a date (YYYY-MM-DD...)");
  if (sign == 1 && fraction_nonzero) {
    if (whole == INT64_MIN) return not_numeric(why, "does not fit in 64 bits");
    --whole;  // -1.5 lies in the second that starts at -2
  }
  out = whole;
  return timestamp_error::none;
}

}  // namespace

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);                      // [0, 399]
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;       // [0, 365]
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;                 // [0, 146096]
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

timestamp_error parse_timestamp(std::string_view s, int64_t& out, std::string* why) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (why != nullptr) why->clear();
  if (s.empty()) return not_numeric(why, "empty");
  // Date-shaped: four digits then '-'. Anything else must be a number.
  bool date_shaped = s.size() >= 5 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) &&
                     s[4] == '-';
  if (!date_shaped) return parse_number(s, out, why);
  std::size_t p = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  digits(s, p, 4, year);
  ++p;  // '-'
  if (!digits(s, p, 2, month) || p >= s.size() || s[p] != '-') return fail(why, "expected YYYY-MM-DD");
  ++p;
  if (!digits(s, p, 2, day)) return fail(why, "expected YYYY-MM-DD");
  if (month < 1 || month > 12) return fail(why, "month out of range");
  if (day < 1 || static_cast<unsigned>(day) > days_in_month(year, static_cast<unsigned>(month))) {
    return fail(why, "day out of range for the month");
  }
  int64_t offset_seconds = 0;
  if (p < s.size()) {
    if (s[p] != 'T' && s[p] != 't' && s[p] != ' ') return fail(why, "expected 'T' or ' ' after the date");
    ++p;
    if (!digits(s, p, 2, hour) || p >= s.size() || s[p] != ':') return fail(why, "expected HH:MM after the date");
    ++p;
    if (!digits(s, p, 2, minute)) return fail(why, "expected HH:MM after the date");
    if (p < s.size() && s[p] == ':') {
      ++p;
      if (!digits(s, p, 2, second)) return fail(why, "expected two digits of seconds");
      if (p < s.size() && (s[p] == '.' || s[p] == ',')) {
        ++p;
        std::size_t start = p;
        while (p < s.size() && is_digit(s[p])) ++p;
        if (p == start) return fail(why, "expected digits after the decimal point");
      }
    }
    if (hour > 23) return fail(why, "hour out of range");
    if (minute > 59) return fail(why, "minute out of range");
    if (second > 60) return fail(why, "second out of range");
    if (p < s.size()) {
      if (s[p] == 'Z' || s[p] == 'z') {
        ++p;
      } else if (s[p] == '+' || s[p] == '-') {
        int sign = s[p] == '-' ? -1 : 1;
        ++p;
        int oh = 0, om = 0;
        if (!digits(s, p, 2, oh) || p >= s.size() || s[p] != ':' || (++p, !digits(s, p, 2, om))) {
          return fail(why, "expected a zone offset +HH:MM or -HH:MM");
        }
        if (oh > 23 || om > 59) return fail(why, "zone offset out of range");
        offset_seconds = sign * (oh * 3600 + om * 60);
      }
      if (p != s.size()) return fail(why, "unexpected text after the time");
    }
  }
  int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  // Local time = UTC + offset, so UTC = local - offset.
  out = days * 86400 + hour * 3600 + minute * 60 + second - offset_seconds;
  return timestamp_error::none;
}

const char* to_string(time_unit u) {
  switch (u) {
    case time_unit::seconds: return "seconds";
    case time_unit::milliseconds: return "milliseconds";
    case time_unit::microseconds: return "microseconds";
    case time_unit::nanoseconds: return "nanoseconds";
  }
  return "?";
}

time_unit unit_by_magnitude(int64_t v) {
  // |v| without overflow at INT64_MIN.
  const uint64_t a = v < 0 ? uint64_t{0} - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  if (a < 100000000000ull) return time_unit::seconds;
  if (a < 100000000000000ull) return time_unit::milliseconds;
  if (a < 100000000000000000ull) return time_unit::microseconds;
  return time_unit::nanoseconds;
}

int64_t to_seconds(int64_t v, time_unit u) {
  static constexpr int64_t per_second[] = {1, 1000, 1000000, 1000000000};
  const int64_t d = per_second[static_cast<int>(u)];
  int64_t q = v / d;
  if (v % d != 0 && v < 0) --q;  // round down, as fractions of a second are
  return q;
}

timestamp_error timestamp_column::parse(std::string_view text, int64_t line, int64_t& out, std::string* why) {
  const timestamp_error e = parse_timestamp(text, out, why);
  if (e != timestamp_error::none) return e;
  // ISO dates are seconds whatever their year; only numbers are judged by magnitude.
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  const bool date_shaped = text.size() >= 5 && text[4] == '-';
  seen& s = by_unit_[static_cast<int>(date_shaped ? time_unit::seconds : unit_by_magnitude(out))];
  if (s.count++ == 0) {
    s.first_line = line;
    s.first_value = out;
  }
  return e;
}

time_unit timestamp_column::unit() const {
  int found = -1;
  for (int u = 0; u < 4; ++u) {
    if (by_unit_[u].count == 0) continue;
    if (found < 0) {
      found = u;
      continue;
    }
    auto describe = [&](int k) {
      return "line " + std::to_string(by_unit_[k].first_line) + " has " + std::to_string(by_unit_[k].first_value) +
             " (" + to_string(static_cast<time_unit>(k)) + ", " + std::to_string(by_unit_[k].count) + " rows)";
    };
    throw error(errc::invalid_input, file_ + ": the timestamp column mixes units: " + describe(found) + ", " +
                                         describe(u) + "; write every value in one unit (Unix seconds or ISO dates, "
                                         "or milliseconds throughout)");
  }
  return found < 0 ? time_unit::seconds : static_cast<time_unit>(found);
}

std::string timestamp_column::note() const {
  const time_unit u = unit();
  if (u == time_unit::seconds) return "";
  static constexpr const char* bound[] = {"", "1e11", "1e14", "1e17"};
  const seen& s = by_unit_[static_cast<int>(u)];
  return file_ + ": timestamps are in " + to_string(u) + " (e.g. line " + std::to_string(s.first_line) + ": " +
         std::to_string(s.first_value) + "; every value is >= " + bound[static_cast<int>(u)] +
         ", which in seconds would be after the year 5138): converted to seconds";
}

}  // namespace hllm::storage
