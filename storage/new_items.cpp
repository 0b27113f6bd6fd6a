#include "storage/new_items.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "storage/csv.hpp"
#include "storage/dataset.hpp"
#include "storage/error.hpp"

namespace hllm::storage {

namespace {

std::string lower_trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

new_items_report prepare_new_items(const std::string& items_csv, const std::string& reference_dir,
                                   const std::string& out_dir, const tokenizer& tok, bool force) {
  // Never over the training dataset (--like) or the new items' file; an existing training dataset at out_dir is
  // refused before any work (dataset_replace_policy).
  const replace_policy policy = dataset_replace_policy(true, force, {items_csv, reference_dir});
  check_replaceable(out_dir, policy);
  auto ref = dataset::open(reference_dir, false);
  const auto& info = ref.info();
  std::vector<std::string> fields;
  for (std::size_t a = 0; a <= info.fields.size();) {
    auto b = info.fields.find(',', a);
    if (b == std::string::npos) b = info.fields.size();
    if (b > a) fields.push_back(info.fields.substr(a, b - a));
    a = b + 1;
  }
  if (tok.vocab_size() != info.vocab_size) {
    throw error(errc::mismatch, "new items: the tokenizer has " + std::to_string(tok.vocab_size()) +
                                    " pieces, the dataset " + reference_dir + " was tokenized with " +
                                    std::to_string(info.vocab_size));
  }
  csv_reader reader(items_csv);
  if (reader.next() != csv_reader::result::record) {
    throw error(errc::invalid_input, "items file '" + items_csv + "' is empty or its header row is malformed");
  }
  std::vector<std::string> header;
  for (auto f : reader.fields()) header.push_back(lower_trimmed(f));
  std::vector<std::string> wanted{"item_id"};
  wanted.insert(wanted.end(), fields.begin(), fields.end());
  std::vector<std::size_t> cols;
  for (const auto& w : wanted) {
    auto it = std::find(header.begin(), header.end(), lower_trimmed(w));
    if (it == header.end()) {
      throw error(errc::invalid_input, "items file '" + items_csv + "': missing column '" + w + "' (the dataset " +
                                           reference_dir + " uses the fields " + info.fields + ")");
    }
    cols.push_back(static_cast<std::size_t>(it - header.begin()));
  }
  const std::size_t need = *std::max_element(cols.begin(), cols.end()) + 1;

  new_items_report report;
  dataset_arrays a;
  a.item_title_offsets = {0, 0};
  std::set<std::string> seen;
  auto skip = [&](const std::string& why) {
    if (report.skipped++ == 0) report.first_problem = items_csv + ":" + std::to_string(reader.line()) + ": " + why;
  };
  std::vector<std::string_view> values(fields.size());
  for (;;) {
    auto r = reader.next();
    if (r == csv_reader::result::end) break;
    if (r == csv_reader::result::malformed) {
      skip(reader.error());
      continue;
    }
    const auto& f = reader.fields();
    if (f.size() < need) {
      skip("short row");
      continue;
    }
    std::string id(f[cols[0]]);
    if (id.empty() || !seen.insert(id).second) {
      skip(id.empty() ? "empty item id" : "duplicate item id '" + id + "'");
      continue;
    }
    for (std::size_t k = 0; k < fields.size(); ++k) values[k] = f[cols[k + 1]];
    auto tokens = tok.encode(item_prompt_text(info.prompt, fields, values));
    tokens.insert(tokens.begin(), tok.bos_id());
    if (static_cast<int64_t>(tokens.size()) > info.max_text_tokens) tokens.resize(info.max_text_tokens);
    a.item_tokens.insert(a.item_tokens.end(), tokens.begin(), tokens.end());
    a.item_token_offsets.push_back(a.item_tokens.size());
    a.item_raw_ids += id;
    a.item_raw_offsets.push_back(a.item_raw_ids.size());
    a.item_titles += std::string(values.empty() ? std::string_view() : values[0]);
    a.item_title_offsets.push_back(a.item_titles.size());
    a.item_train_count.push_back(0);
    ++report.items;
  }
  if (report.items == 0) {
    throw error(errc::invalid_input, "items file '" + items_csv + "': no usable item row" +
                                         (report.first_problem.empty() ? "" : " (" + report.first_problem + ")"));
  }
  dataset_info out = info;
  out.users = 0;
  out.items = report.items;
  out.interactions = 0;
  out.cold_items = report.items;
  out.tokens = static_cast<int64_t>(a.item_tokens.size());
  out.source = "new items " + items_csv + " tokenized like " + reference_dir;
  write_dataset(out_dir, out, a, tok.serialized_model(), "{}", policy);
  return report;
}

}  // namespace hllm::storage
