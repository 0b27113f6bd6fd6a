#include "storage/timestamp.hpp"

#include <gtest/gtest.h>

#include <ctime>

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
  for (const char* s : {"", "yesterday", "12abc", "1.5", "1e9", "2020/01/01", "99999999999999999999"}) {
    EXPECT_EQ(parse_timestamp(s, v), timestamp_error::not_numeric) << s;
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
