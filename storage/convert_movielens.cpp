// `hllm convert --format movielens`: ratings.csv + movies.csv, or the ml-1m style ratings.dat + movies.dat.
#include "storage/convert_detail.hpp"

#include <algorithm>

namespace hllm::storage::convert_detail {

void converter::movielens_ratings_csv() {
  csv_reader reader(r_.interactions_input);
  auto header = header_of(reader, "ratings");
  std::vector<std::size_t> cols{column(header, "movieid"), column(header, "userid"), column(header, "timestamp")};
  require_columns(r_.interactions_input, header, cols, {"movieId", "userId", "timestamp"});
  interaction_rows(reader, header, cols, "ratings");
}

void converter::movielens_ratings_dat() {
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
std::string converter::genres_text(std::string_view g) {
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

void converter::movielens_movies_csv() {
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

void converter::movielens_movies_dat() {
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

}  // namespace hllm::storage::convert_detail
