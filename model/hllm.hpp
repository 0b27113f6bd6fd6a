#pragma once
// The HLLM model (REFERENCE.md): an Item LLM that turns item text into embeddings, a User LLM over those
// embeddings, the discriminative heads, and the ID baseline that swaps the Item LLM for an id embedding table.
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "model/batching.hpp"
#include "model/hllm_config.hpp"
#include "model/llama.hpp"
#include "model/negative_exchange.hpp"

namespace hllm::model {

// Item-LLM input for a list of items, packed into one token stream (no padding in projections and MLP).
struct packed_items {
  torch::Tensor token_ids;    // [text tokens] int64
  torch::Tensor source_rows;  // [N] per packed row: a text-token row, or == text tokens for the [ITEM] vector
  torch::Tensor pick;         // item pooling: [items] row of each [ITEM]; mean pooling: [N] item of each token
  torch::Tensor counts;       // mean pooling: [items, 1] tokens per item
  attention_plan plan;
  int64_t items = 0;
  int64_t tokens = 0;  // N, [ITEM] rows included
};

// Item i's text: its first max_text_tokens tokens (BOS first), then [ITEM] (item pooling); positions right-aligned
// so that [ITEM] sits at max_text_tokens. Throws hllm::error naming an id that is padding or out of range.
packed_items pack_items(const item_text_table& texts, const std::vector<int32_t>& ids, int64_t max_text_tokens,
                        item_pooling pooling, double min_fill = 0.9);

class item_llm_impl : public torch::nn::Module {
 public:
  item_llm_impl(const llama_config& c, int64_t max_text_tokens, item_pooling pooling);
  torch::Tensor forward(const packed_items& p);  // [items, hidden], final-norm hidden state
  torch::Tensor encode(const item_text_table& texts, const std::vector<int32_t>& ids);
  void init_random(uint64_t seed);

  llama_model model{nullptr};
  torch::Tensor item_token;  // the learned [ITEM] vector

 private:
  int64_t max_text_tokens_;
  item_pooling pooling_;
};
TORCH_MODULE_IMPL(item_llm, item_llm_impl);

class user_llm_impl : public torch::nn::Module {
 public:
  user_llm_impl(const llama_config& c, bool with_user_token);
  // x [B, S, H] left-padded item embeddings, valid [B, S] bool -> outputs at every position [B, S, H].
  // `drop`: training-time dropout in the blocks (none when absent: evaluation).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid, const dropout_spec* drop = nullptr);
  // Also runs extra tokens [B, E, H] at position S, each seeing the valid prefix and itself only (never each
  // other): the [USER] token and early-fusion candidates share one pass. Returns (prefix outputs, extra outputs).
  std::pair<torch::Tensor, torch::Tensor> forward_with_extras(const torch::Tensor& x, const torch::Tensor& valid,
                                                              const torch::Tensor& extras,
                                                              const dropout_spec* drop = nullptr);
  void init_random(uint64_t seed);

  llama_model model{nullptr};
  torch::Tensor user_token;  // the learned [USER] vector (late fusion), undefined otherwise
};
TORCH_MODULE_IMPL(user_llm, user_llm_impl);

// Early fusion: the paper leaves the head open; a two-layer SiLU MLP from the candidate's output to one logit.
class early_fusion_head_impl : public torch::nn::Module {
 public:
  explicit early_fusion_head_impl(int64_t hidden);
  torch::Tensor forward(const torch::Tensor& h);  // [..., H] -> [...]
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE_IMPL(early_fusion_head, early_fusion_head_impl);

struct loss_output {
  // What to differentiate: lambda * nce + cls, or nce alone; with a shared pool, scaled so that the ranks' gradients
  // averaged give the gradient of the global batch's mean loss (training_loss).
  torch::Tensor loss;
  double value = 0;  // this rank's lambda * nce + cls (or nce) over its own positions, for logging
  double nce = 0, cls = 0;
  double top1 = 0, top5 = 0, top10 = 0;
  int64_t positions = 0;
  int64_t items_encoded = 0;
  int64_t item_tokens = 0;
  // Shared negative pool only (an exchange with world size > 1): the all-gathered negatives [P_total, H] as a leaf
  // (requiring grad when the item source trains), this rank's own negatives [P_r, H] still attached to the item
  // source, and the first row of those in `pool`. The caller runs the two-phase backward (trainer.cpp).
  torch::Tensor pool, pool_local;
  int64_t pool_offset = 0;
};

class recommender_impl : public torch::nn::Module {
 public:
  // `cache` (source = cache only): fixed item embeddings [num_items + 1, H], row 0 the padding row. It may be left
  // undefined: training then reads each batch's own rows (train_batch::rows), and evaluation needs set_item_cache.
  explicit recommender_impl(const hllm_config& c, torch::Tensor cache = {});
  // Source = cache: the item matrix [num_items + 1, H] for evaluation (and for batches without rows).
  void set_item_cache(torch::Tensor cache);

  // Embeddings of `ids` from the configured source; gradients flow into it (except the cache).
  torch::Tensor item_embeddings(const item_text_table& texts, const std::vector<int32_t>& ids);
  // The training objective on one batch (REFERENCE.md: InfoNCE over a shared negative pool, plus heads). With an
  // exchange of world size > 1 the pool is every rank's negatives (all-gathered; loss_output says how to backward).
  loss_output training_loss(const train_batch& b, const item_text_table& texts, negative_exchange* exchange = nullptr);
  // Every item's embedding [num_items + 1, H] (row 0 zeros), in chunks without gradients.
  torch::Tensor item_matrix(const item_text_table& texts, int64_t chunk = 512);
  // The User LLM's last-position output for every query of `e`, reading rows of `items` (no gradients).
  torch::Tensor user_embeddings(const torch::Tensor& items, const eval_set& e, int64_t chunk = 256);

  // Moves parameters and the item cache to `d` (the model is always built and initialised on the CPU).
  void move_to(const torch::Device& d);
  // Where the parameters live.
  torch::Device device() const { return logit_scale.defined() ? logit_scale.device() : torch::Device(torch::kCPU); }

  void set_compute_dtype(torch::Dtype d);
  // Seeds the training-time dropout (config input_dropout / block_dropout) of the next training_loss: the trainer
  // calls it before every step with a pure function of (seed, step, rank). Evaluation never drops.
  void set_dropout_seed(uint64_t seed);
  // Clamps the learnable logit scale into [0, logit_scale_max] (after every optimizer step).
  void clamp_logit_scale();
  const hllm_config& config() const { return config_; }

  item_llm item{nullptr};
  torch::nn::Embedding item_table{nullptr};
  user_llm user{nullptr};
  early_fusion_head early_head{nullptr};
  torch::nn::Embedding time_table{nullptr};  // timestamp features (config time_buckets > 0), row 0 = padding
  // Config position_embeddings > 0: row d = distance d from the end; zeros at initialisation.
  torch::nn::Embedding position_table{nullptr};
  torch::Tensor late_scale, late_bias, logit_scale;

 private:
  torch::Tensor cls_loss(const torch::Tensor& extra_out, const torch::Tensor& candidates);
  // x [rows, len, H] plus the time-interval embeddings of left-padded windows `ids` with their `times` (both
  // rows x len, row-major); x unchanged when timestamp features are off.
  torch::Tensor add_time(const torch::Tensor& x, const std::vector<int32_t>& ids, const std::vector<int64_t>& times,
                         int64_t rows, int64_t len);
  // x [rows, len, H] plus the learned embedding of each column's distance from the end (len - 1 - column); x
  // unchanged when position_embeddings is 0.
  torch::Tensor add_positions(const torch::Tensor& x, int64_t len);
  // Embeddings of the batch's distinct ids `ids`: from the batch's cached rows when it carries them (source = cache).
  torch::Tensor batch_item_embeddings(const train_batch& b, const item_text_table& texts,
                                      const std::vector<int32_t>& ids);
  hllm_config config_;
  torch::Tensor cache_;
  at::Generator dropout_gen_;  // CPU; reseeded per step by set_dropout_seed
};
TORCH_MODULE_IMPL(recommender, recommender_impl);

// Gradients of training_loss's output: loss.backward(); with a shared pool whose items train, the two-phase
// backward: this rank's loss w.r.t. the whole pool (the head only), summed over the ranks with `exchange` (every
// rank must call it), then one backward pass for the loss and this rank's slice into its own negatives.
void backward_loss(const loss_output& out, negative_exchange* exchange);

// A trained model from a checkpoint directory (trainer.hpp describes the layout): config.json + model.safetensors.
// `cache` is read only when the checkpoint's item source is the embedding cache (optional there too). The tensors are
// read on the host and the model moved to `device` (a checkpoint written on any device loads on any other).
recommender load_recommender(const std::string& dir, torch::Tensor cache = {},
                             const torch::Device& device = torch::Device(torch::kCPU));
hllm_config read_checkpoint_config(const std::string& dir);

}  // namespace hllm::model
