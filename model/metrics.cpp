#include "model/metrics.hpp"

#include <algorithm>
#include <cmath>

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
  for (int64_t start = 0; start < e.size(); start += user_chunk) {
    const int64_t rows = std::min(user_chunk, e.size() - start);
    auto u = user_n.narrow(0, start, rows);
    std::vector<int64_t> tgt(e.targets.begin() + start, e.targets.begin() + start + rows);
    auto tgt_t = torch::tensor(tgt, torch::kInt64);
    auto t_score = (u * item_n.index_select(0, tgt_t)).sum(1, true);  // [rows, 1]
    auto at_or_above = torch::zeros({rows}, torch::kInt64);
    for (int64_t i0 = 1; i0 <= n_items; i0 += item_chunk) {
      const int64_t cols = std::min(item_chunk, n_items + 1 - i0);
      auto s = torch::matmul(u, item_n.narrow(0, i0, cols).t());
      at_or_above += s.ge(t_score).sum(1);
    }
    auto counts = at_or_above.contiguous();
    auto scores_t = t_score.squeeze(1).contiguous();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t q = start + r;
      const int32_t target = e.targets[q];
      // The count includes the target itself; remove it and every distinct masked item that scored >= target.
      int64_t rank = counts[r].item<int64_t>() - 1;
      std::vector<int64_t> masked;
      for (auto k = e.mask_offsets[q]; k < e.mask_offsets[q + 1]; ++k) {
        if (e.mask[k] != target && e.mask[k] != 0) {
          masked.push_back(e.mask[k]);
        }
      }
      std::sort(masked.begin(), masked.end());
      masked.erase(std::unique(masked.begin(), masked.end()), masked.end());
      if (!masked.empty()) {
        auto m = torch::tensor(masked, torch::kInt64);
        auto ms = torch::matmul(item_n.index_select(0, m), u[r]);
        rank -= ms.ge(scores_t[r]).sum().item<int64_t>();
      }
      ranks[q] = rank;
    }
  }
  return ranks;
}

}  // namespace hllm::model
