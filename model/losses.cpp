#include "model/losses.hpp"

#include "storage/error.hpp"

namespace hllm::model {
namespace {

// Finite, far below any scaled cosine (|logit| <= 100): exp() of it is exactly 0 in fp32.
constexpr double masked_logit = -1e9;

}  // namespace

double top_k_accuracy(const torch::Tensor& logits, int64_t k) {
  torch::NoGradGuard no_grad;
  if (logits.size(0) == 0) {
    return 0.0;
  }
  auto pos = logits.narrow(1, 0, 1);
  auto above = logits.narrow(1, 1, logits.size(1) - 1).gt(pos).sum(1);
  return above.lt(k).to(torch::kFloat64).mean().item<double>();
}

nce_output info_nce(const torch::Tensor& user, const torch::Tensor& positive, const torch::Tensor& negatives,
                    const torch::Tensor& logit_scale, double false_negative_cosine,
                    const torch::Tensor& positive_ids, const torch::Tensor& negative_ids) {
  if (user.sizes() != positive.sizes() || user.dim() != 2 || negatives.dim() != 2 ||
      negatives.size(1) != user.size(1)) {
    throw error(errc::mismatch, "info_nce: user, positive [M, H] and negatives [P, H] must agree");
  }
  namespace F = torch::nn::functional;
  const auto norm = F::NormalizeFuncOptions().dim(-1).eps(1e-12);
  auto u = F::normalize(user, norm), p = F::normalize(positive, norm), n = F::normalize(negatives, norm);
  auto scale = logit_scale.exp();
  auto pos_logit = (u * p).sum(-1, true) * scale;    // [M, 1]
  auto neg_logit = torch::matmul(u, n.t()) * scale;  // [M, P]
  torch::Tensor false_neg;
  {
    torch::NoGradGuard no_grad;
    false_neg = torch::matmul(p, n.t()).gt(false_negative_cosine);
    if (positive_ids.defined() && negative_ids.defined()) {
      false_neg = false_neg.logical_or(positive_ids.view({-1, 1}).eq(negative_ids.view({1, -1})));
    }
  }
  neg_logit = neg_logit.masked_fill(false_neg, masked_logit);
  nce_output out;
  out.logits = torch::cat({pos_logit, neg_logit}, 1);
  out.positions = user.size(0);
  auto target = torch::zeros({out.positions}, out.logits.options().dtype(torch::kInt64));
  out.loss = torch::nn::functional::cross_entropy(out.logits, target);
  out.top1 = top_k_accuracy(out.logits, 1);
  out.top5 = top_k_accuracy(out.logits, 5);
  out.top10 = top_k_accuracy(out.logits, 10);
  return out;
}

torch::Tensor bce_loss(const torch::Tensor& logits, const torch::Tensor& labels) {
  return torch::binary_cross_entropy_with_logits(logits, labels.to(logits.scalar_type()));
}

}  // namespace hllm::model
