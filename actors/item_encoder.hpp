#pragma once
// Item encoder: holds a frozen Item LLM (from a stage-1 checkpoint) and answers encode_request(item ids, version):
// it encodes the items and, with write_to_cache, puts every row into the cache shard that owns it
// (`cache-shard-<id % shards>`) before replying, so a reply means the rows are in the cache.
#include <cstdint>
#include <memory>
#include <string>

#include "actors/actors.hpp"
#include "actors/router.hpp"
#include "messages/bodies.hpp"

namespace caf {
class actor_system;
}
namespace hllm::model {
class trainer;
}
namespace hllm::storage {
class dataset;
}

namespace hllm {

struct item_encoder_options {
  std::string name;            // e.g. "encoder-0"
  std::string dataset_dir;
  std::string checkpoint_dir;  // a stage-1 checkpoint (hllm-checkpoint format)
  std::string model_version;   // the cache version its rows carry (hash of the checkpoint's parameters)
  std::uint32_t cache_shards = 1;
  job_ref job;
  std::uint32_t threads = 2;
  bool verify_dataset = true;  // as data_loader_options::verify_dataset
};

class item_encoder {
 public:
  item_encoder(caf::actor_system& sys, router_actor router, item_encoder_options o);
  ~item_encoder();
  msg::body handle(const msg::body& request);
  msg::status_reply status() const;

 private:
  msg::body encode(const msg::encode_request& r);

  struct impl;
  std::unique_ptr<impl> impl_;
};

// Spawned detached: encoding blocks its thread for a while and must not stall CAF's scheduler.
addressable_actor spawn_item_encoder(caf::actor_system& sys, router_actor router, item_encoder_options o);

}  // namespace hllm
