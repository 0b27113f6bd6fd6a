#pragma once
// A digest of a trainer's whole state (parameters, optimizer state) and of its evaluation ranks after a few steps
// of the small synthetic job, for several model shapes: the GPU-path work must leave every CPU number bit-identical,
// and these digests are what device_test.cpp compares (recorded before the device work; see the expected values).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "model/metrics.hpp"
#include "model/trainer.hpp"
#include "synthetic.hpp"

namespace hllm::model::testing {

// FNV-1a over bytes.
inline uint64_t fnv1a(const void* data, std::size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

inline uint64_t state_digest(const trainer& t) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& b : t.state_blobs()) {
    h = fnv1a(b.name.data(), b.name.size(), h);
    h = fnv1a(b.data, b.bytes, h);
  }
  return h;
}

struct digest_job {
  synthetic_data data = make_synthetic(120, 5);
  hllm_config model = tiny_hllm(data.vocab, data.items, 12);
  train_config train;
  std::vector<int32_t> pool = training_items(data.view());
  std::vector<int64_t> users = trainable_users(data.view());

  train_batch batch(int64_t step) const {
    std::vector<int64_t> u(users.begin() + (step * 16) % 96, users.begin() + (step * 16) % 96 + 16);
    auto b = make_train_batch(data.view(), u, 6);
    b.negatives = sample_negatives(pool, 32, 7, 1, 0, step, 0);
    return b;
  }
};

// The named variants of the small job.
inline digest_job digest_variant(const std::string& name) {
  digest_job j;
  j.train.total_steps = 8;
  if (name == "late_fusion") j.model.late_fusion = true;
  if (name == "early_fusion") j.model.early_fusion = true;
  if (name == "bf16") j.train.bf16 = true;
  if (name == "id") j.model.source = item_source::id;
  if (name == "mean") j.model.pooling = item_pooling::mean;
  return j;
}

inline const std::vector<std::string>& digest_variants() {
  static const std::vector<std::string> v{"text", "late_fusion", "early_fusion", "bf16", "id", "mean"};
  return v;
}

// State after 3 steps, folded with the evaluation ranks of the validation split.
template <class MakeTrainer>
uint64_t run_digest(const digest_job& j, MakeTrainer make) {
  trainer t = make(j);
  for (int s = 0; s < 3; ++s) t.step(j.batch(s));
  uint64_t h = state_digest(t);
  const auto e = make_eval_set(j.data.view(), split::valid, 6);
  const auto ranks = t.ranks(e);
  return fnv1a(ranks.data(), ranks.size() * sizeof(int64_t), h);
}

}  // namespace hllm::model::testing
