#pragma once
// A job directory belongs to one job (issue 20): what `hllm train` checks, on rank 0, before it writes anything into
// --out. Header-only and torch-free (used by launch/train_main.cpp); the checkpoints in it are read through
// storage/job_checkpoint.hpp, their format's one owner.
//
//   JOB/job.toml       the effective config of the run (monitor.token never in clear: `token_set = true` instead)
//   JOB/dataset        the prepared dataset's absolute path (one line; the stage-3 commands read it)
//   JOB/dataset.json   the dataset's identity: {"path", "files_xxh3", "items", "users"}; files_xxh3 is the XXH3 of the
//                      "files" object of its manifest.json (every data file's size and checksum), so a dataset
//                      prepared again differently has another identity even at the same path and item count
//
// Rules (docs/operations.md "Checkpoints and resume"):
//   - a directory without job.toml, JOB/dataset and checkpoints holds no run: any start may use it;
//   - `--resume auto|CKPT` continues the run only when its config hash and dataset identity are this run's;
//     otherwise one line names what differs (keys with old and new values; the dataset's path and checksum) and
//     nothing in the directory is changed;
//   - `--resume never` in a directory that holds a run is refused;
//   - `--fresh` allows both: the earlier run's files are moved (renamed, never deleted) to JOB/previous-<UTC time>/,
//     and this run starts from the beginning. With `--resume auto` a run of the same config and dataset is
//     continued even with --fresh (a restart that re-runs the command keeps its progress).
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "launch/job_config.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/job_checkpoint.hpp"

namespace hllm::job_directory {

namespace detail {
inline std::string hex16(uint64_t h) { return storage::hash_hex(h); }

inline void flatten(const nlohmann::json& j, const std::string& prefix, std::map<std::string, nlohmann::json>& out) {
  for (const auto& [k, v] : j.items()) {
    const std::string name = prefix.empty() ? k : prefix + "." + k;
    if (v.is_object() && !v.empty()) flatten(v, name, out);
    else out[name] = v;
  }
}

inline bool operational(const std::string& key) {
  for (const auto& k : launch::job_config::operational_keys()) {
    if (key == k || key.rfind(k + ".", 0) == 0) return true;
  }
  return false;
}

inline std::string shown(const nlohmann::json* v) { return v == nullptr ? "(absent)" : v->dump(); }
}  // namespace detail

// `dir` absolute and lexically normal, without a trailing slash.
inline std::string normal_path(const std::string& dir) {
  std::string p = std::filesystem::absolute(dir).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// The keys (outside the operational ones, which a resume may change) whose values differ, as
// "KEY OLD -> NEW" ("(absent)" for a key one side lacks), sorted by key.
inline std::vector<std::string> config_differences(const nlohmann::json& earlier, const nlohmann::json& now) {
  std::map<std::string, nlohmann::json> a, b;
  detail::flatten(earlier, "", a);
  detail::flatten(now, "", b);
  std::vector<std::string> keys;
  for (const auto& [k, v] : a) keys.push_back(k);
  for (const auto& [k, v] : b) {
    if (a.count(k) == 0) keys.push_back(k);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<std::string> out;
  for (const auto& k : keys) {
    if (detail::operational(k)) continue;
    auto ia = a.find(k), ib = b.find(k);
    const nlohmann::json* va = ia == a.end() ? nullptr : &ia->second;
    const nlohmann::json* vb = ib == b.end() ? nullptr : &ib->second;
    if (va != nullptr && vb != nullptr && *va == *vb) continue;
    out.push_back(k + " " + detail::shown(va) + " -> " + detail::shown(vb));
  }
  return out;
}

struct dataset_identity {
  std::string path;        // absolute
  std::string files_xxh3;  // XXH3 of the manifest's "files" object ("" unknown)
  int64_t items = -1, users = -1;

  nlohmann::json to_json() const {
    return {{"path", path}, {"files_xxh3", files_xxh3}, {"items", items}, {"users", users}};
  }
  std::string describe() const {
    std::string s = "'" + path + "'";
    if (!files_xxh3.empty()) {
      s += " (checksum " + files_xxh3 + ", " + std::to_string(items) + " items, " + std::to_string(users) + " users)";
    }
    return s;
  }
};

// The identity of the prepared dataset in `dir` from its manifest.json (not the data files themselves: opening the
// dataset verifies those against the manifest). Throws hllm::error naming the dataset when it has no readable one.
inline dataset_identity identify_dataset(const std::string& dir) {
  dataset_identity id;
  id.path = normal_path(dir);
  const std::string manifest = id.path + "/manifest.json";
  if (!storage::path_exists(manifest)) {
    throw error(errc::not_found,
                "dataset '" + dir + "': no manifest.json (not a prepared dataset; run `hllm prepare`)");
  }
  auto m = nlohmann::json::parse(storage::read_text_file(manifest), nullptr, false);
  if (m.is_discarded() || !m.is_object() || !m.contains("files") || !m.at("files").is_object()) {
    throw error(errc::format, "dataset '" + dir + "': manifest.json is not a dataset manifest (no \"files\")");
  }
  const std::string files = m.at("files").dump();  // sorted keys: canonical
  id.files_xxh3 = detail::hex16(storage::hash_bytes(files.data(), files.size()));
  if (m.contains("info") && m.at("info").is_object()) {
    id.items = m.at("info").value("items", int64_t{-1});
    id.users = m.at("info").value("users", int64_t{-1});
  }
  return id;
}

// What an earlier run left in a job directory.
struct earlier_run {
  std::string dir;
  bool has_config = false;
  std::optional<launch::job_config> config;  // JOB/job.toml parsed (unset when unreadable)
  std::string config_problem;                // why job.toml could not be read
  std::string dataset_path;                  // JOB/dataset ("" none)
  std::optional<dataset_identity> dataset;   // JOB/dataset.json (jobs started before it existed lack it)
  std::vector<std::string> checkpoints;      // names of the checkpoint directories (job_checkpoint::scan), sorted
  std::string latest;                        // JOB/checkpoints/latest

  bool any() const { return has_config || !dataset_path.empty() || dataset || !checkpoints.empty(); }
  // "job.toml, dataset, 3 checkpoints (latest stage2-e1-s18)"
  std::string describe() const {
    std::vector<std::string> parts;
    if (has_config) parts.push_back("job.toml");
    if (!dataset_path.empty() || dataset) parts.push_back("the dataset it trained on");
    if (!checkpoints.empty()) {
      parts.push_back(std::to_string(checkpoints.size()) + " checkpoint" + (checkpoints.size() == 1 ? "" : "s") +
                      (latest.empty() ? "" : " (latest " + latest + ")"));
    }
    std::string s;
    for (std::size_t i = 0; i < parts.size(); ++i) s += (i == 0 ? "" : i + 1 == parts.size() ? " and " : ", ") + parts[i];
    return s;
  }
};

inline std::string trim_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// Reads what an earlier run left in `dir` (nothing when the directory does not exist). Cheap: no checksums.
inline earlier_run inspect(const std::string& dir) {
  namespace fs = std::filesystem;
  earlier_run r;
  r.dir = dir;
  if (!fs::is_directory(dir)) return r;
  const std::string toml = dir + "/job.toml";
  if (fs::exists(toml)) {
    r.has_config = true;
    try {
      r.config = launch::job_config::from_toml(storage::read_text_file(toml), toml);
    } catch (const std::exception& e) {
      r.config_problem = e.what();
    }
  }
  if (fs::is_regular_file(dir + "/dataset")) r.dataset_path = trim_line(storage::read_text_file(dir + "/dataset"));
  if (fs::is_regular_file(dir + "/dataset.json")) {
    auto j = nlohmann::json::parse(storage::read_text_file(dir + "/dataset.json"), nullptr, false);
    if (!j.is_discarded() && j.is_object() && j.contains("files_xxh3")) {
      dataset_identity id;
      id.path = j.value("path", "");
      id.files_xxh3 = j.value("files_xxh3", "");
      id.items = j.value("items", int64_t{-1});
      id.users = j.value("users", int64_t{-1});
      r.dataset = id;
    }
  }
  for (const auto& c : storage::job_checkpoint::scan(dir)) r.checkpoints.push_back(c.name);
  std::sort(r.checkpoints.begin(), r.checkpoints.end());
  r.latest = storage::job_checkpoint::latest(dir);
  return r;
}

// Why the earlier run in `r` is not this run's (config and dataset), "" when it is. One line.
inline std::string differences(const earlier_run& r, const launch::job_config& cfg, const dataset_identity& data) {
  std::vector<std::string> what;
  if (r.has_config && !r.config) {
    what.push_back("its job.toml cannot be read (" + r.config_problem + ")");
  } else if (r.config && r.config->hash() != cfg.hash()) {
    auto keys = config_differences(r.config->tree(), cfg.tree());
    std::string list;
    for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
    what.push_back("the config differs (" + (list.empty() ? std::string("config hash") : list) + "; config hash " +
                   detail::hex16(r.config->hash()) + " -> " + detail::hex16(cfg.hash()) + ")");
  }
  if (r.dataset) {
    if (r.dataset->files_xxh3 != data.files_xxh3) {
      what.push_back("the dataset differs (it trained on " + r.dataset->describe() + ", --data is " +
                     data.describe() + ")");
    }
  } else if (!r.dataset_path.empty() && normal_path(r.dataset_path) != data.path) {
    // A job started before JOB/dataset.json existed records only the path: the same data elsewhere (a copy) is
    // accepted when the old path still holds it.
    std::string same;
    try {
      if (identify_dataset(r.dataset_path).files_xxh3 == data.files_xxh3) same = "yes";
    } catch (const std::exception&) {
    }
    if (same.empty()) {
      what.push_back("the dataset differs (it trained on '" + r.dataset_path + "', --data is " + data.describe() +
                     ")");
    }
  }
  std::string s;
  for (const auto& w : what) s += (s.empty() ? "" : "; ") + w;
  return s;
}

// The earlier run's files (job.toml last, so a directory moved halfway still shows a run) renamed into
// JOB/previous-<UTC yyyymmdd-hhmmss>[-N]/; returns that directory. Nothing is deleted; what is not the run's own
// (unknown files, a cache/ without shards) stays where it is, as does JOB/job_epoch (the incarnation count keeps
// growing, so no message of the earlier run's processes is taken for this run's).
inline std::string set_aside(const std::string& dir) {
  namespace fs = std::filesystem;
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
  std::string aside = dir + "/previous-" + stamp;
  for (int n = 2; fs::exists(aside); ++n) aside = dir + "/previous-" + stamp + "-" + std::to_string(n);
  // Only what a job writes, of the kind it writes (a file for a file name; a directory that holds what the job puts
  // there), so that an --out shared with other things (a project folder with its own cache/ or export/) loses
  // nothing from view that was not the job's.
  const fs::path d(dir);
  auto holds_any = [&](const std::string& sub, std::initializer_list<const char*> names, const char* prefix) {
    if (!fs::is_directory(d / sub) || fs::is_symlink(d / sub)) return false;
    for (const char* n : names) {
      if (fs::exists(d / sub / n)) return true;
    }
    if (prefix != nullptr) {
      for (const auto& e : fs::directory_iterator(d / sub)) {
        if (e.path().filename().string().rfind(prefix, 0) == 0) return true;
      }
    }
    return false;
  };
  auto is_file = [&](const std::string& n) { return fs::is_regular_file(fs::symlink_status(d / n)); };
  std::vector<std::string> names;
  if (fs::is_directory(d / "checkpoints") && !fs::is_symlink(d / "checkpoints")) names.push_back("checkpoints");
  for (const char* stage : {"baseline", "stage1", "stage2"}) {
    if (holds_any(stage, {"best"}, nullptr)) names.push_back(stage);
  }
  if (holds_any("cache", {"ledger.json"}, "shard-")) names.push_back("cache");
  if (holds_any("export", {"items.npy", "items.ids.txt", "users.npy", "users.ids.txt", "items.index"}, nullptr)) {
    names.push_back("export");
  }
  if (holds_any("workers", {"worker-0.json", "worker-0.log"}, "worker-")) names.push_back("workers");
  for (const char* f : {"metrics.jsonl", "results.json", "results.md", "status.json", "console.json"}) {
    if (is_file(f)) names.push_back(f);
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("metrics.rank-", 0) == 0 && is_file(n)) names.push_back(n);
  }
  for (const char* last : {"dataset.json", "dataset", "job.toml"}) {
    if (is_file(last)) names.push_back(last);
  }
  fs::create_directory(aside);
  for (const auto& n : names) {
    const fs::path from = d / n;
    try {
      fs::rename(from, fs::path(aside) / n);
    } catch (const fs::filesystem_error& e) {
      throw error(errc::io, "--fresh: cannot move '" + from.string() + "' to '" + aside + "': " +
                                e.code().message() + " (what was moved so far is in '" + aside + "')");
    }
  }
  storage::fsync_directory(aside);
  storage::fsync_directory(dir);
  return aside;
}

// The config as JOB/job.toml records it: monitor.token never in clear (`token = ""`, `token_set = true|false`).
inline launch::job_config recorded(launch::job_config cfg, bool token_set) {
  auto& t = cfg.tree();
  if (t.contains("monitor") && t.at("monitor").is_object()) {
    auto& m = t.at("monitor");
    const bool in_config = m.contains("token") && m.at("token").is_string() && !m.at("token").get<std::string>().empty();
    if (m.contains("token")) m["token"] = "";
    m["token_set"] = token_set || in_config;
  }
  return cfg;
}

}  // namespace hllm::job_directory
