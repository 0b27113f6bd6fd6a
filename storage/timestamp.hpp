#pragma once
// Timestamps in input CSVs: integers (e.g. Unix seconds) or ISO 8601 dates and date-times, converted to Unix seconds
// UTC with plain calendar arithmetic (no timegm, no locale, no time zone database).
#include <cstdint>
#include <string>
#include <string_view>

namespace hllm::storage {

enum class timestamp_error {
  none,
  not_numeric,  // neither an integer nor date-shaped ("yesterday", "12abc", "")
  bad_date,     // starts like a date (4 digits and '-') but is not a valid one; `why` says what is wrong
};

// Accepts, after trimming spaces and tabs:
//   an integer                                  -1, 1700000000 (taken as is)
//   YYYY-MM-DD                                  midnight UTC
//   YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]   'T' or one space between date and time; no zone = UTC
//   YYYY-MM-DD HH:MM[:SS]...                    seconds may be left out
// Fractions of a second are dropped (only order matters, ties keep file order). Ranges are checked: month 1-12, day
// within the month (leap years included), hour 0-23, minute 0-59, second 0-60 (60: a leap second, counted as the
// next minute's 0), zone offset up to 23:59.
timestamp_error parse_timestamp(std::string_view text, int64_t& out, std::string* why = nullptr);

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil); valid for any int year.
int64_t days_from_civil(int64_t year, unsigned month, unsigned day);

}  // namespace hllm::storage
