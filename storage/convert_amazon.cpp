// `hllm convert --format amazon-books`: ratings_Books.csv and meta_Books.json (McAuley 2014).
#include "storage/convert_detail.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "storage/pylit.hpp"
#include "storage/timestamp.hpp"

namespace hllm::storage::convert_detail {

void converter::amazon_ratings() {
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

std::string converter::text_of(const nlohmann::json& j) {
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

void converter::amazon_meta() {
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

}  // namespace hllm::storage::convert_detail
