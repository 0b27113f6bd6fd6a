#pragma once
// The parts of `hllm convert` (storage/convert.hpp) that its converter families share: streaming input and staged
// output helpers and the converter, whose common steps (validation, report, outputs) are in convert.cpp and whose
// per-format readers are in convert_pixelrec.cpp, convert_amazon.cpp and convert_movielens.cpp. Private to those
// files.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "storage/convert.hpp"
#include "storage/csv.hpp"
#include "storage/error.hpp"

namespace hllm::storage::convert_detail {

namespace fs = std::filesystem;

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

inline std::string base_name(const std::string& path) { return fs::path(path).filename().string(); }

[[noreturn]] inline void throw_io(const std::string& what, const std::string& path, int err) {
  throw error(errc::io, what + " '" + path + "': " + std::strerror(err));
}

// An input must be a readable regular file: checked before anything is read or written.
inline void check_input_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw_io("cannot open", path, errno);
  if (S_ISDIR(st.st_mode)) throw error(errc::io, "cannot open '" + path + "': is a directory, expected a file");
  if (::access(path.c_str(), R_OK) != 0) throw_io("cannot open", path, errno);
}

// An output file written to a temporary name beside its target and renamed over it by commit(); destroyed
// uncommitted, it removes the temporary, so a failed run leaves no partial file behind.
class staged_output {
 public:
  explicit staged_output(std::string target)
      : target_(std::move(target)),
        temp_((fs::path(target_).parent_path() / ("." + base_name(target_) + ".tmp-" + std::to_string(::getpid())))
                  .string()) {
    file_ = std::fopen(temp_.c_str(), "wbe");
    if (file_ == nullptr) throw_io("cannot create", temp_, errno);
    buffer_.resize(1 << 20);
    std::setvbuf(file_, buffer_.data(), _IOFBF, buffer_.size());
  }
  staged_output(const staged_output&) = delete;
  staged_output& operator=(const staged_output&) = delete;
  ~staged_output() {
    if (file_ != nullptr) std::fclose(file_);
    if (!committed_) ::unlink(temp_.c_str());
  }
  void write(std::string_view s) {
    if (!s.empty() && std::fwrite(s.data(), 1, s.size(), file_) != s.size()) throw_io("cannot write", temp_, errno);
  }
  // Flushes and fsyncs; the rename comes in commit() so that several outputs are renamed only once all are
  // complete.
  void finish() {
    if (std::fflush(file_) != 0) throw_io("cannot write", temp_, errno);
    if (::fsync(::fileno(file_)) != 0) throw_io("cannot fsync", temp_, errno);
    FILE* f = file_;
    file_ = nullptr;
    if (std::fclose(f) != 0) throw_io("cannot close", temp_, errno);
  }
  void commit() {
    if (::rename(temp_.c_str(), target_.c_str()) != 0) throw_io("cannot rename '" + temp_ + "' to", target_, errno);
    committed_ = true;
  }

 private:
  std::string target_, temp_;
  FILE* file_ = nullptr;
  std::vector<char> buffer_;
  bool committed_ = false;
};

// Row counts on stderr every million records, only on a terminal.
class progress_counter {
 public:
  progress_counter(bool enabled, std::string label)
      : enabled_(enabled && ::isatty(STDERR_FILENO) != 0), label_(std::move(label)) {}
  void tick(int64_t n) {
    if (enabled_ && n % 1000000 == 0) {
      std::fprintf(stderr, "\r    %s: %lld M records", label_.c_str(), static_cast<long long>(n / 1000000));
      drawn_ = true;
    }
  }
  ~progress_counter() {
    if (drawn_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  std::string label_;
  bool drawn_ = false;
};

// Reads a text file line by line (LF or CRLF), without holding it in memory.
class line_reader {
 public:
  explicit line_reader(const std::string& path) : in_(path, std::ios::binary), path_(path) {
    if (!in_) throw_io("cannot open", path, errno);
  }
  bool next(std::string& line) {
    if (!std::getline(in_, line)) {
      if (in_.bad()) throw_io("cannot read", path_, errno);
      return false;
    }
    ++line_no_;
    if (line_no_ == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // UTF-8 BOM
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }
  int64_t line() const { return line_no_; }

 private:
  std::ifstream in_;
  std::string path_;
  int64_t line_no_ = 0;
};

// Splits an ml-1m style line at "::".
inline std::vector<std::string_view> split_colons(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    std::size_t p = line.find("::", start);
    if (p == std::string_view::npos) {
      out.push_back(line.substr(start));
      return out;
    }
    out.push_back(line.substr(start, p - start));
    start = p + 2;
  }
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class converter {
 public:
  explicit converter(const convert_options& o) : o_(o) { r_.format = to_string(o.format); }

  convert_report run();

 private:
  void resolve_inputs();
  [[noreturn]] void no_interactions();
  void bad(const std::string& file, int64_t line, const std::string& reason, const std::string& detail = "");

  // One interaction: validated as `hllm prepare` would, then written; the timestamp text is kept as it is.
  void interaction(const std::string& file, int64_t line, std::string_view item, std::string_view user,
                   std::string_view ts);

  // One item record: written when some interaction refers to it, once.
  void item(const std::string& file, int64_t line, std::string_view id, std::vector<std::string>& texts);

  void write_items_header();
  // Reads the header row of a CSV; lower-cased, trimmed names.
  std::vector<std::string> header_of(csv_reader& reader, const char* what);

  static std::size_t column(const std::vector<std::string>& header, const std::string& name);
  [[noreturn]] static void missing_column(const std::string& file, const std::string& name,
                                          const std::vector<std::string>& header);

  void drop_other_columns(const std::string& file, const std::vector<std::string>& header,
                          const std::vector<std::size_t>& kept);
  // Throws missing_column for the first of `cols` that was not found (SIZE_MAX), by its name in `names`.
  static void require_columns(const std::string& file, const std::vector<std::string>& header,
                              const std::vector<std::size_t>& cols, const std::vector<const char*>& names);
  // The rows of the interactions CSV `reader` as interactions, from its columns cols = {item, user, timestamp};
  // the file's other columns are reported as dropped.
  void interaction_rows(csv_reader& reader, const std::vector<std::string>& header,
                        const std::vector<std::size_t>& cols, const char* label);

  // Reads the rows of a CSV whose columns were found; `need` = 1 + the largest column index used.
  template <class F>
  void csv_rows(csv_reader& reader, std::size_t need, int64_t& counter, const char* label, F&& on_row) {
    progress_counter progress(o_.progress, label);
    for (auto res = reader.next(); res != csv_reader::result::end; res = reader.next()) {
      ++counter;
      progress.tick(counter);
      if (res == csv_reader::result::malformed) {
        bad(reader.name(), reader.line(), "malformed CSV", reader.error());
        continue;
      }
      const auto& f = reader.fields();
      if (f.size() < need) {
        bad(reader.name(), reader.line(), "short row",
            std::to_string(f.size()) + " fields, need " + std::to_string(need));
        continue;
      }
      on_row(f);
    }
  }

  // PixelRec (convert_pixelrec.cpp)
  void pixelrec_interactions();
  void pixelrec_items();
  // Amazon Books, McAuley 2014 (convert_amazon.cpp)
  void amazon_ratings();
  static std::string text_of(const nlohmann::json& j);
  void amazon_meta();
  // MovieLens (convert_movielens.cpp)
  void movielens_ratings_csv();
  void movielens_ratings_dat();
  // "Adventure|Animation" -> "Adventure, Animation"; "(no genres listed)" -> "".
  static std::string genres_text(std::string_view g);
  void movielens_movies_csv();
  void movielens_movies_dat();

  const convert_options& o_;
  convert_report r_;
  staged_output* inter_out_ = nullptr;
  staged_output* items_out_ = nullptr;
  std::unordered_map<std::string, char> items_;  // interacted item id -> written to items.csv
  std::string row_;
};

}  // namespace hllm::storage::convert_detail
