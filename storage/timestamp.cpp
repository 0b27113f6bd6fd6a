#include "storage/timestamp.hpp"

#include <charconv>

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
  if (s.empty()) return timestamp_error::not_numeric;
  // Date-shaped: four digits then '-'. Anything else must be a plain integer.
  bool date_shaped = s.size() >= 5 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) &&
                     s[4] == '-';
  if (!date_shaped) {
    int64_t v = 0;
    auto res = std::from_chars(s.data(), s.data() + s.size(), v);
    if (res.ec != std::errc() || res.ptr != s.data() + s.size()) return timestamp_error::not_numeric;
    out = v;
    return timestamp_error::none;
  }
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

}  // namespace hllm::storage
