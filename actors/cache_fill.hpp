#pragma once
// The coordinator side of filling the embedding cache, shared by the training job and `hllm encode`: the catalogue
// is cut into work units of item ids, dispatched to item encoders (one unit in flight per encoder; a failed unit is
// re-queued), and, with a ledger, recorded only after the shards persisted their rows, so an interrupted fill
// resumes with the missing units. Then the item matrix can be read back from the shards.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "actors/router.hpp"

namespace caf {
class actor_system;
}

namespace hllm {

struct cache_fill_options {
  std::string sender = "coordinator";  // the address replies come back to
  job_ref job;
  std::vector<std::string> encoders;   // addresses of item encoders holding the model of `version`
  int shards = 1;                      // cache-shard-0 .. cache-shard-(shards-1)
  std::int64_t num_items = 0;          // dense ids 1..num_items
  std::int64_t unit_items = 256;
  std::string version;                 // the Item-LLM version the rows carry
  std::string ledger_path;             // empty: no ledger and no persisting (an in-memory fill)
  std::int64_t persist_every_units = 8;
  std::chrono::milliseconds unit_timeout{std::chrono::minutes(10)};
  // Shard requests failing transiently (timeout, receiver not there) are asked again for this long: a shard in a
  // worker process being respawned. 0: fail at once.
  std::chrono::milliseconds retry_for{0};
  std::function<void(std::int64_t units_done)> on_progress;  // optional
};

struct cache_fill_result {
  std::int64_t units_encoded = 0;  // by this call (units in the ledger are skipped)
  std::int64_t units_total = 0;
  std::uint64_t rows = 0;          // rows of `version` in the shards afterwards
  double seconds = 0;
};

// Throws hllm::error when a shard cannot persist or the shards do not hold every row afterwards.
cache_fill_result fill_cache(caf::actor_system& sys, router_actor router, const cache_fill_options& o);

// The item matrix [(num_items + 1) x dim] (row 0 zeros) from the shards; `dim` is set. Throws hllm::error naming
// the shard when rows of `version` are missing.
std::vector<float> fetch_cache_matrix(caf::actor_system& sys, router_actor router, const std::string& sender,
                                      job_ref job, int shards, std::int64_t num_items, const std::string& version,
                                      std::uint32_t& dim);

}  // namespace hllm
