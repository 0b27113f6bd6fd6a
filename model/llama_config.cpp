#include "model/llama_config.hpp"

#include <fstream>

#include <nlohmann/json.hpp>

#include "storage/error.hpp"

namespace hllm::model {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) {
    throw error(errc::invalid_input, "llama config: " + what);
  }
}

}  // namespace

void llama_config::validate() const {
  require(hidden_size > 0, "hidden_size must be positive");
  require(intermediate_size > 0, "intermediate_size must be positive");
  require(num_hidden_layers > 0, "num_hidden_layers must be positive");
  require(num_attention_heads > 0, "num_attention_heads must be positive");
  require(num_key_value_heads > 0 && num_attention_heads % num_key_value_heads == 0,
          "num_attention_heads must be a multiple of num_key_value_heads");
  require(head_dim > 0 || hidden_size % num_attention_heads == 0,
          "hidden_size must be divisible by num_attention_heads");
  require(dim_per_head() % 2 == 0, "head dimension must be even for rotary embeddings");
  require(vocab_size >= 0, "vocab_size must not be negative");
  require(rms_norm_eps > 0, "rms_norm_eps must be positive");
  require(rope_theta > 0, "rope_theta must be positive");
}

llama_config tiny_default_config(int64_t vocab_size) {
  llama_config c;
  c.vocab_size = vocab_size;
  return c;
}

llama_config tinyllama_config(int64_t layers) {
  llama_config c;
  c.hidden_size = 2048;
  c.intermediate_size = 5632;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 4;
  c.vocab_size = 32000;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  return c;
}

llama_config llama_config_from_json(const nlohmann::json& j) {
  try {
    llama_config c;
    c.hidden_size = j.at("hidden_size").get<int64_t>();
    c.intermediate_size = j.at("intermediate_size").get<int64_t>();
    c.num_hidden_layers = j.at("num_hidden_layers").get<int64_t>();
    c.num_attention_heads = j.at("num_attention_heads").get<int64_t>();
    c.num_key_value_heads = j.value("num_key_value_heads", c.num_attention_heads);
    if (j.contains("head_dim") && !j["head_dim"].is_null()) {
      c.head_dim = j["head_dim"].get<int64_t>();
    }
    c.vocab_size = j.value("vocab_size", int64_t{0});
    c.max_position_embeddings = j.value("max_position_embeddings", c.max_position_embeddings);
    c.rms_norm_eps = j.value("rms_norm_eps", c.rms_norm_eps);
    c.rope_theta = j.value("rope_theta", c.rope_theta);
    c.attention_bias = j.value("attention_bias", false);
    // Scaled RoPE variants change the positional maths; refusing beats silently different hidden states.
    require(!j.contains("rope_scaling") || j["rope_scaling"].is_null(), "rope_scaling is not supported");
    require(!j.value("mlp_bias", false), "mlp_bias is not supported");
    if (j.contains("hidden_act")) {
      require(j["hidden_act"] == "silu", "hidden_act must be silu, got " + j["hidden_act"].dump());
    }
    c.validate();
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::invalid_input, std::string("llama config: ") + e.what());
  }
}

nlohmann::json llama_config_to_json(const llama_config& c) {
  nlohmann::json j;
  j["architectures"] = {"LlamaModel"};
  j["model_type"] = "llama";
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  if (c.head_dim > 0) {
    j["head_dim"] = c.head_dim;
  }
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["attention_bias"] = c.attention_bias;
  j["tie_word_embeddings"] = false;
  j["torch_dtype"] = "float32";
  return j;
}

llama_config load_hf_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw error(errc::io, "cannot open " + path);
  }
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::format, path + ": " + e.what());
  }
  try {
    return llama_config_from_json(j);
  } catch (const error& e) {
    throw error(e.code(), path + ": " + e.what());
  }
}

}  // namespace hllm::model
