#include "model/hllm.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "model/losses.hpp"
#include "storage/error.hpp"
#include "storage/random.hpp"
#include "model/hllm_internal.hpp"

namespace hllm::model {
namespace {

using detail::long_tensor;

// Sub-seeds keep every parameter group's initialisation a pure function of (config seed, group).
enum init_stream : uint64_t { init_item_llm = 1, init_user_llm, init_item_table, init_heads };

torch::Tensor normal_vector(int64_t n, double std, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::empty({n}).normal_(0.0, std, gen);
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

torch::Tensor user_llm_impl::forward(const torch::Tensor& x, const torch::Tensor& valid, const dropout_spec* drop) {
  const int64_t b = x.size(0), s = x.size(1);
  auto positions = torch::arange(s, torch::TensorOptions().dtype(torch::kInt64).device(x.device())).repeat({b});
  auto plan = plan_dense(b, s, causal_blocked(valid), positions);
  return model->forward(x.reshape({b * s, x.size(2)}), plan, drop).view({b, s, -1});
}

std::pair<torch::Tensor, torch::Tensor> user_llm_impl::forward_with_extras(const torch::Tensor& x,
                                                                           const torch::Tensor& valid,
                                                                           const torch::Tensor& extras,
                                                                           const dropout_spec* drop) {
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
  auto h = model->forward(all, plan, drop).view({b, t, -1});
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
  if (c.position_embeddings > 0) {
    position_table = register_module("position_table", torch::nn::Embedding(c.position_embeddings, h));
    // Zeros: the model starts as without them, and a row training never reaches (a distance beyond the training
    // windows, read by a longer evaluation history) adds nothing.
    position_table->weight.zero_();
  }
  dropout_gen_ = at::detail::createCPUGenerator(stream_seed({c.seed, init_heads, 9}));
}

void recommender_impl::set_dropout_seed(uint64_t seed) { dropout_gen_.set_current_seed(seed); }

torch::Tensor recommender_impl::add_positions(const torch::Tensor& x, int64_t len) {
  if (!position_table) return x;
  std::vector<int64_t> distance(len);
  for (int64_t c = 0; c < len; ++c) distance[c] = std::min(len - 1 - c, config_.position_embeddings - 1);
  auto p = position_table->forward(long_tensor(distance, x.device()));  // [len, H]
  return x + p.unsqueeze(0).to(x.scalar_type());
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
    x = add_positions(x, len);
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
