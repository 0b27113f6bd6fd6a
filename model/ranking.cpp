#include "model/ranking.hpp"

#include <algorithm>
#include <cmath>

namespace hllm::model {

ranking_metrics summarize_ranks(const std::vector<int64_t>& ranks, const std::vector<bool>& keep) {
  ranking_metrics m;
  for (std::size_t q = 0; q < ranks.size(); ++q) {
    if (!keep.empty() && !keep[q]) {
      continue;
    }
    ++m.users;
    for (std::size_t k = 0; k < ranking_ks.size(); ++k) {
      if (ranks[q] < ranking_ks[k]) {
        m.recall[k] += 1.0;
        m.ndcg[k] += 1.0 / std::log2(static_cast<double>(ranks[q]) + 2.0);
      }
    }
  }
  for (std::size_t k = 0; k < ranking_ks.size(); ++k) {
    m.recall[k] = m.users ? 100.0 * m.recall[k] / static_cast<double>(m.users) : 0.0;
    m.ndcg[k] = m.users ? 100.0 * m.ndcg[k] / static_cast<double>(m.users) : 0.0;
  }
  return m;
}

std::vector<int64_t> popularity_ranks(const interaction_table& t, const eval_set& e) {
  const int64_t n = t.num_items();
  std::vector<int64_t> sorted(t.train_counts.begin() + 1, t.train_counts.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> ranks(e.size());
  for (int64_t q = 0; q < e.size(); ++q) {
    const int32_t target = e.targets[q];
    const int64_t c = t.train_counts[target];
    // Items scoring >= the target, minus the target itself and distinct masked items scoring >= it.
    int64_t rank = n - (std::lower_bound(sorted.begin(), sorted.end(), c) - sorted.begin()) - 1;
    std::vector<int32_t> masked(e.mask.begin() + e.mask_offsets[q], e.mask.begin() + e.mask_offsets[q + 1]);
    std::sort(masked.begin(), masked.end());
    masked.erase(std::unique(masked.begin(), masked.end()), masked.end());
    for (int32_t m : masked) {
      if (m != target && m != 0 && t.train_counts[m] >= c) {
        --rank;
      }
    }
    ranks[q] = rank;
  }
  return ranks;
}

}  // namespace hllm::model
