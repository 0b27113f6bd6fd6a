#pragma once
// Timestamps in input CSVs: integers (e.g. Unix seconds) or ISO 8601 dates and date-times, converted to Unix seconds
// UTC with plain calendar arithmetic (no timegm, no locale, no time zone database).
#include <cstdint>
#include <string>
#include <string_view>

namespace hllm::storage {

enum class timestamp_error {
  none,
  not_numeric,  // neither a number nor date-shaped ("yesterday", "12abc", "", "nan"); `why` says which
  bad_date,     // starts like a date (4 digits and '-') but is not a valid one; `why` says what is wrong
};

// Accepts, after trimming spaces and tabs:
//   an integer                                  -1, 1700000000 (taken as is)
//   a decimal number, as pandas writes floats   1600031572.0, 1600031572.75 -> 1600031572, 1.6e9 -> 1600000000:
//                                               the fraction is dropped (rounded down to the whole unit); it must
//                                               be finite and fit in 64 bits
//   YYYY-MM-DD                                  midnight UTC
//   YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM|-HH:MM]   'T' or one space between date and time; no zone = UTC
//   YYYY-MM-DD HH:MM[:SS]...                    seconds may be left out
// Fractions of a second are dropped (only order matters, ties keep file order). Ranges are checked: month 1-12, day
// within the month (leap years included), hour 0-23, minute 0-59, second 0-60 (60: a leap second, counted as the
// next minute's 0), zone offset up to 23:59.
timestamp_error parse_timestamp(std::string_view text, int64_t& out, std::string* why = nullptr);

// The unit a numeric timestamp column plainly has, told by magnitude: |v| < 1e11 is seconds (1e11 s after 1970 is the
// year 5138), < 1e14 milliseconds, < 1e17 microseconds, otherwise nanoseconds (pandas' datetime64 as integers).
enum class time_unit { seconds, milliseconds, microseconds, nanoseconds };
const char* to_string(time_unit u);
time_unit unit_by_magnitude(int64_t value);
// `value` in `unit` as whole Unix seconds, rounded down.
int64_t to_seconds(int64_t value, time_unit unit);

// The timestamp column of one file: parses each value (parse_timestamp) and records the magnitude of the numeric
// ones, so that the caller can tell a column in milliseconds from one in seconds once every row is read. ISO dates
// count as seconds. A column entirely in milliseconds (or micro-, nanoseconds) is converted to seconds with a note;
// a column that mixes units is refused, naming a line of each.
class timestamp_column {
 public:
  explicit timestamp_column(std::string file) : file_(std::move(file)) {}
  // parse_timestamp, plus bookkeeping; `line` is the row's line in the file, for messages.
  timestamp_error parse(std::string_view text, int64_t line, int64_t& out, std::string* why = nullptr);
  // The unit of every value parsed so far (seconds when none). Throws hllm::error(invalid_input) when values of
  // different units were seen, e.g.
  //   interactions.csv: the timestamp column mixes units: line 2 has 1600031572000 (milliseconds), line 7 has
  //   1600031572 (seconds); write every value in one unit
  time_unit unit() const;
  // For a column not in seconds: "interactions.csv: timestamps are in milliseconds (e.g. line 2: 1600031572000;
  // every value is >= 1e11, which in seconds would be after the year 5138): converted to seconds". Empty otherwise.
  std::string note() const;

 private:
  struct seen {
    int64_t count = 0, first_line = 0, first_value = 0;
  };
  std::string file_;
  seen by_unit_[4];
};

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil); valid for any int year.
int64_t days_from_civil(int64_t year, unsigned month, unsigned day);

}  // namespace hllm::storage
