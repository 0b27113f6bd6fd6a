#pragma once
// Stage 3 (ARCHITECTURE.md): what `hllm export` and `hllm recommend` share. This header is torch-free; stage3.cpp
// holds the User LLM (libtorch) behind `user_encoder`.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "storage/dataset.hpp"
#include "storage/export.hpp"

namespace hllm::stage3 {

// A finished (or partly finished) job directory, resolved.
struct job_info {
  std::string job_dir;
  std::string data_dir;          // JOB/dataset names it (hllm train writes it), or --data
  std::string cache_dir;         // JOB/cache
  std::string item_checkpoint;   // JOB/stage1/best: its Item LLM made the cache; its hash is the item version
  std::string user_checkpoint;   // --checkpoint, else JOB/stage2/best, else JOB/stage1/best
  int64_t max_history = 50;      // job.toml eval.max_history: the history the User LLM reads
};

// Throws hllm::error naming what is missing (no stage-1 checkpoint yet, no dataset path).
job_info open_job(const std::string& job_dir, const std::string& data_override = "",
                  const std::string& checkpoint_override = "");

// The job's Item-LLM version: the hash of JOB/stage1/best/model.safetensors (the embedding cache's tag).
std::string item_version(const job_info& j);
// The hash of a checkpoint's model.safetensors (the User-LLM version of user exports).
std::string checkpoint_hash(const std::string& checkpoint_dir);

// The user's latest history (dense item ids, time order, at most max_history, newest last): every interaction the
// dataset holds, so a user is embedded as of their newest known item.
std::vector<int32_t> latest_history(const storage::dataset& d, int64_t user, int64_t max_history);
// Their timestamps (for models with timestamp features).
std::vector<int64_t> latest_times(const storage::dataset& d, int64_t user, int64_t max_history);
// Dense user id of a raw user id; throws errc::not_found naming it (and the dataset) when unknown.
int64_t find_user(const storage::dataset& d, const std::string& raw_id);

// Runs `hllm-<command> args...` (the executable beside this one) and waits for it: its exit status, or 128 + the
// signal that ended it. Stage-3 commands hand work to other commands this way (tokenizing must happen in a process
// without torch; re-encoding reuses hllm encode).
int run_sibling(const std::string& command, const std::vector<std::string>& args);

// The User LLM of a checkpoint over item rows from the embedding cache: user embeddings exactly as evaluation
// computes them (raw item embeddings in, last position out).
class user_encoder {
 public:
  user_encoder(const std::string& checkpoint_dir, const storage::cache_reader& cache, int threads);
  ~user_encoder();
  user_encoder(const user_encoder&) = delete;
  user_encoder& operator=(const user_encoder&) = delete;

  uint32_t dim() const;
  // [histories.size() x dim], row i the embedding of histories[i] (not normalised). Empty histories are refused.
  // `times` (beside histories) is needed by models with timestamp features and ignored by the others.
  std::vector<float> embed(const std::vector<std::vector<int32_t>>& histories,
                           const std::vector<std::vector<int64_t>>& times = {}, int64_t chunk = 256) const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hllm::stage3
