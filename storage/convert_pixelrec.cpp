// `hllm convert --format pixelrec`: PixelRec's interactions CSV and item info CSV.
#include "storage/convert_detail.hpp"

#include <algorithm>

namespace hllm::storage::convert_detail {

void converter::pixelrec_interactions() {
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
    require_columns(r_.interactions_input, header, cols, {"item_id", "user_id", "timestamp"});
  }
  interaction_rows(reader, header, cols, "interactions");
}

void converter::pixelrec_items() {
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

}  // namespace hllm::storage::convert_detail
