#pragma once
// Shape of a Llama-family decoder, read from / written to a Hugging Face `config.json`. No torch here.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace hllm::model {

struct llama_config {
  int64_t hidden_size = 64;
  int64_t intermediate_size = 192;   // SwiGLU FFN width
  int64_t num_hidden_layers = 2;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 4;   // < heads means grouped-query attention
  int64_t head_dim = 0;              // 0: hidden_size / num_attention_heads
  int64_t vocab_size = 0;            // 0: no token embedding (the User LLM reads item embeddings)
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool attention_bias = false;       // q/k/v/o projections with bias (some Llama derivatives)

  int64_t dim_per_head() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  // Throws hllm::error(invalid_input) naming the field when the shape is inconsistent.
  void validate() const;
};

// The small named default for the embedded job on a 2-core CPU (CALIBRATION.md: hidden 64, 2 layers, 4 heads).
llama_config tiny_default_config(int64_t vocab_size);
// TinyLlama-1.1B's shape (REFERENCE.md), optionally cut to fewer layers, for benchmarks.
llama_config tinyllama_config(int64_t layers = 22);

// Hugging Face config.json <-> llama_config. Unknown keys are ignored; unsupported features (rope_scaling, mlp_bias)
// are rejected with a message naming them.
llama_config llama_config_from_json(const nlohmann::json& j);
nlohmann::json llama_config_to_json(const llama_config& c);
llama_config load_hf_config(const std::string& path);

}  // namespace hllm::model
