#pragma once
// Job checkpoints on disk: the one owner of the format (torch-free, so `hllm train`, `hllm checkpoint` and the job
// directory checks share one reading of it):
//
//   JOB/checkpoints/<stage>-e<epoch>-s<steps done>/
//     trainer/{config.json, model.safetensors, optimizer.safetensors}   model::trainer::save
//     state.json      format, version, serial, stage, data position (epoch, epoch_step), config hash, cache
//                     version, best-so-far validation state, completed stages of the plan
//     manifest.json   {"files": {"<relative path>": {"bytes": n, "xxh3": "<hex>"}}} of every other file
//   JOB/checkpoints/latest   the newest directory's name (written last, atomically)
//   JOB/checkpoints/.tmp-<name>/   a write in progress (never a checkpoint; removed by the next start)
//
// A checkpoint is valid when its manifest parses and every listed file has its size and XXH3 hash; the newest
// valid one (largest serial) is what `--resume auto` continues from. Serials order checkpoints: a new one gets a
// serial above every one on disk (valid or not), and retention removes the lowest.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hllm::storage {

// The version of the rows (or user embeddings) a trainer checkpoint directory (STAGE/best, CKPT/trainer) makes:
// the XXH3 of its model.safetensors, as hex. The embedding cache, exports and stage-2 checkpoints carry it. Throws
// hllm::error(io) naming the file when it cannot be read.
std::string checkpoint_version_hex(const std::string& checkpoint_dir);

namespace job_checkpoint {

inline constexpr const char* state_format = "hllm-job-checkpoint";
inline constexpr int state_version = 1;
inline constexpr const char* manifest_name = "manifest.json";
inline constexpr const char* state_name = "state.json";
inline constexpr const char* latest_name = "latest";
inline constexpr const char* temporary_prefix = ".tmp-";

// JOB/checkpoints.
std::string root_of(const std::string& job_dir);

// Every regular file under `dir` (relative paths, sorted), the manifest itself excluded.
std::vector<std::string> files_under(const std::string& dir);

// Hashes every file of `dir` and writes the manifest durably (the files must already be fsynced).
void write_manifest(const std::string& dir);

// ---- write ----

// Writes checkpoint `name` of the job in `job_dir` as one atomic unit: creates JOB/checkpoints/.tmp-NAME, lets
// `write_files(dir)` put the trainer's files into it (e.g. DIR/trainer), writes `state` as state.json (with
// "format" and "version" set here), fsyncs every directory of it, hashes everything into the manifest, renames it
// to JOB/checkpoints/NAME (replacing one of that name) and replaces `latest` last. Returns the bytes of the files.
// Any failure removes the temporary directory and throws hllm::error(io) "cannot write checkpoint NAME under
// 'ROOT': WHY (the job stops; earlier checkpoints are intact)"; the checkpoints already there are untouched.
uint64_t write(const std::string& job_dir, const std::string& name, nlohmann::json state,
               const std::function<void(const std::string& dir)>& write_files);

// ---- list ----

// One checkpoint directory found by a cheap scan (no checksums).
struct found {
  std::string name, dir;
  int64_t serial = -1;  // state.json's "serial"; -1 when it does not read
};

// Every checkpoint directory under JOB/checkpoints, newest (largest serial, then name) first. Temporary directories
// of interrupted writes (".tmp-*") and other dot names are not listed, nor is `except` (a name). Nothing (no error)
// when JOB/checkpoints does not exist.
std::vector<found> scan(const std::string& job_dir, const std::string& except = "");

// The largest serial on disk (valid checkpoints or not), -1 when there is none: a new checkpoint's serial must be
// above it.
int64_t newest_serial(const std::string& job_dir);

// The name `latest` points at ("" when there is none).
std::string latest(const std::string& job_dir);

// ---- verify ----

// Why `dir` is not a usable checkpoint ("" when it is): missing or unparsable manifest or state, a missing file,
// a size or checksum mismatch, or (when `config_hash` is given) a checkpoint of another config. With `state_out`,
// a valid checkpoint's state.json is stored there.
std::string check(const std::string& dir, nlohmann::json* state_out = nullptr, const std::string& config_hash = "");

struct entry {
  std::string name, dir;
  nlohmann::json state;   // null when unreadable
  int64_t serial = -1;
  std::string problem;    // empty: valid
};

// The checkpoints under JOB/checkpoints (scan's order: newest first), each checked (against `config_hash` when
// given).
std::vector<entry> list(const std::string& job_dir, const std::string& config_hash = "");

// state.json of a checkpoint directory, parsed. Throws hllm::error(format) naming the file when it does not parse.
nlohmann::json read_state(const std::string& dir);

// ---- retain ----

// Removes the directories of interrupted writes (JOB/checkpoints/.tmp-*): never a checkpoint (no rename happened).
void remove_interrupted(const std::string& job_dir);

// Keeps the newest `keep` checkpoints by serial, `newest` (a name, just written) always among them: removes every
// other directory scan lists beyond the first keep - 1. What could not be removed is returned as (directory,
// reason) for the caller to report; retention never throws for it.
std::vector<std::pair<std::string, std::string>> retain(const std::string& job_dir, int64_t keep,
                                                        const std::string& newest);

}  // namespace job_checkpoint
}  // namespace hllm::storage
