#include <gtest/gtest.h>

#include "storage/csv.hpp"
#include "storage/error.hpp"
#include "test_util.hpp"

using hllm::storage::csv_reader;
using result = csv_reader::result;

namespace {

std::vector<std::vector<std::string>> read_all(const std::string& text, std::vector<std::string>* errors = nullptr,
                                               std::vector<int64_t>* lines = nullptr) {
  csv_reader r(text, "mem.csv");
  std::vector<std::vector<std::string>> out;
  for (auto res = r.next(); res != result::end; res = r.next()) {
    if (res == result::malformed) {
      if (errors != nullptr) errors->push_back(std::to_string(r.line()) + ":" + r.error());
      continue;
    }
    out.emplace_back(r.fields().begin(), r.fields().end());
    if (lines != nullptr) lines->push_back(r.line());
  }
  return out;
}

// The one error reading `text` reports (a test failure unless exactly one), and the records read into `rows`.
std::string one_error(const std::string& text, std::vector<std::vector<std::string>>* rows = nullptr) {
  std::vector<std::string> errors;
  auto read = read_all(text, &errors);
  if (rows != nullptr) *rows = std::move(read);
  EXPECT_EQ(errors.size(), 1u) << text;
  return errors.empty() ? "" : errors[0];
}

}  // namespace

TEST(csv, reads_plain_records_with_lf_and_crlf) {
  auto rows = read_all("a,b,c\r\n1,2,3\n4,,6");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1], (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"4", "", "6"}));
}

TEST(csv, unescapes_quoted_fields_with_commas_quotes_and_newlines) {
  std::vector<int64_t> lines;
  auto rows = read_all("id,text\n1,\"a, \"\"quoted\"\"\nline\"\n2,x\n", nullptr, &lines);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1][1], "a, \"quoted\"\nline");
  EXPECT_EQ(rows[2][0], "2");
  // The record after a field with an embedded newline starts on line 4.
  EXPECT_EQ(lines, (std::vector<int64_t>{1, 2, 4}));
}

TEST(csv, many_quoted_fields_in_one_record_stay_valid) {
  // Regression guard: views into the scratch space must survive the scratch growing.
  std::string line;
  for (int i = 0; i < 40; ++i) line += (i ? "," : "") + std::string("\"field number ") + std::to_string(i) + " with some length\"";
  auto rows = read_all(line + "\n");
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(rows[0][i], "field number " + std::to_string(i) + " with some length");
}

TEST(csv, skips_blank_lines_and_keeps_line_numbers) {
  std::vector<int64_t> lines;
  auto rows = read_all("h\n\n\nx\n", nullptr, &lines);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(lines[1], 4);
}

TEST(csv, reports_garbage_after_closing_quote_and_continues) {
  std::vector<std::vector<std::string>> rows;
  EXPECT_EQ(one_error("h\n\"a\"b,c\nok,1\n", &rows), "2:unexpected character after closing quote");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1][0], "ok");
}

TEST(csv, reports_quote_inside_unquoted_field) {
  EXPECT_NE(one_error("h\nab\"c,1\n").find("quote inside"), std::string::npos);
}

TEST(csv, reports_unterminated_quote_at_end_of_file) {
  std::vector<std::vector<std::string>> rows;
  EXPECT_EQ(one_error("h\n1,\"never closed\n2,3\n", &rows), "2:unterminated quoted field");
  EXPECT_EQ(rows.size(), 1u);
}

TEST(csv, empty_input_has_no_records) { EXPECT_TRUE(read_all("").empty()); }

TEST(csv, missing_file_is_an_io_error_naming_the_path) {
  const auto e = hllm::test::error_from([&] { csv_reader r("/nonexistent/dir/x.csv"); });
  ASSERT_TRUE(e.thrown) << "no error";
  EXPECT_EQ(e.code, hllm::errc::io);
  EXPECT_NE(e.what.find("/nonexistent/dir/x.csv"), std::string::npos);
}

TEST(csv, utf8_validation) {
  EXPECT_TRUE(hllm::storage::is_valid_utf8("plain ascii"));
  EXPECT_TRUE(hllm::storage::is_valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
  EXPECT_FALSE(hllm::storage::is_valid_utf8("\xC3"));              // truncated
  EXPECT_FALSE(hllm::storage::is_valid_utf8("\xC0\xAF"));          // overlong
  EXPECT_FALSE(hllm::storage::is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(hllm::storage::is_valid_utf8("\xFF"));
  EXPECT_FALSE(hllm::storage::is_valid_utf8("ab\x80"));
}

TEST(csv, escape_round_trips) {
  std::string field = "a,\"b\"\nc";
  auto rows = read_all(hllm::storage::csv_escape(field) + "," + hllm::storage::csv_escape("plain") + "\n");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0], field);
  EXPECT_EQ(rows[0][1], "plain");
}
