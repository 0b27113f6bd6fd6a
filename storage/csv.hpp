#pragma once
// A streaming RFC 4180 CSV reader over a memory-mapped file: quoted fields, doubled quotes, embedded newlines,
// CRLF or LF line ends. Fields are views into the file (or into a scratch buffer when unescaping was needed), valid
// until the next call to next().
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "storage/file_io.hpp"

namespace hllm::storage {

class csv_reader {
 public:
  // Throws hllm::error(io) when the file cannot be opened.
  explicit csv_reader(const std::string& path);
  // Reads over bytes held elsewhere (tests); `name` is used in messages.
  csv_reader(std::string_view bytes, std::string name);

  enum class result { record, end, malformed };

  // Reads the next record into fields(). On `malformed`, error() says why; the reader has skipped to the next
  // line so reading can continue. Blank lines are skipped.
  result next();

  const std::vector<std::string_view>& fields() const { return fields_; }
  // 1-based line number where the current record starts.
  int64_t line() const { return line_; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  // Bytes consumed so far and in total, for progress bars.
  std::size_t position() const { return pos_; }
  std::size_t size() const { return bytes_.size(); }
  std::string_view bytes() const { return bytes_; }

 private:
  bool parse_quoted(std::size_t& p, std::string& out);
  void skip_to_next_line();

  mapped_file file_;
  std::string_view bytes_;
  std::string name_;
  std::size_t pos_ = 0;
  int64_t next_line_ = 1;
  int64_t line_ = 0;
  std::vector<std::string_view> fields_;
  std::deque<std::string> scratch_;  // deque: growing it never moves earlier strings
  std::string error_;
};

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Quotes a field for CSV output when it contains a comma, quote, CR or LF.
std::string csv_escape(std::string_view field);

}  // namespace hllm::storage
