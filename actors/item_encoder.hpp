#pragma once
// Item encoder: holds a frozen Item LLM (from a stage-1 checkpoint, or a Hugging Face Llama checkpoint for
// `hllm encode --hf-model`) and answers encode_request(item ids, version): it encodes the items and, with
// write_to_cache, puts every row into the cache shard that owns it (messages/shard.hpp: shard_of, shard_name)
// before replying, so a reply means the rows are in the cache.
#include <cstdint>
#include <memory>
#include <string>

#include "actors/actors.hpp"
#include "actors/router.hpp"
#include "messages/bodies.hpp"
#include "model/hllm_config.hpp"

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
  // The frozen Item LLM, exactly one of: a stage-1 checkpoint (hllm-checkpoint format), or a Hugging Face Llama
  // checkpoint directory made into an Item LLM with the pooling below, an [ITEM] vector from the seeded N(0, 0.02)
  // initialisation (docs/model.md) and, with hf_bf16, bf16 matmuls.
  std::string checkpoint_dir;
  std::string hf_model_dir;
  model::item_pooling hf_pooling = model::item_pooling::item_token;
  std::uint64_t hf_seed = 2020;
  bool hf_bf16 = false;
  std::string model_version;   // the cache version its rows carry: item_encoder_version_hex of these options
  std::uint32_t cache_shards = 1;
  job_ref job;
  std::uint32_t threads = 2;
  bool verify_dataset = true;  // as data_loader_options::verify_dataset
  // Where the Item LLM computes, a checkpoint's or a Hugging Face model's ("cpu" or "cuda:N", resolved:
  // model::resolve_device). Rows come back to host memory either way.
  std::string device = "cpu";
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

// The version of the rows an item encoder with these options makes: for a checkpoint, storage::checkpoint_version_hex; for a
// Hugging Face model, the hash of its config.json and weight files (every safetensors shard) together with the
// pooling, the [ITEM] seed (item pooling only: mean pooling never reads the vector) and the compute dtype, so rows
// made any other way are never taken for these. Throws hllm::error when a file cannot be read.
std::string item_encoder_version_hex(const item_encoder_options& o);

// Spawned detached: encoding blocks its thread for a while and must not stall CAF's scheduler.
addressable_actor spawn_item_encoder(caf::actor_system& sys, router_actor router, item_encoder_options o);

}  // namespace hllm
