#pragma once
// Data loader: answers batch_request(stage, epoch, step, rank) with the user sequences of that step. Stateless per
// step: the answer is a pure function of (job seed, stage, epoch, step, rank, world size, batch size, length), so a
// restarted loader, or any other loader, produces the same bytes (ARCHITECTURE.md, determinism contract).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "messages/bodies.hpp"

namespace caf {
class actor_system;
}
namespace hllm::storage {
class dataset;
}

namespace hllm {

struct data_loader_options {
  std::string name;        // its address, e.g. "loader-0"
  std::string dataset_dir; // the prepared dataset (opened read-only, memory-mapped)
  std::uint64_t seed = 2020;
  // Checksum the dataset files on open. The job verifies them once per process and turns this off for its actors,
  // so a process does not hash the whole dataset once per loader.
  bool verify_dataset = true;
};

class data_loader {
 public:
  explicit data_loader(data_loader_options o);
  ~data_loader();

  // The batch of `r`: per-rank users r.batch_size, global batch world_size * batch_size; each user's most recent
  // max_length + 1 training items, left-padded with 0 (lengths are all max_length + 1).
  msg::body handle(const msg::body& request);
  msg::body batch_of(const msg::batch_request& r);
  msg::status_reply status() const;
  // Steps in an epoch for a global batch (the last partial batch is dropped so every rank gets a full one).
  std::int64_t steps_per_epoch(std::uint32_t world_size, std::uint32_t batch_size) const;

 private:
  const std::vector<std::int64_t>& order_of(std::uint8_t stage, std::uint32_t epoch);

  data_loader_options opt_;
  std::unique_ptr<storage::dataset> data_;
  std::vector<std::int64_t> trainable_;
  // Epoch orders are recomputable from the keys: a cache, not state a restart could lose.
  std::map<std::pair<std::uint8_t, std::uint32_t>, std::vector<std::int64_t>> orders_;
  std::uint64_t served_ = 0, refused_ = 0;
  std::string last_error_;
};

addressable_actor spawn_data_loader(caf::actor_system& sys, router_actor router, data_loader_options o);

}  // namespace hllm
