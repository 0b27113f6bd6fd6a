#pragma once
// Small owned datasets and configs for model tests (no files, no tokenizer).
#include <cstdint>
#include <random>
#include <vector>

#include "model/batching.hpp"
#include "model/hllm_config.hpp"

namespace hllm::model::testing {

// Item texts owned by the test; view() is valid while it lives.
struct owned_texts {
  std::vector<uint64_t> offsets{0, 0};
  std::vector<int32_t> tokens;
  void add(const std::vector<int32_t>& t) {
    tokens.insert(tokens.end(), t.begin(), t.end());
    offsets.push_back(tokens.size());
  }
  item_text_table view() const { return {{offsets.data(), offsets.size()}, {tokens.data(), tokens.size()}}; }
};

// `n` items with texts of 1..max_len random tokens (BOS = 1 first).
inline owned_texts random_texts(int n, int max_len, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  owned_texts t;
  for (int i = 0; i < n; ++i) {
    std::vector<int32_t> text{1};
    const int len = 1 + static_cast<int>(rng() % max_len);
    while (static_cast<int>(text.size()) < len) text.push_back(2 + static_cast<int32_t>(rng() % (vocab - 2)));
    t.add(text);
  }
  return t;
}

inline llama_config tiny_llama(int64_t vocab) {
  llama_config c;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = vocab;
  return c;
}

inline hllm_config tiny_hllm(int64_t vocab, int64_t items, int64_t max_text) {
  hllm_config c;
  c.item_llm = tiny_llama(vocab);
  c.user_llm = tiny_llama(0);
  c.num_items = items;
  c.max_text_tokens = max_text;
  return c;
}

}  // namespace hllm::model::testing
