// The training objective of the recommender (REFERENCE.md): InfoNCE over a negative pool shared by the batch (or
// by every rank), the discriminative heads, and the two-phase backward of a shared pool. Split from hllm.cpp.
#include <algorithm>
#include <functional>

#include "model/hllm.hpp"
#include "model/hllm_internal.hpp"
#include "model/losses.hpp"
#include "storage/error.hpp"

namespace hllm::model {

using detail::id_rows;
using detail::long_tensor;
using detail::rows_of;
using detail::unique_ids;

torch::Tensor recommender_impl::cls_loss(const torch::Tensor& extra_out, const torch::Tensor& candidates) {
  // Column 0 of the candidates is the true next item, the rest are sampled negatives.
  const auto floats = torch::TensorOptions().dtype(torch::kFloat32).device(candidates.device());
  auto labels = torch::zeros({candidates.size(0), candidates.size(1)}, floats);
  labels.select(1, 0).fill_(1.0);
  torch::Tensor loss = torch::zeros({}, floats);
  const int64_t k = candidates.size(1);
  if (config_.early_fusion) {
    auto out = extra_out.narrow(1, extra_out.size(1) - k, k);
    loss = loss + bce_loss(early_head->forward(out), labels);
  }
  if (config_.late_fusion) {
    namespace F = torch::nn::functional;
    const auto norm = F::NormalizeFuncOptions().dim(-1);
    auto u = F::normalize(extra_out.select(1, 0), norm).unsqueeze(1);  // the [USER] output
    auto cos = (u * F::normalize(candidates, norm)).sum(-1);
    loss = loss + bce_loss(cos * late_scale.exp() + late_bias, labels);
  }
  return loss;
}

torch::Tensor recommender_impl::batch_item_embeddings(const train_batch& b, const item_text_table& texts,
                                                     const std::vector<int32_t>& ids) {
  if (config_.source != item_source::cache || b.rows.empty()) {
    if (config_.source == item_source::cache && !cache_.defined()) {
      throw error(errc::invalid_input, "stage 2: the batch carries no cached rows (train_batch::rows) and this "
                                       "trainer holds no item matrix");
    }
    return item_embeddings(texts, ids);
  }
  const int64_t h = config_.user_llm.hidden_size, n = static_cast<int64_t>(b.row_ids.size());
  if (static_cast<int64_t>(b.rows.size()) != n * h) {
    throw error(errc::mismatch, "stage 2: the batch's cached rows hold " + std::to_string(b.rows.size()) +
                                    " floats, expected row_ids (" + std::to_string(n) + ") x hidden (" +
                                    std::to_string(h) + ")");
  }
  if (std::adjacent_find(b.row_ids.begin(), b.row_ids.end(), std::greater_equal<int32_t>()) != b.row_ids.end()) {
    throw error(errc::invalid_input, "stage 2: the batch's row_ids must be strictly ascending");
  }
  std::vector<int64_t> pick(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto it = std::lower_bound(b.row_ids.begin(), b.row_ids.end(), ids[i]);
    if (it == b.row_ids.end() || *it != ids[i]) {
      throw error(errc::not_found, "stage 2: item id " + std::to_string(ids[i]) +
                                       " has no cached row in the batch (train_batch::row_ids)");
    }
    pick[i] = it - b.row_ids.begin();
  }
  // index_select copies: the batch's floats are only read here. The gather runs on the host (the cache shards stay
  // in host memory); only the batch's rows travel to the device.
  auto table = torch::from_blob(const_cast<float*>(b.rows.data()), {n, h}, torch::kFloat32);
  return to_device(table.index_select(0, long_tensor(pick)), device());
}

loss_output recommender_impl::training_loss(const train_batch& b, const item_text_table& texts,
                                            negative_exchange* exchange) {
  const int64_t bs = b.batch, len = b.seq_len, width = len + 1, k = config_.cls_negatives;
  const bool cls = config_.early_fusion || config_.late_fusion;
  const bool shared = exchange != nullptr && exchange->world_size() > 1;
  if (b.negatives.empty() || static_cast<int64_t>(b.items.size()) != bs * width) {
    throw error(errc::invalid_input, "training_loss: batch needs [batch, seq_len + 1] items and negatives");
  }
  std::vector<int32_t> inputs, targets, cls_cands;
  for (int64_t r = 0; r < bs; ++r) {
    inputs.insert(inputs.end(), b.items.begin() + r * width, b.items.begin() + r * width + len);
    targets.insert(targets.end(), b.items.begin() + r * width + 1, b.items.begin() + (r + 1) * width);
    if (cls && !shared) {
      cls_cands.push_back(b.items[(r + 1) * width - 1]);
      for (int64_t j = 0; j < k; ++j) {
        cls_cands.push_back(b.negatives[(r * k + j) % b.negatives.size()]);
      }
    }
  }
  // Discriminative candidates are items and negatives of the batch: they add no id of their own.
  std::vector<int32_t> all = b.items;
  all.insert(all.end(), b.negatives.begin(), b.negatives.end());
  const id_rows rows = unique_ids(all);
  auto emb = batch_item_embeddings(b, texts, rows.unique);  // [U, H]
  const int64_t u = static_cast<int64_t>(rows.unique.size()), h = emb.size(1);
  auto emb_pad = torch::cat({emb, torch::zeros({1, h}, emb.options())}, 0);  // row U = padding
  const auto dev = device();
  auto in_rows = rows_of(rows, inputs, u, dev), tgt_rows = rows_of(rows, targets, u, dev);
  auto x = emb_pad.index_select(0, in_rows).view({bs, len, h});
  if (config_.time_buckets > 0) {
    std::vector<int64_t> in_times;
    if (!b.times.empty()) {
      for (int64_t r = 0; r < bs; ++r) {
        in_times.insert(in_times.end(), b.times.begin() + r * width, b.times.begin() + r * width + len);
      }
    }
    x = add_time(x, inputs, in_times, bs, len);
  }
  x = add_positions(x, len);
  // SASRec's regularisation (config input_dropout, block_dropout): masks from the generator the trainer seeds per step.
  if (config_.input_dropout > 0) x = seeded_dropout(x, config_.input_dropout, dropout_gen_);
  const dropout_spec block_drop{config_.block_dropout, &dropout_gen_};
  const dropout_spec* drop = config_.block_dropout > 0 ? &block_drop : nullptr;
  std::vector<int32_t> valid_flags(inputs.size());
  int64_t positions = 0;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    valid_flags[i] = inputs[i] != 0 && targets[i] != 0;
    positions += valid_flags[i];
  }
  auto valid = to_device(torch::tensor(valid_flags), dev).to(torch::kBool).view({bs, len});
  auto input_valid =
      to_device(torch::tensor(std::vector<int32_t>(inputs.begin(), inputs.end())), dev).ne(0).view({bs, len});

  std::vector<int64_t> neg_ids(b.negatives.begin(), b.negatives.end());
  auto negatives = emb_pad.index_select(0, rows_of(rows, b.negatives, u, dev));  // [P, H]
  auto negative_ids = long_tensor(neg_ids, dev);
  loss_output r;
  // Global batch of the shared pool: this rank's first row, and the totals the objective is a mean over.
  int64_t first_row = 0, total_rows = bs, total_positions = positions;
  if (shared) {
    const int w = exchange->world_size(), me = exchange->rank();
    const auto p = static_cast<int64_t>(neg_ids.size());
    auto meta = exchange->all_gather(long_tensor({bs, positions, p})).view({w, 3});
    auto m = meta.accessor<int64_t, 2>();
    int64_t p_max = 0;
    total_rows = total_positions = 0;
    for (int q = 0; q < w; ++q) {
      total_rows += m[q][0];
      total_positions += m[q][1];
      p_max = std::max(p_max, m[q][2]);
      if (q < me) {
        first_row += m[q][0];
        r.pool_offset += m[q][2];
      }
    }
    // Pools may differ in size between ranks: padded to the largest for the collective, cut back after it.
    // The pool's collectives run on the model's device (NCCL on a GPU); the small meta tensor above stays on the
    // host, where the exchange copies it as its backend needs.
    auto id_send = torch::zeros({p_max}, negative_ids.options());
    id_send.narrow(0, 0, p).copy_(negative_ids);
    // bf16 rows travel as fp32 (exact), fp32 and float64 as they are.
    const auto wire = emb.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    auto emb_send = torch::zeros({p_max, h}, emb.options().dtype(wire));
    emb_send.narrow(0, 0, p).copy_(negatives.detach());
    auto all_ids = exchange->all_gather(id_send).view({w, p_max});
    auto all_emb = exchange->all_gather(emb_send).view({w, p_max, h});
    std::vector<torch::Tensor> id_parts, emb_parts;
    for (int q = 0; q < w; ++q) {
      id_parts.push_back(all_ids[q].narrow(0, 0, m[q][2]));
      emb_parts.push_back(all_emb[q].narrow(0, 0, m[q][2]));
    }
    negative_ids = torch::cat(id_parts, 0);
    r.pool = torch::cat(emb_parts, 0).to(emb.scalar_type()).detach().requires_grad_(emb.requires_grad());
    r.pool_local = negatives;
    negatives = r.pool;
  }

  torch::Tensor out, extra_out, cand_emb;
  if (cls) {
    if (shared) {
      // Candidates of global row g: its true next item and pool[(g * k + j) mod P] of the global pool, exactly what
      // one process holding the whole batch and pool would pick.
      std::vector<int32_t> last(bs);
      std::vector<int64_t> pick;
      const int64_t pool_rows = negatives.size(0);
      for (int64_t row = 0; row < bs; ++row) {
        last[row] = b.items[(row + 1) * width - 1];
        for (int64_t j = 0; j < k; ++j) {
          pick.push_back(((first_row + row) * k + j) % pool_rows);
        }
      }
      cand_emb = torch::cat({emb_pad.index_select(0, rows_of(rows, last, u, dev)).view({bs, 1, h}),
                             negatives.index_select(0, long_tensor(pick, dev)).view({bs, k, h})},
                            1);
    } else {
      cand_emb = emb_pad.index_select(0, rows_of(rows, cls_cands, u, dev)).view({bs, k + 1, h});
    }
    std::vector<torch::Tensor> extras;
    if (config_.late_fusion) {
      extras.push_back(user->user_token.view({1, 1, h}).expand({bs, 1, h}));
    }
    if (config_.early_fusion) {
      extras.push_back(cand_emb);
    }
    std::tie(out, extra_out) = user->forward_with_extras(x, input_valid, torch::cat(extras, 1), drop);
  } else {
    out = user->forward(x, input_valid, drop);
  }
  auto sel = valid.view({-1}).nonzero().squeeze(1);
  std::vector<int64_t> tgt_ids(targets.begin(), targets.end());
  auto nce = info_nce(out.reshape({bs * len, h}).index_select(0, sel), emb_pad.index_select(0, tgt_rows.index_select(0, sel)),
                      negatives, logit_scale, config_.false_negative_cosine,
                      long_tensor(tgt_ids, dev).index_select(0, sel), negative_ids);
  r.nce = nce.loss.item<double>();
  const double nce_weight = cls ? config_.cls_lambda : 1.0;
  torch::Tensor c;
  r.loss = nce.loss;
  if (cls) {
    c = cls_loss(extra_out, cand_emb);
    r.cls = c.item<double>();
    r.loss = config_.cls_lambda * nce.loss + c;
  }
  r.value = r.loss.item<double>();
  if (shared) {
    // Means over this rank's positions (rows) become sums over them divided by the global counts; times the world
    // size because average_gradients divides the ranks' sum by it. The ranks' averaged gradients are then those of
    // the mean loss of one process holding the global batch and pool.
    const double w = exchange->world_size();
    r.loss = torch::zeros({}, nce.loss.options());
    if (positions > 0) {
      r.loss = r.loss + nce.loss * (nce_weight * w * static_cast<double>(positions) /
                                    static_cast<double>(total_positions));
    }
    if (cls && bs > 0) {
      r.loss = r.loss + c * (w * static_cast<double>(bs) / static_cast<double>(total_rows));
    }
  }
  r.top1 = nce.top1;
  r.top5 = nce.top5;
  r.top10 = nce.top10;
  r.positions = nce.positions;
  r.items_encoded = u;
  if (item) {
    for (int32_t id : rows.unique) {
      r.item_tokens += std::min<int64_t>(static_cast<int64_t>(texts.row(id).size()), config_.max_text_tokens) + 1;
    }
  }
  return r;
}

void backward_loss(const loss_output& out, negative_exchange* exchange) {
  if (out.pool.defined() && out.pool.requires_grad()) {
    // Shared pool, two-phase backward. Phase 1: this rank's loss w.r.t. every rank's negatives (the head only);
    // summed over ranks, each rank's slice is the whole objective's gradient w.r.t. its own negatives.
    torch::Tensor g;
    if (out.loss.requires_grad()) {
      g = torch::autograd::grad({out.loss}, {out.pool}, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                /*allow_unused=*/true)[0];
    }
    const auto wire = out.pool.scalar_type() == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32;
    g = g.defined() ? g.to(wire).contiguous() : torch::zeros(out.pool.sizes(), out.pool.options().dtype(wire));
    exchange->all_reduce_sum(g);  // every rank takes part, even one whose loss reached no negative
    auto mine = g.narrow(0, out.pool_offset, out.pool_local.size(0)).to(out.pool_local.scalar_type());
    // Phase 2: one backward pass through the User and Item LLMs for the local loss and the negatives' share.
    std::vector<torch::Tensor> roots{out.pool_local}, seeds{mine};
    if (out.loss.requires_grad()) {
      roots.push_back(out.loss);
      seeds.push_back(torch::ones_like(out.loss));
    }
    torch::autograd::backward(roots, seeds);
  } else if (out.loss.requires_grad()) {
    out.loss.backward();
  }
}

}  // namespace hllm::model
