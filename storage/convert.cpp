#include "storage/convert.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "storage/csv.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/pylit.hpp"
#include "storage/timestamp.hpp"

namespace hllm::storage {

const char* to_string(convert_format f) {
  switch (f) {
    case convert_format::pixelrec: return "pixelrec";
    case convert_format::amazon_books: return "amazon-books";
    case convert_format::movielens: return "movielens";
  }
  return "?";
}

convert_format parse_convert_format(const std::string& name) {
  for (auto f : {convert_format::pixelrec, convert_format::amazon_books, convert_format::movielens}) {
    if (name == to_string(f)) return f;
  }
  throw error(errc::invalid_input, "unknown format '" + name + "' (pixelrec, amazon-books or movielens)");
}

namespace {

namespace fs = std::filesystem;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string base_name(const std::string& path) { return fs::path(path).filename().string(); }

[[noreturn]] void throw_io(const std::string& what, const std::string& path, int err) {
  throw error(errc::io, what + " '" + path + "': " + std::strerror(err));
}

// An input must be a readable regular file: checked before anything is read or written.
void check_input_file(const std::string& path) {
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
std::vector<std::string_view> split_colons(std::string_view line) {
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

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class converter {
 public:
  explicit converter(const convert_options& o) : o_(o) { r_.format = to_string(o.format); }

  convert_report run() {
    auto t0 = std::chrono::steady_clock::now();
    resolve_inputs();
    check_input_file(r_.interactions_input);
    check_input_file(r_.items_input);
    std::error_code ec;
    fs::create_directories(o_.out_dir, ec);
    if (ec || !fs::is_directory(o_.out_dir)) {
      throw error(errc::io, "cannot create output directory '" + o_.out_dir + "': " +
                                (ec ? ec.message() : std::string("not a directory")));
    }
    staged_output inter(o_.out_dir + "/interactions.csv");
    staged_output items(o_.out_dir + "/items.csv");
    inter_out_ = &inter;
    items_out_ = &items;
    inter.write("item_id,user_id,timestamp\n");
    switch (o_.format) {
      case convert_format::pixelrec:
        r_.fields = {"title", "tag", "description"};
        r_.prepare_hint = "";  // prepare takes the items file's text columns as they are
        pixelrec_interactions();
        if (r_.interactions_written == 0) no_interactions();
        pixelrec_items();
        break;
      case convert_format::amazon_books:
        r_.fields = {"title", "description"};
        r_.prepare_hint = "--kcore 5";  // the paper's 5-core
        amazon_ratings();
        if (r_.interactions_written == 0) no_interactions();
        amazon_meta();
        break;
      case convert_format::movielens:
        r_.fields = {"title", "tag"};
        r_.prepare_hint = "";
        if (ends_with(r_.interactions_input, ".dat")) {
          movielens_ratings_dat();
        } else {
          movielens_ratings_csv();
        }
        if (r_.interactions_written == 0) no_interactions();
        if (ends_with(r_.items_input, ".dat")) {
          movielens_movies_dat();
        } else {
          movielens_movies_csv();
        }
        break;
    }
    r_.items_interacted = static_cast<int64_t>(items_.size());
    r_.items_without_row = r_.items_interacted - r_.items_written;
    r_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    inter.finish();
    items.finish();
    staged_output report(o_.out_dir + "/convert_report.json");
    report.write(r_.to_json() + "\n");
    report.finish();
    inter.commit();
    items.commit();
    report.commit();
    fsync_directory(o_.out_dir);
    return r_;
  }

 private:
  void resolve_inputs() {
    const auto& in = o_.inputs;
    if (in.size() == 2) {
      r_.interactions_input = in[0];
      r_.items_input = in[1];
      return;
    }
    const char* usage = o_.format == convert_format::pixelrec ? "--in INTERACTIONS.csv --in ITEM_INFO.csv"
                        : o_.format == convert_format::amazon_books
                            ? "--in DIR or --in ratings_Books.csv --in meta_Books.json"
                            : "--in DIR or --in ratings.csv --in movies.csv";
    if (in.size() != 1) {
      throw error(errc::invalid_input, std::string(to_string(o_.format)) + ": give " + usage);
    }
    if (!fs::is_directory(in[0])) {
      if (!fs::exists(in[0])) throw_io("cannot open", in[0], ENOENT);
      throw error(errc::invalid_input, std::string(to_string(o_.format)) + ": '" + in[0] +
                                           "' is one file; give " + usage);
    }
    std::string d = in[0] + "/";
    switch (o_.format) {
      case convert_format::pixelrec:
        throw error(errc::invalid_input, "pixelrec: PixelRec's file names vary by release; give " +
                                             std::string(usage));
      case convert_format::amazon_books:
        r_.interactions_input = d + "ratings_Books.csv";
        r_.items_input = d + "meta_Books.json";
        return;
      case convert_format::movielens:
        if (fs::exists(d + "ratings.csv") || !fs::exists(d + "ratings.dat")) {
          r_.interactions_input = d + "ratings.csv";
          r_.items_input = d + "movies.csv";
        } else {
          r_.interactions_input = d + "ratings.dat";
          r_.items_input = d + "movies.dat";
        }
        return;
    }
  }

  [[noreturn]] void no_interactions() {
    throw error(errc::invalid_input, "interactions file '" + r_.interactions_input + "' has no usable rows");
  }

  void bad(const std::string& file, int64_t line, const std::string& reason, const std::string& detail = "") {
    std::string msg = file + ":" + std::to_string(line) + ": " + reason + (detail.empty() ? "" : " (" + detail + ")");
    if (o_.strict) throw error(errc::invalid_input, msg + " [--strict]");
    ++r_.skipped[reason];
    if (r_.examples.size() < 10) r_.examples.push_back(msg);
  }

  // One interaction: validated as `hllm prepare` would, then written; the timestamp text is kept as it is.
  void interaction(const std::string& file, int64_t line, std::string_view item, std::string_view user,
                   std::string_view ts) {
    item = trim(item);
    user = trim(user);
    ts = trim(ts);
    if (item.empty() || user.empty()) return bad(file, line, "empty id");
    if (!is_valid_utf8(item) || !is_valid_utf8(user)) return bad(file, line, "non-UTF-8 text");
    int64_t t = 0;
    std::string why;
    switch (parse_timestamp(ts, t, &why)) {
      case timestamp_error::none: break;
      case timestamp_error::not_numeric: return bad(file, line, "non-numeric timestamp", std::string(ts.substr(0, 40)));
      case timestamp_error::bad_date:
        return bad(file, line, "malformed date", std::string(ts.substr(0, 40)) + ": " + why);
    }
    row_.clear();
    row_ += csv_escape(item);
    row_ += ',';
    row_ += csv_escape(user);
    row_ += ',';
    row_ += csv_escape(ts);
    row_ += '\n';
    inter_out_->write(row_);
    items_.try_emplace(std::string(item), 0);
    ++r_.interactions_written;
  }

  // One item record: written when some interaction refers to it, once.
  void item(const std::string& file, int64_t line, std::string_view id, std::vector<std::string>& texts) {
    id = trim(id);
    if (id.empty()) return bad(file, line, "empty id");
    auto it = items_.find(std::string(id));
    if (it == items_.end()) {
      ++r_.item_rows_unused;
      return;
    }
    if (it->second != 0) return bad(file, line, "duplicate item row");
    bool repaired = false, any = false;
    for (auto& t : texts) {
      repaired = repair_utf8(t) || repaired;
      any = any || !trim(t).empty();
    }
    if (repaired) ++r_.text_repaired;
    if (!any) ++r_.items_without_text;
    if (trim(texts[0]).empty()) ++r_.items_without_title;
    row_.clear();
    row_ += csv_escape(id);
    for (const auto& t : texts) {
      row_ += ',';
      row_ += csv_escape(trim(t));
    }
    row_ += '\n';
    items_out_->write(row_);
    it->second = 1;
    ++r_.items_written;
  }

  void write_items_header() {
    std::string h = "item_id";
    for (const auto& f : r_.fields) h += "," + f;
    items_out_->write(h + "\n");
  }

  // Reads the header row of a CSV; lower-cased, trimmed names.
  std::vector<std::string> header_of(csv_reader& reader, const char* what) {
    if (reader.next() != csv_reader::result::record) {
      throw error(errc::invalid_input,
                  std::string(what) + " file '" + reader.name() + "' is empty or its header row is malformed");
    }
    std::vector<std::string> h;
    for (auto f : reader.fields()) h.push_back(lower(trim(f)));
    return h;
  }

  static std::size_t column(const std::vector<std::string>& header, const std::string& name) {
    for (std::size_t k = 0; k < header.size(); ++k) {
      if (header[k] == name) return k;
    }
    return SIZE_MAX;
  }

  [[noreturn]] static void missing_column(const std::string& file, const std::string& name,
                                          const std::vector<std::string>& header) {
    std::string have;
    for (const auto& h : header) have += (have.empty() ? "" : ",") + h;
    throw error(errc::invalid_input, "'" + file + "': missing column '" + name + "' (header: " + have + ")");
  }

  void drop_other_columns(const std::string& file, const std::vector<std::string>& header,
                          const std::vector<std::size_t>& kept) {
    for (std::size_t k = 0; k < header.size(); ++k) {
      if (std::find(kept.begin(), kept.end(), k) == kept.end()) {
        r_.dropped_columns.push_back(base_name(file) + ": " + (header[k].empty() ? "(unnamed)" : header[k]));
      }
    }
  }

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

  // --- PixelRec -------------------------------------------------------------------------------------------------

  void pixelrec_interactions() {
    csv_reader reader(r_.interactions_input);
    auto header = header_of(reader, "interactions");
    std::vector<std::size_t> cols{column(header, "item_id"), column(header, "user_id"), column(header, "timestamp")};
    int found = 0;
    for (auto c : cols) found += c != SIZE_MAX;
    if (found == 0 && header.size() >= 3) {
      // As `hllm prepare` and the reference: a header without these names is read by position.
      cols = {0, 1, 2};
      r_.notes.push_back(base_name(r_.interactions_input) +
                         ": no column named item_id, user_id or timestamp; read by position (item, user, timestamp) "
                         "after the first row");
    } else {
      const char* names[] = {"item_id", "user_id", "timestamp"};
      for (int k = 0; k < 3; ++k) {
        if (cols[k] == SIZE_MAX) missing_column(r_.interactions_input, names[k], header);
      }
    }
    drop_other_columns(r_.interactions_input, header, cols);
    std::size_t need = std::max({cols[0], cols[1], cols[2]}) + 1;
    const std::string& name = reader.name();
    csv_rows(reader, need, r_.interaction_rows_read, "interactions", [&](const auto& f) {
      interaction(name, reader.line(), f[cols[0]], f[cols[1]], f[cols[2]]);
    });
  }

  void pixelrec_items() {
    csv_reader reader(r_.items_input);
    auto header = header_of(reader, "item info");
    std::size_t id = column(header, "item_id");
    if (id == SIZE_MAX) missing_column(r_.items_input, "item_id", header);
    std::vector<std::size_t> cols{id};
    std::vector<std::size_t> text_cols;
    for (const auto& f : r_.fields) {
      std::size_t c = column(header, f);
      text_cols.push_back(c);
      if (c == SIZE_MAX) {
        r_.notes.push_back(base_name(r_.items_input) + ": no column '" + f + "'; written empty");
      } else {
        cols.push_back(c);
      }
    }
    if (cols.size() == 1) {
      throw error(errc::invalid_input, "'" + r_.items_input + "': none of the text columns title, tag, description");
    }
    drop_other_columns(r_.items_input, header, cols);
    write_items_header();
    std::size_t need = *std::max_element(cols.begin(), cols.end()) + 1;
    std::vector<std::string> texts(r_.fields.size());
    const std::string& name = reader.name();
    csv_rows(reader, need, r_.item_rows_read, "item info", [&](const auto& f) {
      for (std::size_t k = 0; k < texts.size(); ++k) {
        texts[k] = text_cols[k] == SIZE_MAX ? std::string() : std::string(f[text_cols[k]]);
      }
      item(name, reader.line(), f[id], texts);
    });
  }

  // --- Amazon Books (McAuley 2014) ------------------------------------------------------------------------------

  void amazon_ratings() {
    csv_reader reader(r_.interactions_input);
    const std::string& name = reader.name();
    r_.dropped_columns.push_back(base_name(name) + ": rating (column 3)");
    progress_counter progress(o_.progress, "ratings");
    for (auto res = reader.next(); res != csv_reader::result::end; res = reader.next()) {
      ++r_.interaction_rows_read;
      progress.tick(r_.interaction_rows_read);
      if (res == csv_reader::result::malformed) {
        bad(name, reader.line(), "malformed CSV", reader.error());
        continue;
      }
      const auto& f = reader.fields();
      if (f.size() < 4) {
        bad(name, reader.line(), "short row", std::to_string(f.size()) + " fields, need 4 (user,item,rating,timestamp)");
        continue;
      }
      if (r_.interaction_rows_read == 1) {
        // The published file has no header; a header someone added (a timestamp field with letters) is skipped.
        int64_t t = 0;
        std::string_view ts = trim(f[3]);
        bool letters = std::any_of(ts.begin(), ts.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
        if (letters && parse_timestamp(ts, t) != timestamp_error::none) {
          r_.notes.push_back(base_name(name) + ": line 1 taken as a header (" + std::string(ts.substr(0, 40)) + ")");
          --r_.interaction_rows_read;
          continue;
        }
      }
      interaction(name, reader.line(), f[1], f[0], f[3]);
    }
  }

  static std::string text_of(const nlohmann::json& j) {
    if (j.is_null()) return {};
    if (j.is_string()) return j.get<std::string>();
    if (j.is_array()) {  // the 2018 metadata has description as a list of paragraphs
      std::string out;
      for (const auto& e : j) {
        std::string s = text_of(e);
        if (s.empty()) continue;
        if (!out.empty()) out += ' ';
        out += s;
      }
      return out;
    }
    return j.dump();
  }

  void amazon_meta() {
    write_items_header();
    line_reader in(r_.items_input);
    const std::string& name = r_.items_input;
    std::set<std::string> other_keys;
    std::vector<std::string> texts(2);
    std::string line;
    progress_counter progress(o_.progress, "metadata");
    while (in.next(line)) {
      if (trim(line).empty()) continue;
      ++r_.item_rows_read;
      progress.tick(r_.item_rows_read);
      nlohmann::json j;
      try {
        j = parse_python_literal(line);
      } catch (const error& e) {
        bad(name, in.line(), "malformed metadata line", e.what());
        continue;
      }
      if (!j.is_object()) {
        bad(name, in.line(), "metadata line is not a dict");
        continue;
      }
      auto asin = j.find("asin");
      if (asin == j.end() || !asin->is_string()) {
        bad(name, in.line(), "metadata line without asin");
        continue;
      }
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (other_keys.size() < 64 && it.key() != "asin" && it.key() != "title" && it.key() != "description") {
          other_keys.insert(it.key());
        }
      }
      auto title = j.find("title");
      auto desc = j.find("description");
      texts[0] = title == j.end() ? std::string() : text_of(*title);
      texts[1] = desc == j.end() ? std::string() : text_of(*desc);
      item(name, in.line(), asin->get_ref<const std::string&>(), texts);
    }
    for (const auto& k : other_keys) r_.dropped_columns.push_back(base_name(name) + ": " + k);
  }

  // --- MovieLens ------------------------------------------------------------------------------------------------

  void movielens_ratings_csv() {
    csv_reader reader(r_.interactions_input);
    auto header = header_of(reader, "ratings");
    std::vector<std::size_t> cols{column(header, "movieid"), column(header, "userid"), column(header, "timestamp")};
    const char* names[] = {"movieId", "userId", "timestamp"};
    for (int k = 0; k < 3; ++k) {
      if (cols[k] == SIZE_MAX) missing_column(r_.interactions_input, names[k], header);
    }
    drop_other_columns(r_.interactions_input, header, cols);
    std::size_t need = std::max({cols[0], cols[1], cols[2]}) + 1;
    const std::string& name = reader.name();
    csv_rows(reader, need, r_.interaction_rows_read, "ratings", [&](const auto& f) {
      interaction(name, reader.line(), f[cols[0]], f[cols[1]], f[cols[2]]);
    });
  }

  void movielens_ratings_dat() {
    line_reader in(r_.interactions_input);
    const std::string& name = r_.interactions_input;
    r_.dropped_columns.push_back(base_name(name) + ": Rating (field 3)");
    std::string line;
    progress_counter progress(o_.progress, "ratings");
    while (in.next(line)) {
      if (trim(line).empty()) continue;
      ++r_.interaction_rows_read;
      progress.tick(r_.interaction_rows_read);
      auto f = split_colons(line);
      if (f.size() < 4) {
        bad(name, in.line(), "short row", std::to_string(f.size()) + " fields, need 4 (UserID::MovieID::Rating::Timestamp)");
        continue;
      }
      interaction(name, in.line(), f[1], f[0], f[3]);
    }
  }

  // "Adventure|Animation" -> "Adventure, Animation"; "(no genres listed)" -> "".
  static std::string genres_text(std::string_view g) {
    g = trim(g);
    if (g == "(no genres listed)") return {};
    std::string out;
    std::size_t start = 0;
    while (start <= g.size()) {
      std::size_t p = g.find('|', start);
      if (p == std::string_view::npos) p = g.size();
      std::string_view one = trim(g.substr(start, p - start));
      if (!one.empty() && one != "(no genres listed)") {
        if (!out.empty()) out += ", ";
        out += one;
      }
      start = p + 1;
    }
    return out;
  }

  void movielens_movies_csv() {
    csv_reader reader(r_.items_input);
    auto header = header_of(reader, "movies");
    std::size_t id = column(header, "movieid"), title = column(header, "title"), genres = column(header, "genres");
    if (id == SIZE_MAX) missing_column(r_.items_input, "movieId", header);
    if (title == SIZE_MAX) missing_column(r_.items_input, "title", header);
    std::vector<std::size_t> cols{id, title};
    if (genres == SIZE_MAX) {
      r_.notes.push_back(base_name(r_.items_input) + ": no column 'genres'; tag written empty");
    } else {
      cols.push_back(genres);
    }
    drop_other_columns(r_.items_input, header, cols);
    write_items_header();
    std::size_t need = *std::max_element(cols.begin(), cols.end()) + 1;
    std::vector<std::string> texts(2);
    const std::string& name = reader.name();
    csv_rows(reader, need, r_.item_rows_read, "movies", [&](const auto& f) {
      texts[0] = std::string(f[title]);
      texts[1] = genres == SIZE_MAX ? std::string() : genres_text(f[genres]);
      item(name, reader.line(), f[id], texts);
    });
  }

  void movielens_movies_dat() {
    write_items_header();
    line_reader in(r_.items_input);
    const std::string& name = r_.items_input;
    std::vector<std::string> texts(2);
    std::string line;
    while (in.next(line)) {
      if (trim(line).empty()) continue;
      ++r_.item_rows_read;
      // MovieID::Title::Genres; a title holding "::" stays whole (split at the first and the last separator).
      std::size_t a = line.find("::"), b = line.rfind("::");
      if (a == std::string::npos || b == a) {
        bad(name, in.line(), "short row", "need MovieID::Title::Genres");
        continue;
      }
      texts[0] = line.substr(a + 2, b - a - 2);
      texts[1] = genres_text(std::string_view(line).substr(b + 2));
      item(name, in.line(), std::string_view(line).substr(0, a), texts);
    }
  }

 private:
  const convert_options& o_;
  convert_report r_;
  staged_output* inter_out_ = nullptr;
  staged_output* items_out_ = nullptr;
  std::unordered_map<std::string, char> items_;  // interacted item id -> written to items.csv
  std::string row_;
};

}  // namespace

convert_report convert_dataset(const convert_options& options) { return converter(options).run(); }

std::string convert_report::to_json() const {
  nlohmann::json j{{"format", format},
                   {"interactions_input", interactions_input},
                   {"items_input", items_input},
                   {"interaction_rows_read", interaction_rows_read},
                   {"interactions_written", interactions_written},
                   {"items_interacted", items_interacted},
                   {"item_rows_read", item_rows_read},
                   {"items_written", items_written},
                   {"items_without_text", items_without_text},
                   {"items_without_title", items_without_title},
                   {"items_without_row", items_without_row},
                   {"item_rows_unused", item_rows_unused},
                   {"text_repaired", text_repaired},
                   {"fields", fields},
                   {"dropped_columns", dropped_columns},
                   {"notes", notes},
                   {"skipped", skipped},
                   {"examples", examples},
                   {"prepare_hint", prepare_hint},
                   {"seconds", seconds}};
  return j.dump(1);
}

std::string convert_report::summary() const {
  std::ostringstream s;
  std::string field_list;
  for (const auto& f : fields) field_list += (field_list.empty() ? "" : ",") + f;
  s << "  interactions      " << interactions_written << " written (of " << interaction_rows_read << " rows in "
    << interactions_input << ")\n"
    << "  items             " << items_written << " written as item_id," << field_list << " (of " << item_rows_read
    << " records in " << items_input << ")\n"
    << "  interacted items  " << items_interacted << "; " << items_without_row
    << " without an item record (not written; prepare keeps them with the prompt alone)\n"
    << "  items w/o text    " << items_without_text << " (every text field empty; kept: the prompt alone); "
    << items_without_title << " without a title\n";
  if (item_rows_unused > 0) s << "  item rows unused  " << item_rows_unused << " (no interaction; not written)\n";
  if (text_repaired > 0) s << "  text repaired     " << text_repaired << " records not UTF-8, read as Latin-1\n";
  if (!dropped_columns.empty()) {  // grouped by file: "file: a, b, c"
    std::vector<std::pair<std::string, std::string>> groups;
    for (const auto& d : dropped_columns) {
      std::size_t colon = d.find(": ");
      std::string file = d.substr(0, colon), col = colon == std::string::npos ? "" : d.substr(colon + 2);
      if (groups.empty() || groups.back().first != file) groups.emplace_back(file, col);
      else groups.back().second += ", " + col;
    }
    for (const auto& [file, cols] : groups) s << "  dropped columns   " << file << ": " << cols << "\n";
  }
  int64_t total = 0;
  for (const auto& [reason, n] : skipped) total += n;
  s << "  records skipped   " << total << "\n";
  for (const auto& [reason, n] : skipped) s << "    " << reason << ": " << n << "\n";
  for (const auto& e : examples) s << "    e.g. " << e << "\n";
  for (const auto& n : notes) s << "  note: " << n << "\n";
  char buf[64];
  std::snprintf(buf, sizeof buf, "  time              %.1fs\n", seconds);
  s << buf;
  return s.str();
}

}  // namespace hllm::storage
