#pragma once
// Ranking metrics from target ranks (no torch): Recall@K and NDCG@K for K = 5, 10, 50, 200, reported x100, and
// the popularity baseline's ranks.
#include <array>
#include <cstdint>
#include <vector>

#include "model/batching.hpp"

namespace hllm::model {

inline constexpr std::array<int64_t, 4> ranking_ks{5, 10, 50, 200};

struct ranking_metrics {
  int64_t users = 0;
  std::array<double, 4> recall{};  // x100, per ranking_ks
  std::array<double, 4> ndcg{};    // x100
};

// Recall@K (hit rate, one target) and NDCG@K = 1 / log2(rank + 2) when rank < K, averaged over queries where
// `keep` is true (all when empty).
ranking_metrics summarize_ranks(const std::vector<int64_t>& ranks, const std::vector<bool>& keep = {});

// Ranks under the popularity baseline: score = train count, the same masking and tie rule as target_ranks.
std::vector<int64_t> popularity_ranks(const interaction_table& t, const eval_set& e);

}  // namespace hllm::model
