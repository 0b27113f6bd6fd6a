#include "storage/csv.hpp"

#include "storage/error.hpp"

namespace hllm::storage {

csv_reader::csv_reader(const std::string& path) : file_(mapped_file::open(path)), name_(path) {
  bytes_ = std::string_view(reinterpret_cast<const char*>(file_.data()), file_.size());
  // A UTF-8 byte-order mark is not part of the first field.
  if (bytes_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;
}

csv_reader::csv_reader(std::string_view bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {}

void csv_reader::skip_to_next_line() {
  while (pos_ < bytes_.size() && bytes_[pos_] != '\n') ++pos_;
  if (pos_ < bytes_.size()) {
    ++pos_;
    ++next_line_;
  }
}

// Parses a quoted field starting after the opening quote; `p` ends after the closing quote.
bool csv_reader::parse_quoted(std::size_t& p, std::string& out) {
  out.clear();
  while (p < bytes_.size()) {
    char c = bytes_[p];
    if (c == '"') {
      if (p + 1 < bytes_.size() && bytes_[p + 1] == '"') {
        out.push_back('"');
        p += 2;
        continue;
      }
      ++p;
      return true;
    }
    if (c == '\n') ++next_line_;
    out.push_back(c);
    ++p;
  }
  return false;
}

csv_reader::result csv_reader::next() {
  fields_.clear();
  error_.clear();
  // Skip blank lines.
  while (pos_ < bytes_.size() && (bytes_[pos_] == '\n' || bytes_[pos_] == '\r')) {
    if (bytes_[pos_] == '\n') ++next_line_;
    ++pos_;
  }
  if (pos_ >= bytes_.size()) return result::end;
  line_ = next_line_;
  std::size_t used_scratch = 0;
  std::size_t p = pos_;
  while (true) {
    if (p < bytes_.size() && bytes_[p] == '"') {
      ++p;
      if (used_scratch == scratch_.size()) scratch_.emplace_back();
      std::string& buf = scratch_[used_scratch++];
      if (!parse_quoted(p, buf)) {
        pos_ = bytes_.size();
        error_ = "unterminated quoted field";
        return result::malformed;
      }
      fields_.emplace_back(buf);
      if (p < bytes_.size() && bytes_[p] != ',' && bytes_[p] != '\n' && bytes_[p] != '\r') {
        error_ = "unexpected character after closing quote";
        pos_ = p;
        skip_to_next_line();
        return result::malformed;
      }
    } else {
      std::size_t start = p;
      while (p < bytes_.size() && bytes_[p] != ',' && bytes_[p] != '\n' && bytes_[p] != '\r') {
        if (bytes_[p] == '"') {
          error_ = "quote inside an unquoted field";
          pos_ = p;
          skip_to_next_line();
          return result::malformed;
        }
        ++p;
      }
      fields_.emplace_back(bytes_.data() + start, p - start);
    }
    if (p >= bytes_.size()) break;
    if (bytes_[p] == ',') {
      ++p;
      continue;
    }
    // End of record: CRLF or LF (a lone CR also ends it).
    if (bytes_[p] == '\r') ++p;
    if (p < bytes_.size() && bytes_[p] == '\n') {
      ++p;
      ++next_line_;
    }
    break;
  }
  pos_ = p;
  return result::record;
}

bool is_valid_utf8(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = b[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > n) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((b[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[i + k] & 0x3F);
    }
    static constexpr uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string csv_escape(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace hllm::storage
