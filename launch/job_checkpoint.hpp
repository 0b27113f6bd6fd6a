#pragma once
// Job checkpoints on disk (header-only and torch-free, so `hllm train` and `hllm checkpoint` share one reading of
// the format without another library):
//
//   JOB/checkpoints/<stage>-e<epoch>-s<steps done>/
//     trainer/{config.json, model.safetensors, optimizer.safetensors}   model::trainer::save
//     state.json      stage, data position (epoch, epoch_step), serial, config hash, cache version, best-so-far
//                     validation state, completed stages of the plan
//     manifest.json   {"files": {"<relative path>": {"bytes": n, "xxh3": "<hex>"}}} of every other file
//   JOB/checkpoints/latest   the newest directory's name (written last, atomically)
//
// A checkpoint is valid when its manifest parses and every listed file has its size and XXH3 hash; the newest
// valid one (largest serial) is what `--resume auto` continues from.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm::job_checkpoint {

inline constexpr const char* state_format = "hllm-job-checkpoint";
inline constexpr int state_version = 1;
inline constexpr const char* manifest_name = "manifest.json";
inline constexpr const char* state_name = "state.json";

inline std::string root_of(const std::string& job_dir) { return job_dir + "/checkpoints"; }

// Every regular file under `dir` (relative paths, sorted), the manifest itself excluded.
inline std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string rel = std::filesystem::relative(e.path(), dir).string();
    if (rel != manifest_name) out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline uint64_t hash_file(const std::string& path) {
  auto f = storage::mapped_file::open(path);
  return storage::hash_bytes(f.data(), f.size());
}

// Hashes every file of `dir` and writes the manifest durably (the files must already be fsynced).
inline void write_manifest(const std::string& dir) {
  nlohmann::json files = nlohmann::json::object();
  for (const auto& rel : files_under(dir)) {
    std::string p = dir + "/" + rel;
    files[rel] = {{"bytes", std::filesystem::file_size(p)}, {"xxh3", storage::hash_hex(hash_file(p))}};
  }
  std::string text = nlohmann::json{{"files", files}}.dump(1) + "\n";
  storage::write_file_durably(dir + "/" + manifest_name, text.data(), text.size());
}

struct entry {
  std::string name, dir;
  nlohmann::json state;   // null when unreadable
  int64_t serial = -1;
  std::string problem;    // empty: valid
};

// Why `dir` is not a usable checkpoint ("" when it is): missing or unparsable manifest or state, a missing file,
// a size or checksum mismatch, or (when `config_hash` is given) a checkpoint of another config.
inline std::string check(const std::string& dir, nlohmann::json* state_out = nullptr,
                         const std::string& config_hash = "") {
  try {
    std::string mpath = dir + "/" + manifest_name;
    if (!storage::path_exists(mpath)) return "no manifest (incomplete checkpoint)";
    auto m = nlohmann::json::parse(storage::read_text_file(mpath), nullptr, false);
    if (m.is_discarded() || !m.contains("files") || !m.at("files").is_object()) return "manifest is not valid JSON";
    if (!m.at("files").contains(state_name) || !m.at("files").contains("trainer/model.safetensors")) {
      return "manifest lacks state.json or the trainer's model";
    }
    for (const auto& [rel, f] : m.at("files").items()) {
      std::string p = dir + "/" + rel;
      if (!storage::path_exists(p)) return "missing file " + rel;
      auto bytes = std::filesystem::file_size(p);
      if (bytes != f.at("bytes").get<uint64_t>()) {
        return "size of " + rel + " is " + std::to_string(bytes) + ", manifest says " +
               std::to_string(f.at("bytes").get<uint64_t>()) + " (truncated)";
      }
      if (storage::hash_hex(hash_file(p)) != f.at("xxh3").get<std::string>()) return "checksum mismatch in " + rel;
    }
    auto s = nlohmann::json::parse(storage::read_text_file(dir + "/" + state_name), nullptr, false);
    if (s.is_discarded() || s.value("format", "") != state_format) return "state.json is not a job checkpoint state";
    if (!config_hash.empty() && s.value("config_hash", "") != config_hash) {
      return "foreign checkpoint: config hash " + s.value("config_hash", "?") + ", this job's is " + config_hash;
    }
    if (state_out != nullptr) *state_out = s;
    return "";
  } catch (const std::exception& e) {
    return std::string("unreadable: ") + e.what();
  }
}

// The checkpoints under JOB/checkpoints, newest (largest serial) first; each checked (against `config_hash`
// when given). Temporary directories of interrupted writes (".tmp-*") are not listed.
inline std::vector<entry> list(const std::string& job_dir, const std::string& config_hash = "") {
  std::vector<entry> out;
  std::string root = root_of(job_dir);
  if (!std::filesystem::is_directory(root)) return out;
  for (const auto& e : std::filesystem::directory_iterator(root)) {
    std::string name = e.path().filename().string();
    if (!e.is_directory() || name.empty() || name[0] == '.') continue;
    entry c;
    c.name = name;
    c.dir = e.path().string();
    c.problem = check(c.dir, &c.state, config_hash);
    if (c.problem.empty()) {
      c.serial = c.state.value("serial", int64_t{-1});
    } else {
      // An invalid checkpoint still sorts by its state's serial when that file reads.
      try {
        auto s = nlohmann::json::parse(storage::read_text_file(c.dir + "/" + state_name), nullptr, false);
        if (!s.is_discarded()) c.serial = s.value("serial", int64_t{-1});
      } catch (const std::exception&) {
      }
    }
    out.push_back(std::move(c));
  }
  std::sort(out.begin(), out.end(), [](const entry& a, const entry& b) {
    return a.serial != b.serial ? a.serial > b.serial : a.name > b.name;
  });
  return out;
}

// The name `latest` points at ("" when there is none).
inline std::string latest(const std::string& job_dir) {
  std::string p = root_of(job_dir) + "/latest";
  if (!storage::path_exists(p)) return "";
  std::string s = storage::read_text_file(p);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace hllm::job_checkpoint
