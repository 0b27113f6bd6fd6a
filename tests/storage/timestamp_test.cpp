#include "storage/timestamp.hpp"

#include <gtest/gtest.h>

#include <ctime>

#include "storage/error.hpp"

using namespace hllm::storage;

namespace {

int64_t ts(const char* s) {
  int64_t v = -999;
  std::string why;
  EXPECT_EQ(parse_timestamp(s, v, &why), timestamp_error::none) << s << ": " << why;
  return v;
}

std::string bad(const char* s) {
  int64_t v = 0;
  std::string why;
  EXPECT_EQ(parse_timestamp(s, v, &why), timestamp_error::bad_date) << s;
  return why;
}

}  // namespace

TEST(timestamp, integers_pass_through) {
  EXPECT_EQ(ts("1700000000"), 1700000000);
  EXPECT_EQ(ts(" -5 "), -5);
  EXPECT_EQ(ts("0"), 0);
  int64_t v = 0;
  for (const char* s : {"", "yesterday", "12abc", "1.5x", "1e", "2020/01/01", "99999999999999999999"}) {
    EXPECT_EQ(parse_timestamp(s, v), timestamp_error::not_numeric) << s;
  }
}

TEST(timestamp, floats_as_pandas_writes_them_are_whole_seconds_rounded_down) {
  // Before: "1600031572.0" was "non-numeric", and a file of them ended in "no usable rows".
  EXPECT_EQ(ts("1600031572.0"), 1600031572);
  EXPECT_EQ(ts("1600031572.000"), 1600031572);
  EXPECT_EQ(ts("1600031572.999"), 1600031572);  // fraction dropped, as for ISO times
  EXPECT_EQ(ts(" 1600031572.5\t"), 1600031572);
  EXPECT_EQ(ts("-1.5"), -2);                     // rounded down: the second that holds it
  EXPECT_EQ(ts("-0.0"), 0);
  EXPECT_EQ(ts("1.6e9"), 1600000000);
  EXPECT_EQ(ts("1.600031572E+09"), 1600031572);
  EXPECT_EQ(ts("1600031572000.0"), 1600031572000);  // milliseconds stay as they are here: the column decides
}

TEST(timestamp, a_rejected_value_says_why) {
  auto why = [](const char* s) {
    int64_t v = 0;
    std::string w;
    EXPECT_EQ(parse_timestamp(s, v, &w), timestamp_error::not_numeric) << s;
    return w;
  };
  EXPECT_EQ(why(""), "empty");
  EXPECT_EQ(why("  "), "empty");
  EXPECT_EQ(why("yesterday"), "not a number or a date (YYYY-MM-DD...)");
  EXPECT_EQ(why("12abc"), "not a number or a date (YYYY-MM-DD...)");
  EXPECT_EQ(why("nan"), "not a number or a date (YYYY-MM-DD...)");
  EXPECT_EQ(why("inf"), "not a number or a date (YYYY-MM-DD...)");
  EXPECT_EQ(why("+5"), "not a number or a date (YYYY-MM-DD...)");
  EXPECT_EQ(why("1."), "expected digits after the decimal point");
  EXPECT_EQ(why("99999999999999999999"), "does not fit in 64 bits");
  EXPECT_EQ(why("1e19"), "does not fit in 64 bits");
  EXPECT_EQ(why("1e400"), "does not fit in 64 bits");
}

TEST(timestamp, units_by_magnitude_and_conversion_round_down) {
  EXPECT_EQ(unit_by_magnitude(1600031572), time_unit::seconds);
  EXPECT_EQ(unit_by_magnitude(99999999999), time_unit::seconds);       // the year 5138
  EXPECT_EQ(unit_by_magnitude(100000000000), time_unit::milliseconds);
  EXPECT_EQ(unit_by_magnitude(1600031572000), time_unit::milliseconds);
  EXPECT_EQ(unit_by_magnitude(1600031572000000), time_unit::microseconds);
  EXPECT_EQ(unit_by_magnitude(1600031572000000000), time_unit::nanoseconds);
  EXPECT_EQ(unit_by_magnitude(INT64_MIN), time_unit::nanoseconds);
  EXPECT_EQ(unit_by_magnitude(-5), time_unit::seconds);
  EXPECT_EQ(to_seconds(1600031572999, time_unit::milliseconds), 1600031572);
  EXPECT_EQ(to_seconds(-1, time_unit::milliseconds), -1);
  EXPECT_EQ(to_seconds(1600031572123456789, time_unit::nanoseconds), 1600031572);
  EXPECT_EQ(to_seconds(42, time_unit::seconds), 42);
}

TEST(timestamp, a_column_in_milliseconds_is_detected_and_noted) {
  timestamp_column col("inter.csv");
  int64_t v = 0;
  EXPECT_EQ(col.parse("1600031572000", 2, v), timestamp_error::none);
  EXPECT_EQ(col.parse("1600031573500.0", 3, v), timestamp_error::none);
  EXPECT_EQ(v, 1600031573500);
  EXPECT_EQ(col.unit(), time_unit::milliseconds);
  EXPECT_EQ(col.note(),
            "inter.csv: timestamps are in milliseconds (e.g. line 2: 1600031572000; every value is >= 1e11, which in "
            "seconds would be after the year 5138): converted to seconds");
  timestamp_column secs("s.csv");
  EXPECT_EQ(secs.parse("1600031572", 2, v), timestamp_error::none);
  EXPECT_EQ(secs.parse("2021-07-12", 3, v), timestamp_error::none);
  EXPECT_EQ(secs.parse("9999-12-31", 4, v), timestamp_error::none);  // a date is seconds whatever its year
  EXPECT_EQ(secs.unit(), time_unit::seconds);
  EXPECT_EQ(secs.note(), "");
  EXPECT_EQ(timestamp_column("empty.csv").unit(), time_unit::seconds);
}

TEST(timestamp, a_column_mixing_units_is_refused_naming_a_line_of_each) {
  timestamp_column col("inter.csv");
  int64_t v = 0;
  std::string why;
  EXPECT_EQ(col.parse("1600031572000", 2, v), timestamp_error::none);
  EXPECT_EQ(col.parse("1600031573000", 3, v), timestamp_error::none);
  EXPECT_EQ(col.parse("junk", 4, v, &why), timestamp_error::not_numeric);  // rejected rows do not count
  EXPECT_EQ(col.parse("1600031574", 7, v), timestamp_error::none);
  try {
    col.unit();
    FAIL() << "mixed units accepted";
  } catch (const hllm::error& e) {
    EXPECT_EQ(e.code(), hllm::errc::invalid_input);
    EXPECT_EQ(std::string(e.what()),
              "inter.csv: the timestamp column mixes units: line 7 has 1600031574 (seconds, 1 rows), line 2 has "
              "1600031572000 (milliseconds, 2 rows); write every value in one unit (Unix seconds or ISO dates, or "
              "milliseconds throughout)");
  }
}

TEST(timestamp, days_from_civil_agrees_with_timegm_over_four_centuries) {
  // Cross-check against the C library on every 13th day from 1900 to 2300 (leap rules of 1900, 2000, 2100).
  for (int64_t day = days_from_civil(1900, 1, 1); day < days_from_civil(2300, 1, 1); day += 13) {
    std::time_t t = static_cast<std::time_t>(day * 86400);
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    EXPECT_EQ(days_from_civil(tm.tm_year + 1900, static_cast<unsigned>(tm.tm_mon + 1),
                              static_cast<unsigned>(tm.tm_mday)),
              day);
  }
  EXPECT_EQ(days_from_civil(1970, 1, 1), 0);
  EXPECT_EQ(days_from_civil(1969, 12, 31), -1);
}

TEST(timestamp, iso_dates_and_date_times_are_unix_seconds_utc) {
  EXPECT_EQ(ts("1970-01-01"), 0);
  EXPECT_EQ(ts("2021-02-28"), 1614470400);
  EXPECT_EQ(ts("2000-02-29"), 951782400);  // 2000 is a leap year
  EXPECT_EQ(ts("2023-11-14T22:13:20"), 1700000000);
  EXPECT_EQ(ts("2023-11-14T22:13:20Z"), 1700000000);
  EXPECT_EQ(ts("2023-11-14 22:13:20"), 1700000000);
  EXPECT_EQ(ts("2023-11-14 22:13"), 1700000000 - 20);
  EXPECT_EQ(ts("2023-11-14T22:13:20.987"), 1700000000);  // fraction dropped
  EXPECT_EQ(ts("2023-11-14T22:13:20.5Z"), 1700000000);
  EXPECT_EQ(ts("2023-11-15T00:13:20+02:00"), 1700000000);
  EXPECT_EQ(ts("2023-11-14T16:43:20-05:30"), 1700000000);
  EXPECT_EQ(ts("2023-11-14 22:13:20+00:00"), 1700000000);
  EXPECT_EQ(ts("  2023-11-14t22:13:20z\t"), 1700000000);
  EXPECT_EQ(ts("1969-12-31T23:59:59"), -1);
  EXPECT_EQ(ts("2016-12-31T23:59:60Z"), ts("2017-01-01"));  // a leap second counts as the next minute's 0
}

TEST(timestamp, malformed_dates_say_what_is_wrong) {
  EXPECT_EQ(bad("2021-02-29"), "day out of range for the month");  // 2021 is no leap year
  EXPECT_EQ(bad("1900-02-29"), "day out of range for the month");  // nor is 1900
  EXPECT_EQ(bad("2021-04-31"), "day out of range for the month");
  EXPECT_EQ(bad("2021-00-10"), "month out of range");
  EXPECT_EQ(bad("2021-13-01"), "month out of range");
  EXPECT_EQ(bad("2021-1-01"), "expected YYYY-MM-DD");
  EXPECT_EQ(bad("2021-01-1"), "expected YYYY-MM-DD");
  EXPECT_EQ(bad("2021-01-01X10:00:00"), "expected 'T' or ' ' after the date");
  EXPECT_EQ(bad("2021-01-01T24:00:00"), "hour out of range");
  EXPECT_EQ(bad("2021-01-01T10:60:00"), "minute out of range");
  EXPECT_EQ(bad("2021-01-01T10:00:61"), "second out of range");
  EXPECT_EQ(bad("2021-01-01T10"), "expected HH:MM after the date");
  EXPECT_EQ(bad("2021-01-01T10:00:00."), "expected digits after the decimal point");
  EXPECT_EQ(bad("2021-01-01T10:00:00+0100"), "expected a zone offset +HH:MM or -HH:MM");
  EXPECT_EQ(bad("2021-01-01T10:00:00+24:00"), "zone offset out of range");
  EXPECT_EQ(bad("2021-01-01T10:00:00 UTC"), "unexpected text after the time");
  EXPECT_EQ(bad("2021-01-01T10:00:00Zjunk"), "unexpected text after the time");
}
