#pragma once
// The training objectives of REFERENCE.md.
#include <cstdint>

#include <torch/torch.h>

namespace hllm::model {

struct nce_output {
  torch::Tensor loss;     // mean cross-entropy over positions (target index 0)
  torch::Tensor logits;   // [M, 1 + P] after scaling and masking (for inspection and tests)
  double top1 = 0, top5 = 0, top10 = 0;  // share of positions whose positive outranks all but k-1 negatives
  int64_t positions = 0;
};

// Generative InfoNCE: cosine(user, positive) and cosine(user, negatives) times exp(logit_scale); one negative pool
// [P, H] shared by all M positions. A negative is masked (after scaling, with a large finite negative: -inf would
// turn the scale's gradient into NaN) when its cosine with the position's positive exceeds `false_negative_cosine`
// or, when ids are given, when it is the positive item itself.
nce_output info_nce(const torch::Tensor& user, const torch::Tensor& positive, const torch::Tensor& negatives,
                    const torch::Tensor& logit_scale, double false_negative_cosine = 0.99,
                    const torch::Tensor& positive_ids = {}, const torch::Tensor& negative_ids = {});

// Rank-based accuracy: a position hits at k when fewer than k negatives score strictly above its positive.
double top_k_accuracy(const torch::Tensor& logits, int64_t k);

// Binary cross-entropy on logits, labels in {0, 1}, mean over elements.
torch::Tensor bce_loss(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace hllm::model
