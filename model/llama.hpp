#pragma once
// A Llama-family decoder in libtorch: RMSNorm, rotary embeddings (Hugging Face convention), grouped-query
// attention written as matmul + mask (libtorch 1.13 has no public SDPA; on a CUDA device with libtorch >= 2 the
// fused at::scaled_dot_product_attention runs instead), SwiGLU. The LM head is never built.
//
// Tokens travel as a packed [N, hidden] matrix: projections and the MLP never touch padding. Attention groups the
// tokens by an `attention_plan` (one row per sequence, rows of similar length share a padded block), so packed items
// of different lengths waste little attention work and never see each other.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "model/llama_config.hpp"
#include "model/safetensors.hpp"

namespace hllm::model {

// How the N tokens of one forward pass are grouped into attention rows.
struct attention_plan {
  struct group {
    torch::Tensor blocked;  // [rows, 1, len, len] bool: true where a query may not attend a key
    int64_t rows = 0;
    int64_t len = 0;
  };
  torch::Tensor positions;  // [N] int64 rotary position of every token
  std::vector<group> groups;
  // One gather for all groups (a single index_add in backward, not one per group): the token of every slot of
  // the concatenated [rows * len] blocks, padding slots pointing at token 0. Undefined: slots are the tokens.
  torch::Tensor gather;
  torch::Tensor scatter;    // [N] slot of every token; undefined: identity
  int64_t tokens = 0;
  int64_t padded_slots = 0;      // sum of rows * len
  double attention_padding = 0;  // share of attention score work spent on padding slots
};

// Causal attention within each segment of a packed token stream; segment i holds tokens
// [sum(lengths[0..i)), + lengths[i]). Segments are bucketed by length so that padding costs at most about
// 1 - min_fill of the attention work (linear layers see no padding at all).
attention_plan plan_packed(const std::vector<int64_t>& lengths, const std::vector<int64_t>& positions,
                           double min_fill = 0.9);
// Dense [rows, len] block (row-major tokens) with the given blocked mask [rows, 1, len, len] and positions [rows*len].
attention_plan plan_dense(int64_t rows, int64_t len, torch::Tensor blocked, torch::Tensor positions);
// Causal + key-padding mask for left- or right-padded rows: valid [rows, len] bool (on valid's device).
torch::Tensor causal_blocked(const torch::Tensor& valid);

// Host data for a device: `host` itself on the CPU (no copy), else a pinned copy sent with a non-blocking copy (the
// host goes on assembling while the transfer runs on the current CUDA stream).
torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device);
// The plan with every tensor on `device` (the same plan, no copy, on the CPU).
attention_plan to_device(const attention_plan& plan, const torch::Device& device);

// Dropout whose mask is drawn from `gen` (a CPU generator; the mask travels to x's device), so a training run stays
// a pure function of its seeds. Scales kept values by 1 / (1 - p); p = 0 returns x itself.
torch::Tensor seeded_dropout(const torch::Tensor& x, double p, at::Generator& gen);
// Training-time dropout on every layer's attention and MLP outputs (before the residual add); none when absent.
struct dropout_spec {
  double p = 0;
  at::Generator* gen = nullptr;
};

class rms_norm_impl : public torch::nn::Module {
 public:
  rms_norm_impl(int64_t dim, double eps);
  // Normalises in at least fp32 (as Hugging Face does) and returns `out_dtype`.
  torch::Tensor forward(const torch::Tensor& x, torch::Dtype out_dtype);
  torch::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE_IMPL(rms_norm, rms_norm_impl);

class llama_attention_impl : public torch::nn::Module {
 public:
  explicit llama_attention_impl(const llama_config& c);
  // cos/sin are per slot ([padded_slots, head_dim]): rotary embeddings are applied after the gather.
  torch::Tensor forward(const torch::Tensor& x, const attention_plan& plan, const torch::Tensor& cos,
                        const torch::Tensor& sin);
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  torch::Tensor attend_group(const torch::Tensor& slots, const attention_plan::group& grp, const torch::Tensor& cos,
                             const torch::Tensor& sin);
  int64_t heads_, kv_heads_, head_dim_;
};
TORCH_MODULE_IMPL(llama_attention, llama_attention_impl);

class llama_mlp_impl : public torch::nn::Module {
 public:
  explicit llama_mlp_impl(const llama_config& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE_IMPL(llama_mlp, llama_mlp_impl);

class llama_layer_impl : public torch::nn::Module {
 public:
  explicit llama_layer_impl(const llama_config& c);
  // x: residual stream in the parameter dtype; sublayers compute in `compute`.
  torch::Tensor forward(const torch::Tensor& x, const attention_plan& plan, const torch::Tensor& cos,
                        const torch::Tensor& sin, torch::Dtype compute, const dropout_spec* drop = nullptr);
  llama_attention self_attn{nullptr};
  llama_mlp mlp{nullptr};
  rms_norm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE_IMPL(llama_layer, llama_layer_impl);

// Parameter names follow Hugging Face's LlamaModel without the "model." prefix: embed_tokens.weight,
// layers.N.self_attn.q_proj.weight, ..., norm.weight.
class llama_model_impl : public torch::nn::Module {
 public:
  explicit llama_model_impl(const llama_config& c);
  // Input embeddings [N, hidden] -> final-norm hidden states [N, hidden] in the parameter dtype.
  // `drop`: training-time dropout in the blocks (dropout_spec); absent (evaluation) there is none.
  torch::Tensor forward(const torch::Tensor& x, const attention_plan& plan, const dropout_spec* drop = nullptr);
  torch::Tensor embed(const torch::Tensor& token_ids);  // [N] int64 -> [N, hidden]; needs vocab_size > 0

  // Normal(0, std) for matrices and embeddings, ones for norms: a pure function of the seed.
  void init_random(uint64_t seed, double std = 0.02);
  // Matmuls run in this dtype (fp32 master weights are cast inside forward, so autograd keeps fp32 parameters).
  void set_compute_dtype(torch::Dtype d) { compute_ = d; }
  torch::Dtype compute_dtype() const { return compute_; }
  const llama_config& config() const { return config_; }
  torch::Dtype param_dtype() const { return norm->weight.scalar_type(); }

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers;
  rms_norm norm{nullptr};

 private:
  llama_config config_;
  torch::Dtype compute_ = torch::kFloat32;
  torch::Tensor inv_freq_;
};
TORCH_MODULE_IMPL(llama_model, llama_model_impl);

// Loads a Hugging Face checkpoint directory (config.json + model.safetensors or a sharded index), fp32/fp16/bf16,
// names with or without the "model." prefix. lm_head and rotary buffers are ignored; any other unknown tensor, a
// missing tensor or a shape that disagrees with config.json is an error naming the tensor.
llama_model load_hf_llama(const std::string& dir);
// The weights of that directory into an existing Llama of the same shape, on its device and dtype (what
// load_hf_llama does after building the model; config.json is not read: the caller checks it).
void load_hf_weights(llama_model_impl& m, const std::string& dir);

// Copies a safetensors view into a new CPU tensor of its own dtype (the mapped data need not be aligned).
torch::Tensor to_tensor(const tensor_view& v);
// Fills every parameter and buffer of `m` from `archive` under `prefix`. Tensors in the archive under the prefix
// that `m` does not have are an error unless `ignore_extra` says so. Converts dtypes to the parameter's.
void load_module(torch::nn::Module& m, const safetensors_archive& archive, const std::string& prefix,
                 const std::function<bool(const std::string&)>& ignore_extra = {});
// Appends blobs (fp32 copies kept alive in `keep`) for every parameter and buffer of `m`, names under `prefix`.
void collect_module(const torch::nn::Module& m, const std::string& prefix, std::vector<tensor_blob>& out,
                    std::vector<torch::Tensor>& keep);
// Writes a Hugging Face-format directory (config.json + model.safetensors, "model." prefix) for `m`.
void save_hf_llama(llama_model& m, const std::string& dir);

}  // namespace hllm::model
