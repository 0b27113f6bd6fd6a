#pragma once
// What an HLLM (or ID-baseline) model is and how it trains: plain structs with JSON forms, no torch.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model/llama_config.hpp"

namespace hllm::model {

enum class item_source {
  text,   // stage 1: the Item LLM encodes item text inside the training step (gradients flow into it)
  id,     // the ID baseline: a learned item-id embedding table (SASRec-style) feeding the same User LLM
  cache,  // stage 2: fixed item embeddings (the embedding cache), only the User LLM trains
};
enum class item_pooling { item_token, mean };

const char* to_string(item_source s);
const char* to_string(item_pooling p);

struct hllm_config {
  item_source source = item_source::text;
  llama_config item_llm;               // used with source = text; vocab_size = the tokenizer's
  llama_config user_llm;               // vocab_size is always 0 (no token embeddings)
  int64_t max_text_tokens = 32;        // [ITEM] sits at this position (right-aligned item positions)
  item_pooling pooling = item_pooling::item_token;
  int64_t num_items = 0;               // dense ids 1..num_items (0 = padding); sizes the ID table
  bool early_fusion = false;           // discriminative head on [sequence, candidate]
  bool late_fusion = false;            // learned [USER] vector + two-tower score
  double cls_lambda = 1.0;             // L = cls_lambda * L_gen + L_cls when a discriminative head is on
  int64_t cls_negatives = 4;           // sampled negatives per user for the discriminative heads
  double false_negative_cosine = 0.99; // negatives more similar than this to the positive are masked
  double logit_scale_init = 2.659260036932778;  // ln(1 / 0.07)
  double logit_scale_max = 4.605170185988092;   // ln(100)
  uint64_t seed = 2020;
  // Timestamp features (paper appendix; REFERENCE.md): > 0 adds a learned embedding of the time since the previous
  // interaction, bucketed by log2 seconds into this many buckets (time_bucket()), to every User-LLM input. 0: off.
  int64_t time_buckets = 0;
  // SASRec-style inputs and regularisation of the User LLM (Kang & McAuley 2018; issue 19). All 0 / false = off,
  // and a config with them off is written exactly as before.
  // > 0: a learned embedding of every input's distance from the end of its sequence (0 = the most recent item;
  // older ones than this many share the last row), added to every User-LLM input (beside the rotary positions).
  // Zeros at initialisation, so rows beyond the training windows (seq_len) add nothing at evaluation.
  int64_t position_embeddings = 0;
  double input_dropout = 0;  // training only: dropout on every User-LLM input vector (item [+ time + position])
  double block_dropout = 0;  // training only: dropout on each User-LLM attention and MLP output before its residual
  // The paper's ablation (conclusion 2): the Item LLM keeps its initial weights (no gradient, no optimizer state)
  // while the rest trains. Source = text only.
  bool freeze_item_llm = false;

  // Throws hllm::error(invalid_input) naming the field.
  void validate() const;
};

// The small named default for the embedded job (CALIBRATION.md): hidden 64, 2 layers, 4 heads, text <= 32 tokens.
hllm_config default_hllm_config(int64_t vocab_size, int64_t num_items, int64_t max_text_tokens = 32);

struct train_config {
  double lr = 1e-3;
  double weight_decay = 0.01;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double adam_eps = 1e-8;
  double warmup_share = 0.1;   // linear warmup over this share of total_steps, then cosine decay to 0
  int64_t total_steps = 1000;
  double clip_norm = 1.0;      // <= 0 disables clipping
  bool bf16 = false;           // matmuls in bf16; parameters and optimizer state stay fp32
  int threads = 2;             // torch intra-op threads
};

// Learning rate at step (0-based): linear warmup, then cosine decay to 0 at total_steps.
double scheduled_lr(const train_config& t, int64_t step);

nlohmann::json to_json(const hllm_config& c);
hllm_config hllm_config_from_json(const nlohmann::json& j);
nlohmann::json to_json(const train_config& c);
train_config train_config_from_json(const nlohmann::json& j);

}  // namespace hllm::model
