// `hllm recommend`: the top-k items for one user: the User LLM embeds the user's latest history (item rows from the
// job's embedding cache), the ANN index (hllm index build) finds the nearest items by cosine. Prints item ids, titles
// and scores, or one JSON document with --json.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "launch/stage3.hpp"
#include "storage/ann_index.hpp"
#include "storage/error.hpp"

namespace {

using namespace hllm;
using nlohmann::json;

struct options {
  std::string job, user, index, data, checkpoint;
  std::size_t k = 10;
  std::size_t ef = 0;
  bool exclude_seen = false, json_out = false, verify = true;
  int threads = 2;
};

int recommend(const options& o) {
  auto j = stage3::open_job(o.job, o.data, o.checkpoint);
  const std::string index_dir = o.index.empty() ? o.job + "/export/items.index" : o.index;
  auto idx = storage::ann_index::load(index_dir);
  const std::string version = stage3::item_version(j);
  const std::string index_version = idx.meta().value("item_version", std::string());
  if (index_version != version) {
    throw error(errc::mismatch, "index " + index_dir + " holds items of Item-LLM version " + index_version +
                                    ", the job's is " + version + " (" + j.item_checkpoint +
                                    "): export and index the items again (hllm export items, hllm index build)");
  }
  if (o.ef > 0) idx.set_ef_search(std::max(o.ef, o.k));
  auto d = storage::dataset::open(j.data_dir, o.verify);
  const int64_t user = stage3::find_user(d, o.user);
  auto cache = storage::cache_reader::open(j.cache_dir, version);
  stage3::user_encoder enc(j.user_checkpoint, cache, o.threads);
  if (enc.dim() != idx.dim()) {
    throw error(errc::mismatch, "index " + index_dir + " has dim " + std::to_string(idx.dim()) + ", the User LLM of " +
                                    j.user_checkpoint + " " + std::to_string(enc.dim()));
  }
  const auto history = stage3::latest_history(d, user, j.max_history);
  const auto emb = enc.embed({history}, {stage3::latest_times(d, user, j.max_history)});

  // Items the user has seen, by raw id (the index's ids), and titles by raw id.
  std::unordered_set<std::string> seen;
  for (int32_t item : d.user_sequence(user)) seen.emplace(d.raw_item_id(item));
  std::unordered_map<std::string, int32_t> dense;
  for (int64_t i = 1; i <= d.num_items(); ++i) dense.emplace(d.raw_item_id(static_cast<int32_t>(i)), static_cast<int32_t>(i));

  std::vector<storage::ann_hit> picked;
  std::size_t ask = o.k + (o.exclude_seen ? seen.size() : 0);
  for (;;) {
    picked.clear();
    idx.set_ef_search(std::max(idx.params().ef_search, ask));  // hnswlib returns at most ef results
    for (const auto& h : idx.search(emb.data(), ask)) {
      if (o.exclude_seen && seen.count(idx.ids()[h.row])) continue;
      picked.push_back(h);
      if (picked.size() == o.k) break;
    }
    if (picked.size() == o.k || ask >= static_cast<std::size_t>(idx.rows())) break;
    ask = std::min<std::size_t>(ask * 2, static_cast<std::size_t>(idx.rows()));
  }

  auto title_of = [&](const std::string& id) -> std::string {
    auto it = dense.find(id);
    return it == dense.end() ? std::string() : std::string(d.item_title(it->second));
  };
  if (o.json_out) {
    json recs = json::array();
    for (std::size_t r = 0; r < picked.size(); ++r) {
      const auto& id = idx.ids()[picked[r].row];
      recs.push_back({{"rank", r + 1}, {"item_id", id}, {"title", title_of(id)}, {"score", picked[r].score},
                      {"seen", seen.count(id) > 0}});
    }
    json out{{"user", o.user},
             {"k", o.k},
             {"exclude_seen", o.exclude_seen},
             {"history", history.size()},
             {"item_version", version},
             {"user_checkpoint", j.user_checkpoint},
             {"index", index_dir},
             {"recommendations", recs}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::printf("top %zu for user %s (%zu history items; %s; index %s)\n", o.k, o.user.c_str(), history.size(),
              o.exclude_seen ? "seen items excluded" : "seen items included", index_dir.c_str());
  std::printf("%4s  %-16s  %7s  %s\n", "rank", "item_id", "score", "title");
  for (std::size_t r = 0; r < picked.size(); ++r) {
    const auto& id = idx.ids()[picked[r].row];
    std::printf("%4zu  %-16s  %7.4f  %s%s\n", r + 1, id.c_str(), picked[r].score, title_of(id).c_str(),
                seen.count(id) ? "  (seen)" : "");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"hllm recommend: the top-k items for a user from the job's User LLM and an ANN index", "hllm recommend"};
  app.add_option("--job", o.job, "job directory (hllm train --out)")->required();
  app.add_option("--user", o.user, "raw user id (as in the interactions CSV)")->required();
  app.add_option("-k", o.k, "how many items")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--exclude-seen", o.exclude_seen, "leave out items the user has interacted with");
  app.add_option("--index", o.index, "index directory (default JOB/export/items.index)");
  app.add_option("--ef", o.ef, "HNSW ef_search for this query (default: the index's)");
  app.add_option("--data", o.data, "prepared dataset (default: the one the job trained on)");
  app.add_option("--checkpoint", o.checkpoint, "User-LLM checkpoint (default JOB/stage2/best, else JOB/stage1/best)");
  app.add_flag("--json", o.json_out, "print one JSON document");
  app.add_option("--threads", o.threads, "torch threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("!--no-verify", o.verify, "skip the dataset checksum verification");
  CLI11_PARSE(app, argc, argv);
  try {
    return recommend(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm recommend: error: %s\n", e.what());
    return 1;
  }
}
