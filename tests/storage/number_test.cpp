#include "storage/number.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "storage/error.hpp"

using namespace hllm;
using namespace hllm::storage;

namespace {

// The message of the invalid_input error `f` throws; fails the test when it throws nothing or something else.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const hllm::error& e) {
    EXPECT_EQ(e.code(), errc::invalid_input) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

}  // namespace

TEST(number, parse_int_accepts_exactly_the_range) {
  EXPECT_EQ(parse_int<int>("0", "x", 0, 10), 0);
  EXPECT_EQ(parse_int<int>("10", "x", 0, 10), 10);
  EXPECT_EQ(parse_int<int>("-10", "x", -10, 10), -10);
  EXPECT_EQ(parse_int<int>("007", "x", 0, 10), 7);
  EXPECT_EQ(parse_int<uint64_t>("18446744073709551615", "x"), UINT64_MAX);
  EXPECT_EQ(parse_int<int64_t>("-9223372036854775808", "x"), INT64_MIN);
  EXPECT_EQ(parse_int<uint16_t>("65535", "x"), 65535);
}

TEST(number, a_port_of_70000_is_refused_not_wrapped) {
  // std::atoi("70000") stored in a uint16_t is 4464: the helper names the variable, the text and the range.
  EXPECT_EQ(error_of([] { parse_int<uint16_t>("70000", "MASTER_PORT", 1, 65535); }),
            "MASTER_PORT = '70000' is out of range (allowed: 1..65535)");
  EXPECT_EQ(error_of([] { parse_int<int>("65536", "--port", 1, 65535); }),
            "--port = '65536' is out of range (allowed: 1..65535)");
}

TEST(number, garbage_signs_and_overflow_are_errors_naming_what) {
  EXPECT_EQ(error_of([] { parse_int<int>("12abc", "RANK", 0, 100); }),
            "RANK = '12abc' is not an integer (allowed: 0..100)");
  EXPECT_EQ(error_of([] { parse_int<int>("", "RANK", 0, 100); }), "RANK = '' is empty (allowed: 0..100)");
  EXPECT_EQ(error_of([] { parse_int<int>("-1", "WORLD_SIZE", 1, 100); }),
            "WORLD_SIZE = '-1' must not be negative (allowed: 1..100)");
  EXPECT_EQ(error_of([] { parse_int<uint32_t>("-1", "n"); }), "n = '-1' must not be negative (allowed: 0..4294967295)");
  // 2^32 in a uint32_t: std::stoul truncated it to 0 on the way into 32 bits.
  EXPECT_EQ(error_of([] { parse_int<uint32_t>("4294967296", "count"); }),
            "count = '4294967296' is out of range (allowed: 0..4294967295)");
  EXPECT_EQ(error_of([] { parse_int<int64_t>("99999999999999999999", "rows"); }),
            "rows = '99999999999999999999' is out of range (allowed: an integer >= -9223372036854775808)");
  for (const char* s : {" 1", "1 ", "+1", "1.0", "0x10", "1e3", "--1", "-", "\t", "1\n"}) {
    EXPECT_NE(error_of([&] { parse_int<int>(s, "k", -100, 100); }).find("is not an integer"), std::string::npos) << s;
  }
  // Control bytes from a binary header are not echoed raw; long texts are cut.
  std::string msg = error_of([] { parse_int<int>(std::string_view("1\x1b[2J", 5), "hdr", 0, 9); });
  EXPECT_EQ(msg.find('\x1b'), std::string::npos) << msg;
  msg = error_of([] { parse_int<int>(std::string(200, '7'), "hdr", 0, 9); });
  EXPECT_LT(msg.size(), 120u) << msg;
}

TEST(number, parse_float_is_finite_and_in_range) {
  EXPECT_DOUBLE_EQ(parse_float("0.5", "lr", 0, 1), 0.5);
  EXPECT_DOUBLE_EQ(parse_float("1e-3", "lr", 0, 1), 1e-3);
  EXPECT_DOUBLE_EQ(parse_float("-2", "x"), -2);
  EXPECT_DOUBLE_EQ(parse_float(".5", "x"), 0.5);
  for (const char* s : {"nan", "inf", "-inf", "infinity", "0x1p3", "1.0x", " 1", "", "e5"}) {
    std::string m = error_of([&] { parse_float(s, "lr", 0, 1); });
    EXPECT_TRUE(m.find("is not a number") != std::string::npos || m.find("is empty") != std::string::npos)
        << s << ": " << m;
  }
  EXPECT_EQ(error_of([] { parse_float("1.5", "drop", 0, 1); }), "drop = '1.5' is out of range (allowed: 0..1)");
  EXPECT_EQ(error_of([] { parse_float("1e400", "x"); }), "x = '1e400' is out of range (allowed: a finite number)");
}

TEST(number, env_int_names_the_variable_and_tells_unset_from_bad) {
  ::unsetenv("HLLM_NUMBER_TEST");
  EXPECT_FALSE(env_int<int>("HLLM_NUMBER_TEST", 0, 10).has_value());
  EXPECT_EQ(env_int<int>("HLLM_NUMBER_TEST", 3, 0, 10), 3);
  ::setenv("HLLM_NUMBER_TEST", "7", 1);
  EXPECT_EQ(env_int<int>("HLLM_NUMBER_TEST", 0, 10), 7);
  ::setenv("HLLM_NUMBER_TEST", "70000", 1);
  EXPECT_EQ(error_of([] { env_int<uint16_t>("HLLM_NUMBER_TEST", 1, 65535); }),
            "environment variable HLLM_NUMBER_TEST = '70000' is out of range (allowed: 1..65535)");
  ::setenv("HLLM_NUMBER_TEST", "", 1);
  EXPECT_NE(error_of([] { env_int<int>("HLLM_NUMBER_TEST", 3, 0, 10); }).find("is empty"), std::string::npos);
  ::unsetenv("HLLM_NUMBER_TEST");
}

TEST(number, checked_mul_detects_overflow) {
  EXPECT_EQ(checked_mul<int64_t>(3, 4), 12);
  EXPECT_FALSE(checked_mul<int64_t>(INT64_MAX / 2 + 1, 2).has_value());
  EXPECT_FALSE(checked_mul<uint64_t>(UINT64_C(1) << 40, UINT64_C(1) << 30).has_value());
}
