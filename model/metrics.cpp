#include "model/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "storage/error.hpp"

namespace hllm::model {
namespace {

torch::Tensor normalized(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  return F::normalize(x.to(torch::kFloat32), F::NormalizeFuncOptions().dim(-1).eps(1e-12));
}

}  // namespace

std::vector<int64_t> target_ranks(const torch::Tensor& items, const torch::Tensor& users, const eval_set& e,
                                  int64_t user_chunk, int64_t item_chunk) {
  torch::NoGradGuard no_grad;
  if (users.size(0) != e.size() || items.size(1) != users.size(1)) {
    throw error(errc::mismatch, "target_ranks: users [queries, H] and items [num_items + 1, H] must agree");
  }
  const int64_t n_items = items.size(0) - 1;
  auto item_n = normalized(items);
  auto user_n = normalized(users);
  std::vector<int64_t> ranks(e.size(), 0);
  // Every score, the target's included, comes from the same chunked matmul: a target scored by another kernel can
  // differ in the last bit and then fail to count itself (rank -1) or tie wrongly.
  auto chunk_scores = [&](const torch::Tensor& u, int64_t i0) {
    const int64_t cols = std::min(item_chunk, n_items + 1 - i0);
    return torch::matmul(u, item_n.narrow(0, i0, cols).t()).contiguous();
  };
  for (int64_t start = 0; start < e.size(); start += user_chunk) {
    const int64_t rows = std::min(user_chunk, e.size() - start);
    auto u = user_n.narrow(0, start, rows).contiguous();
    // Masked (row, item) pairs: the user's history, never the target, never padding.
    std::vector<int64_t> mask_rows, mask_items;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t q = start + r;
      for (auto k = e.mask_offsets[q]; k < e.mask_offsets[q + 1]; ++k) {
        if (e.mask[k] != e.targets[q] && e.mask[k] != 0) {
          mask_rows.push_back(r);
          mask_items.push_back(e.mask[k]);
        }
      }
    }
    std::vector<float> t_score(rows, 0.0f);
    for (int64_t i0 = 1; i0 <= n_items; i0 += item_chunk) {
      auto s = chunk_scores(u, i0);
      auto acc = s.accessor<float, 2>();
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = e.targets[start + r];
        if (t >= i0 && t < i0 + s.size(1)) t_score[r] = acc[r][t - i0];
      }
    }
    auto t_score_t = torch::from_blob(t_score.data(), {rows, 1}, torch::kFloat32);
    auto at_or_above = torch::zeros({rows}, torch::kInt64);
    for (int64_t i0 = 1; i0 <= n_items; i0 += item_chunk) {
      auto s = chunk_scores(u, i0);
      const int64_t cols = s.size(1);
      std::vector<int64_t> mr, mc;
      for (std::size_t k = 0; k < mask_items.size(); ++k) {
        if (mask_items[k] >= i0 && mask_items[k] < i0 + cols) {
          mr.push_back(mask_rows[k]);
          mc.push_back(mask_items[k] - i0);
        }
      }
      if (!mr.empty()) {
        s.index_put_({torch::tensor(mr, torch::kInt64), torch::tensor(mc, torch::kInt64)},
                     -std::numeric_limits<float>::infinity());
      }
      at_or_above += s.ge(t_score_t).sum(1);
    }
    auto counts = at_or_above.contiguous();
    for (int64_t r = 0; r < rows; ++r) {
      // The count includes the target itself (its score is exactly t_score).
      ranks[start + r] = counts[r].item<int64_t>() - 1;
    }
  }
  return ranks;
}

}  // namespace hllm::model
