#include "model/hllm.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "model/losses.hpp"
#include "storage/error.hpp"
#include "storage/random.hpp"

namespace hllm::model {
namespace {

// Sub-seeds keep every parameter group's initialisation a pure function of (config seed, group).
enum init_stream : uint64_t { init_item_llm = 1, init_user_llm, init_item_table, init_heads };

torch::Tensor long_tensor(const std::vector<int64_t>& v) {
  return torch::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kInt64).clone();
}

// Host-assembled indices on the model's device (the host tensor itself on the CPU).
torch::Tensor long_tensor(const std::vector<int64_t>& v, const torch::Device& d) {
  return to_device(long_tensor(v), d);
}

torch::Tensor normal_vector(int64_t n, double std, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::empty({n}).normal_(0.0, std, gen);
}

// Sorted unique ids and, for each requested id, its row among them.
struct id_rows {
  std::vector<int32_t> unique;
  int64_t row(int32_t id) const {
    return std::lower_bound(unique.begin(), unique.end(), id) - unique.begin();
  }
};

id_rows unique_ids(std::vector<int32_t> ids) {
  ids.erase(std::remove(ids.begin(), ids.end(), 0), ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return {std::move(ids)};
}

// Rows of `ids` in `rows` (0 -> `pad_row`), as an int64 tensor on `d`.
torch::Tensor rows_of(const id_rows& rows, const std::vector<int32_t>& ids, int64_t pad_row, const torch::Device& d) {
  std::vector<int64_t> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out[i] = ids[i] == 0 ? pad_row : rows.row(ids[i]);
  }
  return long_tensor(out, d);
}

}  // namespace

packed_items pack_items(const item_text_table& texts, const std::vector<int32_t>& ids, int64_t max_text_tokens,
                        item_pooling pooling, double min_fill) {
  const bool item_token = pooling == item_pooling::item_token;
  std::vector<int64_t> tokens, source, lengths, positions, pick;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] <= 0 || ids[i] > texts.num_items()) {
      throw error(errc::not_found, "item llm: item id " + std::to_string(ids[i]) + " is not in 1.." +
                                       std::to_string(texts.num_items()));
    }
    auto text = texts.row(ids[i]);
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(text.size()), max_text_tokens);
    if (n == 0 && !item_token) {
      throw error(errc::invalid_input, "item llm: item " + std::to_string(ids[i]) + " has no text to mean-pool");
    }
    // Right-aligned: the last text token sits at max_text_tokens - 1 and [ITEM] at max_text_tokens.
    for (int64_t t = 0; t < n; ++t) {
      source.push_back(static_cast<int64_t>(tokens.size()));
      tokens.push_back(text[t]);
      positions.push_back(max_text_tokens - n + t);
      if (!item_token) {
        pick.push_back(static_cast<int64_t>(i));
      }
    }
    if (item_token) {
      source.push_back(-1);  // patched below once the text-token count is known
      positions.push_back(max_text_tokens);
      pick.push_back(static_cast<int64_t>(positions.size()) - 1);
    }
    lengths.push_back(n + (item_token ? 1 : 0));
  }
  const auto n_text = static_cast<int64_t>(tokens.size());
  std::replace(source.begin(), source.end(), int64_t{-1}, n_text);
  packed_items p;
  p.items = static_cast<int64_t>(ids.size());
  p.tokens = static_cast<int64_t>(source.size());
  p.token_ids = long_tensor(tokens);
  p.source_rows = long_tensor(source);
  p.pick = long_tensor(pick);
  p.plan = plan_packed(lengths, positions, min_fill);
  if (!item_token) {
    std::vector<int64_t> counts(lengths.begin(), lengths.end());
    p.counts = long_tensor(counts).to(torch::kFloat32).unsqueeze(1);
  }
  return p;
}

item_llm_impl::item_llm_impl(const llama_config& c, int64_t max_text_tokens, item_pooling pooling)
    : max_text_tokens_(max_text_tokens), pooling_(pooling) {
  model = register_module("model", llama_model(c));
  item_token = register_parameter("item_token", torch::zeros({c.hidden_size}));
}

void item_llm_impl::init_random(uint64_t seed) {
  torch::NoGradGuard no_grad;
  model->init_random(stream_seed({seed, 0}));
  item_token.copy_(normal_vector(item_token.size(0), 0.02, stream_seed({seed, 1})));
}

torch::Tensor item_llm_impl::forward(const packed_items& host) {
  // Packed on the host; on a GPU the index tensors travel pinned and non-blocking (the plan in model->forward).
  const auto d = item_token.device();
  packed_items moved;
  const packed_items* use = &host;
  if (!d.is_cpu()) {
    moved = host;
    moved.token_ids = to_device(host.token_ids, d);
    moved.source_rows = to_device(host.source_rows, d);
    moved.pick = to_device(host.pick, d);
    moved.counts = to_device(host.counts, d);
    use = &moved;
  }
  const packed_items& p = *use;
  auto text = model->embed(p.token_ids);
  auto rows = torch::cat({text, item_token.unsqueeze(0).to(text.scalar_type())}, 0).index_select(0, p.source_rows);
  auto h = model->forward(rows, p.plan);
  if (pooling_ == item_pooling::item_token) {
    return h.index_select(0, p.pick);
  }
  auto sums = torch::zeros({p.items, h.size(1)}, h.options()).index_add(0, p.pick, h);
  return sums / p.counts.to(h.scalar_type());
}

torch::Tensor item_llm_impl::encode(const item_text_table& texts, const std::vector<int32_t>& ids) {
  return forward(pack_items(texts, ids, max_text_tokens_, pooling_));
}

user_llm_impl::user_llm_impl(const llama_config& c, bool with_user_token) {
  model = register_module("model", llama_model(c));
  if (with_user_token) {
    user_token = register_parameter("user_token", torch::zeros({c.hidden_size}));
  }
}

void user_llm_impl::init_random(uint64_t seed) {
  torch::NoGradGuard no_grad;
  model->init_random(stream_seed({seed, 0}));
  if (user_token.defined()) {
    user_token.copy_(normal_vector(user_token.size(0), 0.02, stream_seed({seed, 1})));
  }
}

torch::Tensor user_llm_impl::forward(const torch::Tensor& x, const torch::Tensor& valid) {
  const int64_t b = x.size(0), s = x.size(1);
  auto positions = torch::arange(s, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).repeat({b});
  auto plan = plan_dense(b, s, causal_blocked(valid), positions);
  return model->forward(x.reshape({b * s, x.size(2)}), plan).view({b, s, -1});
}

std::pair<torch::Tensor, torch::Tensor> user_llm_impl::forward_with_extras(const torch::Tensor& x,
                                                                           const torch::Tensor& valid,
                                                                           const torch::Tensor& extras) {
  const int64_t b = x.size(0), s = x.size(1), e = extras.size(1), t = s + e;
  const auto flags = torch::TensorOptions().dtype(torch::kBool).device(x.device());
  const auto longs = torch::TensorOptions().dtype(torch::kInt64).device(x.device());
  auto pad_key = valid.logical_not();                                   // [B, S]
  auto prefix_rows = torch::cat({causal_blocked(valid).squeeze(1),      // [B, S, S]
                                 torch::ones({b, s, e}, flags)}, 2);
  auto not_self = torch::eye(e, flags).logical_not().unsqueeze(0).expand({b, e, e});
  auto extra_rows = torch::cat({pad_key.unsqueeze(1).expand({b, e, s}), not_self}, 2);
  auto blocked = torch::cat({prefix_rows, extra_rows}, 1).unsqueeze(1);  // [B, 1, T, T]
  auto pos_row = torch::cat({torch::arange(s, longs), torch::full({e}, s, longs)});
  auto plan = plan_dense(b, t, blocked, pos_row.repeat({b}));
  auto all = torch::cat({x, extras.to(x.scalar_type())}, 1).reshape({b * t, x.size(2)});
  auto h = model->forward(all, plan).view({b, t, -1});
  return {h.narrow(1, 0, s), h.narrow(1, s, e)};
}

early_fusion_head_impl::early_fusion_head_impl(int64_t hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(hidden, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, 1));
}

torch::Tensor early_fusion_head_impl::forward(const torch::Tensor& h) {
  return fc2->forward(torch::silu(fc1->forward(h))).squeeze(-1);
}

recommender_impl::recommender_impl(const hllm_config& c, torch::Tensor cache) : config_(c), cache_(std::move(cache)) {
  c.validate();
  torch::NoGradGuard no_grad;
  const int64_t h = c.user_llm.hidden_size;
  if (c.source == item_source::text) {
    item = register_module("item_llm", item_llm(c.item_llm, c.max_text_tokens, c.pooling));
    item->init_random(stream_seed({c.seed, init_item_llm}));
  } else if (c.source == item_source::id) {
    item_table = register_module("item_table", torch::nn::Embedding(c.num_items + 1, h));
    // N(0, 1) like the Item LLM's final-norm outputs, so both feed the User LLM at the same scale.
    auto gen = at::detail::createCPUGenerator(stream_seed({c.seed, init_item_table}));
    item_table->weight.normal_(0.0, 1.0, gen);
    item_table->weight[0].zero_();
  } else if (cache_.defined()) {
    set_item_cache(cache_);
  }
  user = register_module("user_llm", user_llm(c.user_llm, c.late_fusion));
  user->init_random(stream_seed({c.seed, init_user_llm}));
  if (c.early_fusion) {
    early_head = register_module("early_head", early_fusion_head(h));
    auto gen = at::detail::createCPUGenerator(stream_seed({c.seed, init_heads}));
    for (auto& p : early_head->parameters()) {
      p.dim() == 1 ? p.zero_() : p.normal_(0.0, 0.02, gen);
    }
  }
  if (c.late_fusion) {
    late_scale = register_parameter("late_scale", torch::full({}, c.logit_scale_init));
    late_bias = register_parameter("late_bias", torch::zeros({}));
  }
  logit_scale = register_parameter("logit_scale", torch::full({}, c.logit_scale_init));
  if (c.time_buckets > 0) {
    time_table = register_module("time_table", torch::nn::Embedding(c.time_buckets, h));
    auto gen = at::detail::createCPUGenerator(stream_seed({c.seed, init_heads, 7}));
    time_table->weight.normal_(0.0, 1.0, gen);  // the scale of item embeddings (N(0, 1) rows)
    time_table->weight[0].zero_();
  }
}

torch::Tensor recommender_impl::add_time(const torch::Tensor& x, const std::vector<int32_t>& ids,
                                         const std::vector<int64_t>& times, int64_t rows, int64_t len) {
  if (config_.time_buckets <= 0) return x;
  if (times.size() != ids.size()) {
    throw error(errc::invalid_input, "timestamp features are on (model.time_buckets = " +
                                         std::to_string(config_.time_buckets) + ") but the batch carries no times");
  }
  std::vector<int64_t> buckets(ids.size(), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < len; ++c) {
      const auto i = r * len + c;
      if (ids[i] == 0) continue;
      const bool first = c == 0 || ids[i - 1] == 0;
      buckets[i] = time_bucket(first ? 0 : times[i - 1], times[i], first, config_.time_buckets);
    }
  }
  return x + time_table->forward(long_tensor(buckets, x.device()).view({rows, len}));
}

void recommender_impl::set_item_cache(torch::Tensor cache) {
  if (config_.source != item_source::cache) {
    throw error(errc::invalid_input, "recommender: only a stage-2 model (item source cache) reads an item matrix");
  }
  if (!cache.defined() || cache.dim() != 2 || cache.size(1) != config_.user_llm.hidden_size ||
      cache.size(0) != config_.num_items + 1) {
    throw error(errc::mismatch, "recommender: the item cache must be [num_items + 1, user hidden size]");
  }
  cache_ = to_device(cache, device());
}

void recommender_impl::move_to(const torch::Device& d) {
  to(d);
  if (cache_.defined()) {
    cache_ = to_device(cache_, d);
  }
}

void recommender_impl::set_compute_dtype(torch::Dtype d) {
  if (item) {
    item->model->set_compute_dtype(d);
  }
  user->model->set_compute_dtype(d);
}

void recommender_impl::clamp_logit_scale() {
  torch::NoGradGuard no_grad;
  logit_scale.clamp_(0.0, config_.logit_scale_max);
  if (late_scale.defined()) {
    late_scale.clamp_(0.0, config_.logit_scale_max);
  }
}

torch::Tensor recommender_impl::item_embeddings(const item_text_table& texts, const std::vector<int32_t>& ids) {
  if (item) {
    return item->encode(texts, ids);
  }
  std::vector<int64_t> rows(ids.begin(), ids.end());
  if (!item_table && !cache_.defined()) {
    throw error(errc::invalid_input, "stage 2: this trainer holds no item matrix (give it one with set_item_cache, "
                                     "or train on batches that carry their cached rows)");
  }
  const auto& table = item_table ? item_table->weight : cache_;
  return table.index_select(0, long_tensor(rows, table.device()));
}

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
    std::tie(out, extra_out) = user->forward_with_extras(x, input_valid, torch::cat(extras, 1));
  } else {
    out = user->forward(x, input_valid);
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

torch::Tensor recommender_impl::item_matrix(const item_text_table& texts, int64_t chunk) {
  torch::NoGradGuard no_grad;
  if (!item) {
    if (!item_table && !cache_.defined()) {
      throw error(errc::invalid_input, "stage 2: this trainer holds no item matrix to rank against (set_item_cache)");
    }
    return (item_table ? item_table->weight : cache_).detach().clone();
  }
  const int64_t n = texts.num_items();
  auto out = torch::zeros({n + 1, config_.user_llm.hidden_size}, torch::TensorOptions().device(device()));
  for (int64_t start = 1; start <= n; start += chunk) {
    std::vector<int32_t> ids;
    for (int64_t i = start; i < std::min(start + chunk, n + 1); ++i) {
      ids.push_back(static_cast<int32_t>(i));
    }
    out.narrow(0, start, static_cast<int64_t>(ids.size())).copy_(item->encode(texts, ids));
  }
  return out;
}

torch::Tensor recommender_impl::user_embeddings(const torch::Tensor& items, const eval_set& e, int64_t chunk) {
  torch::NoGradGuard no_grad;
  const int64_t h = items.size(1);
  auto out = torch::zeros({e.size(), h}, torch::TensorOptions().device(items.device()));
  for (int64_t start = 0; start < e.size(); start += chunk) {
    const int64_t rows = std::min(chunk, e.size() - start);
    int64_t len = 1;
    for (int64_t r = start; r < start + rows; ++r) {
      len = std::max<int64_t>(len, e.history_offsets[r + 1] - e.history_offsets[r]);
    }
    std::vector<int64_t> ids(rows * len, 0);
    std::vector<int32_t> ids32(rows * len, 0);
    std::vector<int64_t> times(e.history_times.empty() ? 0 : rows * len, 0);
    for (int64_t r = 0; r < rows; ++r) {
      const auto b = e.history_offsets[start + r], n = e.history_offsets[start + r + 1] - b;
      for (uint64_t j = 0; j < n; ++j) {
        ids[r * len + (len - n) + j] = e.history[b + j];  // left padding, as in training
        ids32[r * len + (len - n) + j] = e.history[b + j];
        if (!times.empty()) times[r * len + (len - n) + j] = e.history_times[b + j];
      }
    }
    auto id_t = long_tensor(ids, items.device());
    // Raw embeddings, exactly what training fed the User LLM (CALIBRATION.md trap 3).
    auto x = add_time(items.index_select(0, id_t).view({rows, len, h}), ids32, times, rows, len);
    auto y = user->forward(x, id_t.ne(0).view({rows, len}));
    out.narrow(0, start, rows).copy_(y.select(1, len - 1));
  }
  return out;
}

hllm_config read_checkpoint_config(const std::string& dir) {
  const std::string path = dir + "/config.json";
  std::ifstream in(path);
  if (!in) {
    throw error(errc::not_found, "checkpoint: cannot open " + path);
  }
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::format, path + ": " + e.what());
  }
  if (j.value("format", std::string()) != "hllm-checkpoint") {
    throw error(errc::format, path + ": not an hllm checkpoint (format is not \"hllm-checkpoint\")");
  }
  if (j.value("version", 0) != 1) {
    throw error(errc::version, path + ": checkpoint version " + j.value("version", nlohmann::json()).dump() +
                                   " is not supported (this build reads 1)");
  }
  return hllm_config_from_json(j.at("model"));
}

recommender load_recommender(const std::string& dir, torch::Tensor cache, const torch::Device& device) {
  recommender r(read_checkpoint_config(dir), std::move(cache));
  load_module(*r, safetensors_archive::open_file(dir + "/model.safetensors"), "");
  r->move_to(device);
  return r;
}

}  // namespace hllm::model
