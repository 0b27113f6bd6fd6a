#pragma once
// What a user trainer reads: the batch and the negatives of every step, requested from data loaders and negative
// samplers through the router with a bounded number of steps in flight (the credit window), and handed out
// strictly in step order whatever order the replies arrive in. A late, failed or unknown loader or sampler is
// retried on the next one; since their answers are pure functions of the step, the result does not change.
// Stage 2 (cache_shards > 0): every distinct id of a step's batch and negatives is looked up once in the
// embedding-cache shard that owns it (messages/shard.hpp: shard_of(id, cache_shards)), one step ahead of the
// trainer, and the rows travel with the batch (model::train_batch::row_ids/rows). A failed lookup is asked again
// of the same shard (a shard process being respawned); rows missing from a shard are an error.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "actors/router.hpp"
#include "model/batching.hpp"

namespace caf {
class actor_system;
}

namespace hllm {

struct step_feed_options {
  std::string name = "trainer-0";     // the sender address of the requests
  job_ref job;
  std::vector<std::string> loaders;   // addresses; step k asks loaders[k % n] first
  std::vector<std::string> samplers;
  std::uint8_t stage = 1;
  std::uint32_t world_size = 1;
  std::uint32_t rank = 0;
  std::uint32_t batch_size = 64;      // per rank
  std::uint32_t max_length = 10;      // inputs per sequence (windows hold max_length + 1 items)
  std::uint32_t negatives = 256;      // pool size per rank
  std::uint32_t window = 4;           // steps in flight
  std::chrono::milliseconds timeout{30000};
  int attempts = 6;                   // per request, across loaders/samplers
  std::uint32_t cache_shards = 0;     // > 0: look every step's rows up in this many cache shards (stage 2)
  std::string cache_version;          // the Item-LLM version the rows must have
};

struct step_feed_counters {
  std::uint64_t requests = 0, retries = 0, steps = 0;
  std::uint64_t lookups = 0;       // cache lookup requests (one per shard per step)
  std::uint64_t ids_looked_up = 0;  // distinct ids asked for (each once per step)
  std::uint64_t ids_in_steps = 0;   // ids in the batches and negatives before deduplication
};

class step_feed {
 public:
  step_feed(caf::actor_system& sys, router_actor router, step_feed_options o);
  ~step_feed();
  step_feed(const step_feed&) = delete;
  step_feed& operator=(const step_feed&) = delete;

  // Serves steps [first_step, end_step) of `epoch`, in order.
  void start_epoch(std::uint32_t epoch, std::uint64_t first_step, std::uint64_t end_step);
  // The next step's batch with its negatives. Throws hllm::error when every attempt failed.
  model::train_batch next();
  const step_feed_counters& counters() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hllm
