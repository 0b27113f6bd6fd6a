#include "model/llama.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm::model {
namespace {

// Masked scores get a large finite negative, not -inf: a fully masked (padding) row then softmaxes to a finite
// uniform row instead of NaN, and its output is discarded.
constexpr double masked_score = -1e30;

torch::Dtype accumulate_dtype(torch::Dtype d) { return d == torch::kFloat64 ? torch::kFloat64 : torch::kFloat32; }

torch::Tensor linear(const torch::Tensor& x, const torch::nn::Linear& l, torch::Dtype compute) {
  const auto& b = l->bias;
  return torch::linear(x.to(compute), l->weight.to(compute), b.defined() ? b.to(compute) : b);
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);  // one backward concatenation, not a zero-filled gradient per half
  return torch::cat({-halves[1], halves[0]}, -1);
}

// x [N, heads, D]; cos/sin [N, D].
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1);
}

torch::Tensor long_tensor(const std::vector<int64_t>& v) {
  return torch::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kInt64).clone();
}

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

torch::Dtype torch_dtype(st_dtype d, const std::string& name) {
  switch (d) {
    case st_dtype::f64: return torch::kFloat64;
    case st_dtype::f32: return torch::kFloat32;
    case st_dtype::f16: return torch::kFloat16;
    case st_dtype::bf16: return torch::kBFloat16;
    case st_dtype::i64: return torch::kInt64;
    case st_dtype::i32: return torch::kInt32;
    case st_dtype::i16: return torch::kInt16;
    case st_dtype::i8: return torch::kInt8;
    case st_dtype::u8: return torch::kUInt8;
    case st_dtype::boolean: return torch::kBool;
  }
  throw error(errc::format, "tensor '" + name + "': unsupported dtype");
}

st_dtype st_type(torch::Dtype d) {
  switch (d) {
    case torch::kFloat64: return st_dtype::f64;
    case torch::kFloat32: return st_dtype::f32;
    case torch::kFloat16: return st_dtype::f16;
    case torch::kBFloat16: return st_dtype::bf16;
    case torch::kInt64: return st_dtype::i64;
    case torch::kInt32: return st_dtype::i32;
    case torch::kUInt8: return st_dtype::u8;
    case torch::kBool: return st_dtype::boolean;
    default: throw error(errc::invalid_input, "no safetensors dtype for a torch dtype");
  }
}

std::string shape_text(at::IntArrayRef s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    out += (i ? ", " : "") + std::to_string(s[i]);
  }
  return out + "]";
}

}  // namespace

torch::Tensor to_device(const torch::Tensor& host, const torch::Device& device) {
  if (!host.defined() || host.device() == device) {
    return host;
  }
  if (!host.is_cpu() || !device.is_cuda()) {
    return host.to(device);
  }
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

attention_plan to_device(const attention_plan& plan, const torch::Device& device) {
  if (!plan.positions.defined() || plan.positions.device() == device) {
    return plan;
  }
  attention_plan p = plan;
  p.positions = to_device(plan.positions, device);
  p.gather = to_device(plan.gather, device);
  p.scatter = to_device(plan.scatter, device);
  for (auto& g : p.groups) {
    g.blocked = to_device(g.blocked, device);
  }
  return p;
}

torch::Tensor causal_blocked(const torch::Tensor& valid) {
  const int64_t len = valid.size(1);
  auto future = torch::ones({len, len}, torch::TensorOptions().dtype(torch::kBool).device(valid.device())).triu(1);
  auto pad_key = valid.logical_not().unsqueeze(1);  // [rows, 1, len]
  return future.unsqueeze(0).logical_or(pad_key).unsqueeze(1);
}

attention_plan plan_dense(int64_t rows, int64_t len, torch::Tensor blocked, torch::Tensor positions) {
  attention_plan p;
  p.positions = std::move(positions);
  p.groups.push_back({std::move(blocked), rows, len});
  p.tokens = rows * len;
  p.padded_slots = rows * len;
  return p;
}

attention_plan plan_packed(const std::vector<int64_t>& lengths, const std::vector<int64_t>& positions,
                           double min_fill) {
  attention_plan p;
  std::vector<int64_t> start(lengths.size(), 0);
  for (std::size_t i = 1; i < lengths.size(); ++i) {
    start[i] = start[i - 1] + lengths[i - 1];
  }
  p.tokens = lengths.empty() ? 0 : start.back() + lengths.back();
  if (static_cast<int64_t>(positions.size()) != p.tokens) {
    throw error(errc::mismatch, "plan_packed: " + std::to_string(positions.size()) + " positions for " +
                                    std::to_string(p.tokens) + " tokens");
  }
  p.positions = long_tensor(positions);
  std::vector<std::size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return lengths[a] > lengths[b]; });
  std::vector<int64_t> scatter(p.tokens, 0), gather;
  double useful = 0, spent = 0;
  int64_t slot_base = 0;
  for (std::size_t i = 0; i < order.size();) {
    // One bucket: every segment whose attention work len^2 is at least min_fill of the longest one's.
    const int64_t len = std::max<int64_t>(lengths[order[i]], 1);
    std::size_t j = i;
    while (j < order.size() && static_cast<double>(lengths[order[j]] * lengths[order[j]]) >=
                                   min_fill * static_cast<double>(len * len)) {
      ++j;
    }
    j = std::max(j, i + 1);
    const int64_t rows = static_cast<int64_t>(j - i);
    gather.resize(slot_base + rows * len, 0);
    auto pad = torch::empty({rows}, torch::kInt64);
    for (int64_t r = 0; r < rows; ++r) {
      const auto seg = order[i + r];
      const int64_t n = lengths[seg];
      pad[r] = len - n;
      useful += static_cast<double>(n * n);
      for (int64_t t = 0; t < n; ++t) {
        gather[slot_base + r * len + (len - n) + t] = start[seg] + t;  // left padding: last token in last slot
        scatter[start[seg] + t] = slot_base + r * len + (len - n) + t;
      }
    }
    spent += static_cast<double>(rows * len * len);
    auto key = torch::arange(len, torch::kInt64).unsqueeze(0);
    auto valid = key.ge(pad.unsqueeze(1));
    p.groups.push_back({causal_blocked(valid), rows, len});
    slot_base += rows * len;
    i = j;
  }
  p.padded_slots = slot_base;
  p.scatter = long_tensor(scatter);
  p.gather = long_tensor(gather);
  p.attention_padding = spent > 0 ? 1.0 - useful / spent : 0.0;
  return p;
}

rms_norm_impl::rms_norm_impl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor rms_norm_impl::forward(const torch::Tensor& x, torch::Dtype out_dtype) {
  auto xf = x.to(accumulate_dtype(x.scalar_type()));
  auto normed = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps_);
  // Hugging Face multiplies the weight after casting back to the input dtype.
  return (weight.to(out_dtype) * normed.to(out_dtype));
}

llama_attention_impl::llama_attention_impl(const llama_config& c)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.dim_per_head()) {
  q_proj = register_module("q_proj", make_linear(c.hidden_size, heads_ * head_dim_, c.attention_bias));
  k_proj = register_module("k_proj", make_linear(c.hidden_size, kv_heads_ * head_dim_, c.attention_bias));
  v_proj = register_module("v_proj", make_linear(c.hidden_size, kv_heads_ * head_dim_, c.attention_bias));
  o_proj = register_module("o_proj", make_linear(heads_ * head_dim_, c.hidden_size, c.attention_bias));
}

torch::Tensor llama_attention_impl::forward(const torch::Tensor& x, const attention_plan& plan,
                                            const torch::Tensor& cos, const torch::Tensor& sin) {
  const auto compute = x.scalar_type();
  // One fused projection (q, k and v weights concatenated): one larger matmul instead of three.
  auto w = torch::cat({q_proj->weight, k_proj->weight, v_proj->weight}, 0).to(compute);
  torch::Tensor b;
  if (q_proj->bias.defined()) {
    b = torch::cat({q_proj->bias, k_proj->bias, v_proj->bias}, 0).to(compute);
  }
  auto qkv = torch::linear(x.to(compute), w, b);
  auto slots = plan.gather.defined() ? qkv.index_select(0, plan.gather) : qkv;
  // split (not narrow): its backward is one concatenation, where a narrow per group would allocate and zero a
  // full-size gradient for every group.
  std::vector<int64_t> sizes;
  for (const auto& grp : plan.groups) {
    sizes.push_back(grp.rows * grp.len);
  }
  auto blocks = slots.split_with_sizes(sizes, 0);
  auto cos_blocks = cos.split_with_sizes(sizes, 0), sin_blocks = sin.split_with_sizes(sizes, 0);
  std::vector<torch::Tensor> outs;
  for (std::size_t i = 0; i < plan.groups.size(); ++i) {
    outs.push_back(attend_group(blocks[i], plan.groups[i], cos_blocks[i], sin_blocks[i]));
  }
  auto all = outs.size() == 1 ? outs[0] : torch::cat(outs, 0);
  return linear(plan.scatter.defined() ? all.index_select(0, plan.scatter) : all, o_proj, compute);
}

torch::Tensor llama_attention_impl::attend_group(const torch::Tensor& slots, const attention_plan::group& grp,
                                                 const torch::Tensor& cos, const torch::Tensor& sin) {
  const int64_t g = heads_ / kv_heads_, r = grp.rows, t = grp.len, n = r * t;
  const int64_t qw = heads_ * head_dim_, kw = kv_heads_ * head_dim_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  auto qkv = slots.split_with_sizes({qw, kw, kw}, 1);
#if TORCH_VERSION_MAJOR >= 2
  if (slots.is_cuda()) {
    // Fused attention (libtorch >= 2, CUDA only; the CPU path below stays as it is). Its default scale is
    // 1/sqrt(head_dim), as below. KV heads are repeated for their query groups (no enable_gqa before 2.5). A
    // padding slot whose every key is blocked may attend itself instead: a fully masked row would be NaN in the
    // fused kernels, and its output is discarded (never scattered back) either way.
    auto q4 = apply_rope(qkv[0].reshape({n, heads_, head_dim_}), cos, sin).view({r, t, heads_, head_dim_});
    auto k4 = apply_rope(qkv[1].reshape({n, kv_heads_, head_dim_}), cos, sin).view({r, t, kv_heads_, head_dim_});
    auto v4 = qkv[2].reshape({r, t, kv_heads_, head_dim_});
    auto qh = q4.permute({0, 2, 1, 3});
    auto kh = k4.permute({0, 2, 1, 3}).repeat_interleave(g, 1);
    auto vh = v4.permute({0, 2, 1, 3}).repeat_interleave(g, 1);
    auto self = torch::eye(t, torch::TensorOptions().dtype(torch::kBool).device(slots.device()));
    auto allowed = grp.blocked.logical_and(self.logical_not()).logical_not();  // [r, 1, t, t], true = may attend
    auto o = at::scaled_dot_product_attention(qh, kh, vh, allowed);              // [r, heads, t, d]
    return o.permute({0, 2, 1, 3}).reshape({n, qw});
  }
#endif
  auto q = apply_rope(qkv[0].reshape({n, heads_, head_dim_}), cos, sin) * scale;
  auto k = apply_rope(qkv[1].reshape({n, kv_heads_, head_dim_}), cos, sin);
  auto v = qkv[2].reshape({n, kv_heads_, head_dim_});
  // Query heads sharing a KV head are stacked along the sequence axis: one matmul per KV head, no repeat_kv copy.
  auto qg = q.view({r, t, kv_heads_, g, head_dim_}).permute({0, 2, 3, 1, 4}).reshape({r, kv_heads_, g * t, head_dim_});
  auto kg = k.view({r, t, kv_heads_, head_dim_}).permute({0, 2, 1, 3});
  auto vg = v.view({r, t, kv_heads_, head_dim_}).permute({0, 2, 1, 3});
  auto s = torch::matmul(qg, kg.transpose(-1, -2)).view({r, kv_heads_, g, t, t});
  s = s.to(accumulate_dtype(s.scalar_type())).masked_fill(grp.blocked.view({r, 1, 1, t, t}), masked_score);
  auto prob = torch::softmax(s, -1).to(q.scalar_type()).view({r, kv_heads_, g * t, t});
  auto o = torch::matmul(prob, vg).view({r, kv_heads_, g, t, head_dim_}).permute({0, 3, 1, 2, 4});
  return o.reshape({n, qw});
}

llama_mlp_impl::llama_mlp_impl(const llama_config& c) {
  gate_proj = register_module("gate_proj", make_linear(c.hidden_size, c.intermediate_size, false));
  up_proj = register_module("up_proj", make_linear(c.hidden_size, c.intermediate_size, false));
  down_proj = register_module("down_proj", make_linear(c.intermediate_size, c.hidden_size, false));
}

torch::Tensor llama_mlp_impl::forward(const torch::Tensor& x) {
  const auto compute = x.scalar_type();
  return linear(torch::silu(linear(x, gate_proj, compute)) * linear(x, up_proj, compute), down_proj, compute);
}

llama_layer_impl::llama_layer_impl(const llama_config& c) {
  self_attn = register_module("self_attn", llama_attention(c));
  mlp = register_module("mlp", llama_mlp(c));
  input_layernorm = register_module("input_layernorm", rms_norm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", rms_norm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor seeded_dropout(const torch::Tensor& x, double p, at::Generator& gen) {
  if (p <= 0) {
    return x;
  }
  auto keep = torch::empty(x.sizes(), torch::kFloat32).bernoulli_(1.0 - p, gen);
  return x * to_device(keep, x.device()).to(x.scalar_type()) * (1.0 / (1.0 - p));
}

torch::Tensor llama_layer_impl::forward(const torch::Tensor& x, const attention_plan& plan, const torch::Tensor& cos,
                                        const torch::Tensor& sin, torch::Dtype compute, const dropout_spec* drop) {
  const auto residual = x.scalar_type();
  auto a = self_attn->forward(input_layernorm->forward(x, compute), plan, cos, sin).to(residual);
  if (drop != nullptr) a = seeded_dropout(a, drop->p, *drop->gen);
  auto h = x + a;
  auto m = mlp->forward(post_attention_layernorm->forward(h, compute)).to(residual);
  if (drop != nullptr) m = seeded_dropout(m, drop->p, *drop->gen);
  return h + m;
}

llama_model_impl::llama_model_impl(const llama_config& c) : config_(c) {
  c.validate();
  if (c.vocab_size > 0) {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  }
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layers->push_back(llama_layer(c));
  }
  norm = register_module("norm", rms_norm(c.hidden_size, c.rms_norm_eps));
  const int64_t d = c.dim_per_head();
  // Hugging Face: inv_freq = 1 / theta^(2i/d), computed in float64 here and cast when used.
  inv_freq_ = torch::pow(c.rope_theta, torch::arange(0, d, 2, torch::kFloat64) / static_cast<double>(d)).reciprocal();
  init_random(0);
}

torch::Tensor llama_model_impl::embed(const torch::Tensor& token_ids) {
  if (!embed_tokens) {
    throw error(errc::invalid_input, "llama model: embed() on a model without token embeddings");
  }
  return embed_tokens->weight.index_select(0, token_ids);
}

torch::Tensor llama_model_impl::forward(const torch::Tensor& x, const attention_plan& plan, const dropout_spec* drop) {
  if (drop != nullptr && (drop->p <= 0 || drop->gen == nullptr)) {
    drop = nullptr;
  }
  const auto pdt = param_dtype();
  const auto compute = pdt == torch::kFloat64 ? torch::kFloat64 : compute_;
  // Hugging Face computes the rotary angles in fp32 and casts cos/sin to the activation dtype.
  auto angles = plan.positions.to(x.device(), accumulate_dtype(pdt)).unsqueeze(1) *
                inv_freq_.to(x.device(), accumulate_dtype(pdt));
  auto emb = torch::cat({angles, angles}, -1);
  // Plans are built on the host; on a GPU their tensors travel with one pinned, non-blocking copy each.
  attention_plan moved;
  const attention_plan* use = &plan;
  if (!x.is_cpu()) {
    moved = to_device(plan, x.device());
    use = &moved;
  }
  if (use->gather.defined()) {
    emb = emb.index_select(0, use->gather.to(emb.device()));  // rotary embeddings are applied per slot
  }
  auto cos = emb.cos().to(compute), sin = emb.sin().to(compute);
  auto h = x.to(pdt);
  for (const auto& layer : *layers) {
    h = layer->as<llama_layer>()->forward(h, *use, cos, sin, compute, drop);
  }
  return norm->forward(h, pdt);
}

void llama_model_impl::init_random(uint64_t seed, double std) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& p : named_parameters()) {
    const auto& name = p.key();
    auto& t = p.value();
    if (name.find("norm") != std::string::npos) {
      t.fill_(1.0);
    } else if (t.dim() == 1) {
      t.zero_();  // projection biases
    } else {
      t.normal_(0.0, std, gen);
    }
  }
}

torch::Tensor to_tensor(const tensor_view& v) {
  auto t = torch::empty(v.shape, torch::TensorOptions().dtype(torch_dtype(v.dtype, v.name)));
  if (v.bytes > 0) {
    std::memcpy(t.data_ptr(), v.data, v.bytes);
  }
  return t;
}

void load_module(torch::nn::Module& m, const safetensors_archive& archive, const std::string& prefix,
                 const std::function<bool(const std::string&)>& ignore_extra) {
  torch::NoGradGuard no_grad;
  auto params = m.named_parameters(true);
  auto buffers = m.named_buffers(true);
  std::map<std::string, torch::Tensor> wanted;
  for (auto& p : params) {
    wanted[prefix + p.key()] = p.value();
  }
  for (auto& b : buffers) {
    wanted[prefix + b.key()] = b.value();
  }
  for (const auto& name : archive.names()) {
    if (name.compare(0, prefix.size(), prefix) != 0 || wanted.count(name)) {
      continue;
    }
    if (!ignore_extra || !ignore_extra(name)) {
      throw error(errc::mismatch, archive.where() + ": unexpected tensor '" + name + "'");
    }
  }
  for (auto& [name, dst] : wanted) {
    const tensor_view& v = archive.at(name);
    if (v.shape != dst.sizes().vec()) {
      throw error(errc::mismatch, archive.where() + ": tensor '" + name + "' has shape " + shape_text(v.shape) +
                                      ", the config says " + shape_text(dst.sizes()));
    }
    if (v.dtype == st_dtype::i64 || v.dtype == st_dtype::i32 || v.dtype == st_dtype::boolean ||
        v.dtype == st_dtype::u8 || v.dtype == st_dtype::i8 || v.dtype == st_dtype::i16) {
      if (dst.is_floating_point()) {
        throw error(errc::mismatch, archive.where() + ": tensor '" + name + "' has integer dtype " +
                                        to_string(v.dtype) + " for a floating-point parameter");
      }
    }
    dst.copy_(to_tensor(v));
  }
}

void collect_module(const torch::nn::Module& m, const std::string& prefix, std::vector<tensor_blob>& out,
                    std::vector<torch::Tensor>& keep) {
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    auto c = t.detach().contiguous().cpu();
    keep.push_back(c);
    out.push_back({prefix + name, st_type(c.scalar_type()), c.sizes().vec(), c.data_ptr(),
                   static_cast<std::size_t>(c.numel()) * c.element_size()});
  };
  for (const auto& p : m.named_parameters(true)) {
    add(p.key(), p.value());
  }
  for (const auto& b : m.named_buffers(true)) {
    add(b.key(), b.value());
  }
}

llama_model load_hf_llama(const std::string& dir) {
  llama_model m(load_hf_config(dir + "/config.json"));
  load_hf_weights(*m, dir);
  return m;
}

void load_hf_weights(llama_model_impl& m, const std::string& dir) {
  auto archive = safetensors_archive::open_dir(dir);
  // LlamaForCausalLM saves "model.layers..."; LlamaModel.save_pretrained saves "layers..." without a prefix.
  const std::string prefix = archive.find("model.norm.weight") ? "model." : "";
  auto ignore = [&](const std::string& name) {
    return name.rfind("lm_head.", 0) == 0 || name.find("rotary_emb.inv_freq") != std::string::npos;
  };
  // With an empty prefix every name is "under" it, lm_head included: the ignore list covers that case too.
  load_module(m, archive, prefix, ignore);
  for (const auto& name : archive.names()) {
    if (name.compare(0, prefix.size(), prefix) != 0 && !ignore(name)) {
      throw error(errc::mismatch, dir + ": unexpected tensor '" + name + "'");
    }
  }
}

void save_hf_llama(llama_model& m, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string config = llama_config_to_json(m->config()).dump(2) + "\n";
  storage::write_file_durably(dir + "/config.json", config.data(), config.size());
  std::vector<tensor_blob> blobs;
  std::vector<torch::Tensor> keep;
  collect_module(*m, "model.", blobs, keep);
  write_safetensors(dir + "/model.safetensors", blobs, {{"format", "pt"}});
}

}  // namespace hllm::model
