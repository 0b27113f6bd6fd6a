// `hllm export items|users`: stage 3 of the paper: embeddings for online retrieval (storage/export.hpp: X.npy,
// X.ids.txt, X.fp.u64, X.meta.json).
//   items: every item's embedding from the job's embedding cache when its version is the job's stage-1 Item LLM
//          (no re-encode); otherwise the items are encoded again with that Item LLM (hllm encode, in its own process).
//   users: every user's (or every user active since a time's) embedding from the User LLM over their latest history,
//          with item rows from the cache.
// --since-checkpoint PREV: only the rows whose fingerprint (model version + input) differs from PREV's.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include "launch/stage3.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/job_checkpoint.hpp"
#include "storage/npy.hpp"
#include "storage/timestamp.hpp"

namespace {

using namespace hllm;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string job, out, data, checkpoint, since, active_since;
  int threads = 2;
  int64_t history = 0;  // 0: the job's eval.max_history
  bool verify = true;
  bool force = false;
  std::string device = "auto";  // for the re-encode (hllm encode --device)
};

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Keeps only rows whose fingerprint is not PREV's for the same id. Returns how many were left out.
int64_t keep_changed(storage::export_data& e, const std::string& prev_npy) {
  auto prev = storage::read_export(prev_npy);
  if (prev.meta.value("kind", std::string()) != e.meta.value("kind", std::string())) {
    throw error(errc::mismatch, prev_npy + " is an export of " + prev.meta.value("kind", std::string()) + ", not " +
                                    e.meta.value("kind", std::string()));
  }
  std::unordered_map<std::string, uint64_t> before;
  for (int64_t r = 0; r < prev.rows; ++r) before.emplace(prev.ids[r], prev.fingerprints[r]);
  storage::export_data kept;
  kept.dim = e.dim;
  kept.meta = e.meta;
  for (int64_t r = 0; r < e.rows; ++r) {
    auto it = before.find(e.ids[r]);
    if (it != before.end() && it->second == e.fingerprints[r]) continue;
    kept.ids.push_back(e.ids[r]);
    kept.fingerprints.push_back(e.fingerprints[r]);
    kept.matrix.insert(kept.matrix.end(), e.matrix.begin() + r * e.dim, e.matrix.begin() + (r + 1) * e.dim);
  }
  kept.rows = static_cast<int64_t>(kept.ids.size());
  const int64_t left_out = e.rows - kept.rows;
  kept.meta["delta"] = true;
  kept.meta["since"] = fs::absolute(prev_npy).string();
  kept.meta["unchanged_rows_left_out"] = left_out;
  e = std::move(kept);
  return left_out;
}

// The item matrix [(n + 1) x dim] of the job's Item LLM by `hllm encode --checkpoint` (a process of its own: the
// encoder actors, as in the cache fill).
std::vector<float> reencode(const stage3::job_info& j, const options& o, int64_t n, uint32_t& dim) {
  const std::string tmp = storage::export_paths(o.out).npy + ".reencode-" + std::to_string(::getpid()) + ".npy";
  // The export's folder may not exist yet (the export itself creates it later): hllm encode writes beside it.
  if (const auto parent = fs::path(tmp).parent_path(); !parent.empty()) fs::create_directories(parent);
  std::vector<std::string> args{"--data", j.data_dir, "--checkpoint", j.item_checkpoint, "--out", tmp,
                                "--threads", std::to_string(o.threads), "--device", o.device};
  if (!o.verify) args.push_back("--no-verify");
  const int status = stage3::run_sibling("encode", args);
  const auto p = storage::export_paths(tmp);
  auto cleanup = [&] {
    std::remove(p.npy.c_str());
    std::remove(p.ids.c_str());
  };
  if (status != 0) {
    cleanup();
    throw error(errc::io, "re-encoding the items with " + j.item_checkpoint + " failed (hllm encode, status " +
                              std::to_string(status) + ")");
  }
  auto m = storage::read_npy_f32(tmp);
  cleanup();
  if (m.rows != n + 1) throw error(errc::mismatch, "hllm encode wrote " + std::to_string(m.rows) + " rows, want " +
                                                       std::to_string(n + 1));
  dim = static_cast<uint32_t>(m.cols);
  return std::move(m.data);
}

int export_items(const options& o) {
  const auto t0 = clock_type::now();
  auto j = stage3::open_job(o.job, o.data);
  auto d = storage::dataset::open(j.data_dir, o.verify);
  const std::string version = stage3::item_version(j);
  const int64_t n = d.num_items();
  storage::export_data e;
  std::vector<float> matrix;
  std::string source = "cache";
  try {
    auto cache = storage::cache_reader::open(j.cache_dir, version);
    e.dim = cache.dim();
    matrix = cache.matrix(n);
  } catch (const error& err) {
    // A missing, stale, incomplete or damaged cache: the rows can be made again from the Item LLM.
    if (err.code() == errc::invalid_input || err.code() == errc::io) throw;
    std::fprintf(stderr, "hllm export: %s\nhllm export: re-encoding %lld items with %s instead\n", err.what(),
                 static_cast<long long>(n), j.item_checkpoint.c_str());
    matrix = reencode(j, o, n, e.dim);
    source = "re-encoded";
  }
  e.rows = n;
  e.matrix.assign(matrix.begin() + e.dim, matrix.end());  // drop the padding row: row r is item r + 1
  for (int64_t i = 1; i <= n; ++i) {
    const auto id = static_cast<int32_t>(i);
    e.ids.emplace_back(d.raw_item_id(id));
    auto tokens = d.item_tokens(id);
    e.fingerprints.push_back(
        storage::row_fingerprint(version, e.ids.back(), tokens.data(), tokens.size() * sizeof(int32_t)));
  }
  e.meta = {{"kind", "items"},   {"item_version", version}, {"job", fs::absolute(o.job).string()},
            {"data", j.data_dir}, {"source", source},        {"delta", false}};
  int64_t left_out = 0;
  if (!o.since.empty()) left_out = keep_changed(e, o.since);
  storage::write_export(o.out, e, o.force);
  const double s = seconds_since(t0);
  std::printf("hllm export items: %lld rows x %u -> %s (%s; item version %s; %lld unchanged rows left out) in %.2f s "
              "(%.0f rows/s)\n",
              static_cast<long long>(e.rows), e.dim, storage::export_paths(o.out).npy.c_str(), source.c_str(),
              version.c_str(), static_cast<long long>(left_out), s, static_cast<double>(n) / std::max(s, 1e-9));
  return 0;
}

int export_users(const options& o) {
  const auto t0 = clock_type::now();
  auto j = stage3::open_job(o.job, o.data, o.checkpoint);
  auto d = storage::dataset::open(j.data_dir, o.verify);
  const std::string version = stage3::item_version(j);
  const std::string user_model = storage::checkpoint_version_hex(j.user_checkpoint);
  auto cache = storage::cache_reader::open(j.cache_dir, version);
  const int64_t history = o.history > 0 ? o.history : j.max_history;
  int64_t since = INT64_MIN;
  if (!o.active_since.empty()) {
    std::string why;
    if (storage::parse_timestamp(o.active_since, since, &why) != storage::timestamp_error::none) {
      throw error(errc::invalid_input, "--active-since '" + o.active_since + "': not a timestamp (an integer or an "
                                       "ISO date such as 2024-05-01)" + (why.empty() ? "" : ": " + why));
    }
  }
  storage::export_data e;
  std::vector<std::vector<int32_t>> histories;
  std::vector<std::vector<int64_t>> history_times;
  const std::string fp_key = version + "/" + user_model;
  for (int64_t u = 0; u < d.num_users(); ++u) {
    auto times = d.user_times(u);
    if (times.empty() || times[times.size() - 1] < since) continue;
    histories.push_back(stage3::latest_history(d, u, history));
    history_times.push_back(stage3::latest_times(d, u, history));
    e.ids.emplace_back(d.raw_user_id(u));
    // The history by raw item ids: the same user with the same items has the same fingerprint after a re-prepare.
    std::string raw;
    for (int32_t item : histories.back()) {
      raw += d.raw_item_id(item);
      raw += '\n';
    }
    e.fingerprints.push_back(storage::row_fingerprint(fp_key, e.ids.back(), raw.data(), raw.size()));
  }
  stage3::user_encoder enc(j.user_checkpoint, cache, o.threads);
  const auto t1 = clock_type::now();
  e.dim = enc.dim();
  e.rows = static_cast<int64_t>(histories.size());
  e.matrix = enc.embed(histories, history_times);
  const double embed_s = seconds_since(t1);
  e.meta = {{"kind", "users"},
            {"item_version", version},
            {"user_model", user_model},
            {"checkpoint", fs::absolute(j.user_checkpoint).string()},
            {"job", fs::absolute(o.job).string()},
            {"data", j.data_dir},
            {"history", history},
            {"active_since", o.active_since.empty() ? nlohmann::json(nullptr) : nlohmann::json(since)},
            {"delta", false}};
  const int64_t embedded = e.rows;
  int64_t left_out = 0;
  if (!o.since.empty()) left_out = keep_changed(e, o.since);
  storage::write_export(o.out, e, o.force);
  std::printf("hllm export users: %lld rows x %u -> %s (of %lld users; %lld unchanged rows left out; model %s, item "
              "version %s) in %.2f s (%.0f users/s embedded)\n",
              static_cast<long long>(e.rows), e.dim, storage::export_paths(o.out).npy.c_str(),
              static_cast<long long>(d.num_users()), static_cast<long long>(left_out), user_model.c_str(),
              version.c_str(), seconds_since(t0), static_cast<double>(embedded) / std::max(embed_s, 1e-9));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"hllm export: item and user embeddings for online retrieval (stage 3): X.npy + X.ids.txt + "
               "X.fp.u64 + X.meta.json",
               "hllm export"};
  app.require_subcommand(1);
  auto common = [&](CLI::App* c) {
    c->add_option("--job", o.job, "job directory (hllm train --out)")->required();
    c->add_option("--out", o.out, "output .npy path (ids, fingerprints and meta beside it)")->required();
    c->add_option("--data", o.data, "prepared dataset (default: the one the job trained on, JOB/dataset)");
    c->add_option("--since-checkpoint", o.since,
                  "an earlier export (.npy) of the same kind: write only the rows that changed since it");
    c->add_option("--threads", o.threads, "torch threads")->check(CLI::PositiveNumber)->capture_default_str();
    c->add_flag("!--no-verify", o.verify, "skip the dataset checksum verification");
    c->add_flag("--force", o.force, "replace files at --out even when they are not an hllm export");
    c->add_option("--device", o.device, "where a re-encode of the items computes (hllm encode --device)")
        ->capture_default_str();
  };
  auto* items = app.add_subcommand("items", "every item's embedding (from the embedding cache when its version "
                                            "matches the job's stage-1 Item LLM, else re-encoded)");
  common(items);
  auto* users = app.add_subcommand("users", "users' embeddings from the User LLM over their latest history");
  common(users);
  users->add_option("--active-since", o.active_since,
                    "only users whose newest interaction is at or after this time (Unix seconds or ISO date)");
  users->add_option("--checkpoint", o.checkpoint,
                    "User-LLM checkpoint (default JOB/stage2/best, else JOB/stage1/best)");
  users->add_option("--history", o.history, "history items read per user (default: the job's eval.max_history)")
      ->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    return items->parsed() ? export_items(o) : export_users(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm export: error: %s\n", e.what());
    return 1;
  }
}
