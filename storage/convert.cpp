#include "storage/convert.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "storage/convert_detail.hpp"
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

namespace convert_detail {

convert_report converter::run() {
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

void converter::resolve_inputs() {
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

void converter::no_interactions() {
  throw error(errc::invalid_input, "interactions file '" + r_.interactions_input + "' has no usable rows");
}

void converter::bad(const std::string& file, int64_t line, const std::string& reason, const std::string& detail) {
  std::string msg = file + ":" + std::to_string(line) + ": " + reason + (detail.empty() ? "" : " (" + detail + ")");
  if (o_.strict) throw error(errc::invalid_input, msg + " [--strict]");
  ++r_.skipped[reason];
  if (r_.examples.size() < 10) r_.examples.push_back(msg);
}

// One interaction: validated as `hllm prepare` would, then written; the timestamp text is kept as it is.
void converter::interaction(const std::string& file, int64_t line, std::string_view item, std::string_view user,
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
void converter::item(const std::string& file, int64_t line, std::string_view id, std::vector<std::string>& texts) {
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

void converter::write_items_header() {
  std::string h = "item_id";
  for (const auto& f : r_.fields) h += "," + f;
  items_out_->write(h + "\n");
}

// Reads the header row of a CSV; lower-cased, trimmed names.
std::vector<std::string> converter::header_of(csv_reader& reader, const char* what) {
  if (reader.next() != csv_reader::result::record) {
    throw error(errc::invalid_input,
                std::string(what) + " file '" + reader.name() + "' is empty or its header row is malformed");
  }
  std::vector<std::string> h;
  for (auto f : reader.fields()) h.push_back(lower(trim(f)));
  return h;
}

std::size_t converter::column(const std::vector<std::string>& header, const std::string& name) {
  for (std::size_t k = 0; k < header.size(); ++k) {
    if (header[k] == name) return k;
  }
  return SIZE_MAX;
}

void converter::missing_column(const std::string& file, const std::string& name,
                                        const std::vector<std::string>& header) {
  std::string have;
  for (const auto& h : header) have += (have.empty() ? "" : ",") + h;
  throw error(errc::invalid_input, "'" + file + "': missing column '" + name + "' (header: " + have + ")");
}

void converter::drop_other_columns(const std::string& file, const std::vector<std::string>& header,
                        const std::vector<std::size_t>& kept) {
  for (std::size_t k = 0; k < header.size(); ++k) {
    if (std::find(kept.begin(), kept.end(), k) == kept.end()) {
      r_.dropped_columns.push_back(base_name(file) + ": " + (header[k].empty() ? "(unnamed)" : header[k]));
    }
  }
}

void converter::require_columns(const std::string& file, const std::vector<std::string>& header,
                                const std::vector<std::size_t>& cols, const std::vector<const char*>& names) {
  for (std::size_t k = 0; k < cols.size(); ++k) {
    if (cols[k] == SIZE_MAX) missing_column(file, names[k], header);
  }
}

void converter::interaction_rows(csv_reader& reader, const std::vector<std::string>& header,
                                 const std::vector<std::size_t>& cols, const char* label) {
  drop_other_columns(r_.interactions_input, header, cols);
  std::size_t need = std::max({cols[0], cols[1], cols[2]}) + 1;
  const std::string& name = reader.name();
  csv_rows(reader, need, r_.interaction_rows_read, label, [&](const auto& f) {
    interaction(name, reader.line(), f[cols[0]], f[cols[1]], f[cols[2]]);
  });
}

}  // namespace convert_detail

convert_report convert_dataset(const convert_options& options) { return convert_detail::converter(options).run(); }

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
