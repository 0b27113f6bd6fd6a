#pragma once
// Full-catalogue ranking evaluation (REFERENCE.md): every item scored, padding and the user's history masked,
// Recall@K and NDCG@K for K = 5, 10, 50, 200. Bounded memory: users x items chunks.
#include <array>
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "model/batching.hpp"
#include "model/ranking.hpp"

namespace hllm::model {

// 0-based rank of each query's target among the unmasked items, scored by cosine(user, item). Ties count
// against the target (an item scoring exactly the target's score ranks above it), so a collapsed model that gives
// every item the same score earns nothing. The target itself is never masked, even when it occurs in the history.
// items: [num_items + 1, H] (row 0 padding, never ranked); users: [queries, H].
std::vector<int64_t> target_ranks(const torch::Tensor& items, const torch::Tensor& users, const eval_set& e,
                                  int64_t user_chunk = 256, int64_t item_chunk = 16384);

}  // namespace hllm::model
