#include "model/trainer.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <ATen/autocast_mode.h>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include "model/hllm.hpp"
#include "model/metrics.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/random.hpp"

namespace hllm::model {
namespace {

struct adam_state {
  torch::Tensor exp_avg, exp_avg_sq;
};

bool decays(const torch::Tensor& p) {
  // Decoupled weight decay on matrices and embedding tables; norms, biases and scalars are left alone.
  return p.dim() >= 2;
}

tensor_blob blob_of(const std::string& name, const torch::Tensor& t) {
  return {name, st_dtype::f32, t.sizes().vec(), t.data_ptr(), static_cast<std::size_t>(t.numel()) * sizeof(float)};
}

// A copy of an item matrix ((num_items + 1) x hidden floats) for a stage-2 model.
torch::Tensor copy_cache(const hllm_config& c, span<const float> cache) {
  const int64_t h = c.user_llm.hidden_size;
  if (static_cast<int64_t>(cache.size()) != (c.num_items + 1) * h) {
    throw error(errc::mismatch, "trainer: the item cache holds " + std::to_string(cache.size()) +
                                    " floats, expected (num_items + 1) * hidden = " +
                                    std::to_string((c.num_items + 1) * h));
  }
  return torch::from_blob(const_cast<float*>(cache.data()), {c.num_items + 1, h}, torch::kFloat32).clone();
}

// Source = cache: the matrix when one is given; none is fine (batches carry their rows; set_item_cache later).
torch::Tensor cache_tensor(const hllm_config& c, span<const float> cache) {
  if (c.source != item_source::cache || cache.empty()) {
    return {};
  }
  return copy_cache(c, cache);
}

// bf16 autocast for a CUDA forward pass (libtorch's C++ form of torch.autocast("cuda", torch.bfloat16)): entered
// around the forward only (backward runs in the dtypes the forward chose); the cast cache is cleared on exit, so a
// weight updated in place is never read from a stale bf16 copy. Off (a no-op) on the CPU.
class cuda_autocast {
 public:
  explicit cuda_autocast(bool on) : on_(on) {
    if (!on_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    was_on_ = at::autocast::is_autocast_enabled(at::kCUDA);
    was_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
    was_on_ = at::autocast::is_enabled();
    was_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_enabled(true);
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
    at::autocast::increment_nesting();
  }
  ~cuda_autocast() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, was_on_);
    at::autocast::set_autocast_dtype(at::kCUDA, was_dtype_);
#else
    at::autocast::set_enabled(was_on_);
    at::autocast::set_autocast_gpu_dtype(was_dtype_);
#endif
  }
  cuda_autocast(const cuda_autocast&) = delete;
  cuda_autocast& operator=(const cuda_autocast&) = delete;

 private:
  bool on_;
  bool was_on_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

const char* cuda_visible_devices() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v ? v : "unset";
}

}  // namespace

bool cuda_built() { return at::hasCUDA(); }

int cuda_device_count() { return cuda_built() ? static_cast<int>(torch::cuda::device_count()) : 0; }

std::string resolve_device(const std::string& requested, int local_rank, const std::string& key) {
  if (requested == "cpu") {
    return "cpu";
  }
  if (requested == "auto") {
    // A GPU when there is one for this rank; the CPU otherwise (unchanged behaviour on a CPU machine).
    const int n = cuda_device_count();
    return n > 0 && local_rank >= 0 && local_rank < n ? "cuda:" + std::to_string(local_rank) : "cpu";
  }
  int index = local_rank;
  if (requested.rfind("cuda:", 0) == 0) {
    const std::string digits = requested.substr(5);
    if (digits.empty() || digits.size() > 4 || digits.find_first_not_of("0123456789") != std::string::npos) {
      throw error(errc::invalid_input, key + " = " + requested + ": not one of auto, cpu, cuda, cuda:N");
    }
    index = std::stoi(digits);
  } else if (requested != "cuda") {
    throw error(errc::invalid_input, key + " = " + requested + ": not one of auto, cpu, cuda, cuda:N");
  }
  if (!cuda_built()) {
    throw error(errc::invalid_input, key + " = " + requested + " but this build has no CUDA support (Debian's "
                                     "libtorch is CPU-only; the GPU build is -DHLLM_CUDA=ON -DTorch_DIR=<a CUDA "
                                     "libtorch>, docs/operations.md \"Train on GPUs\")");
  }
  const int n = cuda_device_count();
  if (n == 0) {
    throw error(errc::invalid_input, key + " = " + requested + " but no GPU is visible (CUDA_VISIBLE_DEVICES=" +
                                         cuda_visible_devices() + ")");
  }
  if (index < 0 || index >= n) {
    throw error(errc::invalid_input, key + " = " + requested + " (local rank " + std::to_string(local_rank) +
                                         ") but only " + std::to_string(n) +
                                         " GPU(s) are visible (CUDA_VISIBLE_DEVICES=" + cuda_visible_devices() + ")");
  }
  return "cuda:" + std::to_string(index);
}

struct trainer::impl {
  hllm_config model_cfg;
  train_config train_cfg;
  item_text_table texts;
  recommender net{nullptr};
  std::vector<std::string> names;  // trained parameters, fixed order
  std::vector<torch::Tensor> params;
  std::vector<adam_state> adam;
  int64_t step = 0;
  std::chrono::steady_clock::time_point started;
  std::string device_name = "cpu";
  torch::Device device{torch::kCPU};
  mutable std::vector<torch::Tensor> host_copies;  // state_blobs() on a GPU

  impl(const hllm_config& m, const train_config& t, item_text_table x, span<const float> cache,
       const std::string& dev)
      : model_cfg(m), train_cfg(t), texts(x), device_name(resolve_device(dev, 0)), device(device_name) {
    if (t.threads > 0) {
      torch::set_num_threads(t.threads);
    }
    net = recommender(m, cache_tensor(m, cache));
    if (t.bf16) {
      net->set_compute_dtype(torch::kBFloat16);
    }
    if (!device.is_cpu()) {
      net->move_to(device);  // built and initialised on the CPU: the same initial parameters on every device
    }
    for (auto& p : net->named_parameters()) {
      if (m.freeze_item_llm && p.key().rfind("item_llm.", 0) == 0) {
        p.value().set_requires_grad(false);  // the ablation: the Item LLM keeps its initial weights
        continue;
      }
      names.push_back(p.key());
      params.push_back(p.value());
      adam.push_back({torch::zeros_like(p.value()), torch::zeros_like(p.value())});
    }
  }

  bool on_gpu() const { return device.is_cuda(); }

  double clip_gradients() {
    torch::NoGradGuard no_grad;
    double sq = 0;
    if (on_gpu()) {
      // One device sum and one synchronisation, not one per parameter.
      std::vector<torch::Tensor> parts;
      for (auto& p : params) {
        if (p.grad().defined()) {
          parts.push_back(p.grad().to(torch::kFloat64).pow(2).sum());
        }
      }
      sq = parts.empty() ? 0.0 : torch::stack(parts).sum().item<double>();
    } else {
      for (auto& p : params) {
        if (p.grad().defined()) {
          sq += p.grad().pow(2).sum().item<double>();
        }
      }
    }
    const double norm = std::sqrt(sq);
    if (train_cfg.clip_norm > 0 && norm > train_cfg.clip_norm) {
      const double f = train_cfg.clip_norm / (norm + 1e-6);
      for (auto& p : params) {
        if (p.grad().defined()) {
          p.mutable_grad().mul_(f);
        }
      }
    }
    return norm;
  }

  // AdamW (Loshchilov & Hutter) as torch.optim.AdamW computes it, with state we own and can checkpoint.
  void adamw(double lr) {
    torch::NoGradGuard no_grad;
    const double b1 = train_cfg.beta1, b2 = train_cfg.beta2;
    const double t = static_cast<double>(step + 1);
    const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
    for (std::size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      const auto& g = p.grad();
      if (!g.defined()) {
        continue;
      }
      auto& s = adam[i];
      s.exp_avg.mul_(b1).add_(g, 1.0 - b1);
      s.exp_avg_sq.mul_(b2).addcmul_(g, g, 1.0 - b2);
      if (decays(p)) {
        p.mul_(1.0 - lr * train_cfg.weight_decay);
      }
      auto denom = (s.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(train_cfg.adam_eps);
      p.addcdiv_(s.exp_avg, denom, -lr / bc1);
    }
  }
};

trainer::trainer(const hllm_config& model, const train_config& train, item_text_table texts, span<const float> cache,
                 const std::string& device)
    : impl_(std::make_unique<impl>(model, train, texts, cache, device)) {}
trainer::trainer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
trainer::~trainer() = default;
trainer::trainer(trainer&&) noexcept = default;
trainer& trainer::operator=(trainer&&) noexcept = default;

step_metrics trainer::step(const train_batch& b) {
  auto m = compute_gradients(b);
  apply_gradients(m);
  return m;
}

step_metrics trainer::compute_gradients(const train_batch& b, negative_exchange* exchange) {
  auto& s = *impl_;
  s.started = std::chrono::steady_clock::now();
  for (auto& p : s.params) {
    p.mutable_grad() = torch::Tensor();
  }
  loss_output out;
  {
    cuda_autocast autocast(s.on_gpu());
    if (s.model_cfg.input_dropout > 0 || s.model_cfg.block_dropout > 0) {
      // Dropout masks: a pure function of (seed, step, rank), so a resumed run draws the same ones.
      const auto rank = static_cast<uint64_t>(exchange != nullptr ? exchange->rank() : 0);
      s.net->set_dropout_seed(stream_seed({s.model_cfg.seed, 0xd0, static_cast<uint64_t>(s.step), rank}));
    }
    out = s.net->training_loss(b, s.texts, exchange);
  }
  backward_loss(out, exchange);
  // Parameters this batch did not reach get zero gradients, so one rank alone and many ranks after an all-reduce
  // update exactly the same set of parameters.
  for (auto& p : s.params) {
    if (!p.grad().defined()) {
      p.mutable_grad() = torch::zeros_like(p);
    }
  }
  step_metrics m;
  m.step = s.step;
  m.loss = out.value;
  m.nce = out.nce;
  m.cls = out.cls;
  m.nce_top1_acc = out.top1;
  m.nce_top5_acc = out.top5;
  m.nce_top10_acc = out.top10;
  m.positions = out.positions;
  m.items_encoded = out.items_encoded;
  m.item_tokens = out.item_tokens;
  return m;
}

void trainer::apply_gradients(step_metrics& m) {
  auto& s = *impl_;
  m.grad_norm = s.clip_gradients();
  m.lr = scheduled_lr(s.train_cfg, s.step);
  s.adamw(m.lr);
  s.net->clamp_logit_scale();
  m.logit_scale = std::exp(s.net->logit_scale.item<double>());
  ++s.step;
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.started).count();
}

std::vector<at::Tensor> trainer::gradients() {
  std::vector<at::Tensor> out;
  for (auto& p : impl_->params) {
    if (!p.grad().defined()) {
      p.mutable_grad() = torch::zeros_like(p);  // before compute_gradients: still one tensor per parameter
    }
    out.push_back(p.grad());
  }
  return out;
}

int64_t trainer::steps_done() const { return impl_->step; }
const std::string& trainer::device() const { return impl_->device_name; }
const hllm_config& trainer::model_config() const { return impl_->model_cfg; }
const train_config& trainer::training_config() const { return impl_->train_cfg; }
int64_t trainer::hidden_size() const { return impl_->model_cfg.user_llm.hidden_size; }

std::vector<float> trainer::item_matrix() {
  torch::Tensor m;
  {
    cuda_autocast autocast(impl_->on_gpu());
    m = impl_->net->item_matrix(impl_->texts);
  }
  m = m.to(torch::kCPU, torch::kFloat32).contiguous();
  return {m.data_ptr<float>(), m.data_ptr<float>() + m.numel()};
}

void trainer::set_item_cache(span<const float> cache) {
  if (impl_->model_cfg.source != item_source::cache) {
    throw error(errc::invalid_input, "set_item_cache: only a stage-2 trainer (item source cache) reads an item matrix");
  }
  impl_->net->set_item_cache(copy_cache(impl_->model_cfg, cache));
}

std::vector<int64_t> trainer::ranks(const eval_set& e) {
  // The item matrix (the cache's on a stage-2 model, already on the device) and the User LLM pass run on the
  // trainer's device; the rank count (metrics.cpp) reads host tensors.
  torch::Tensor items, users;
  {
    cuda_autocast autocast(impl_->on_gpu());
    items = impl_->net->item_matrix(impl_->texts);
    users = impl_->net->user_embeddings(items, e);
  }
  if (impl_->on_gpu()) {
    items = items.to(torch::kCPU, torch::kFloat32);
    users = users.to(torch::kCPU, torch::kFloat32);
  }
  return target_ranks(items, users, e);
}

std::vector<tensor_blob> trainer::state_blobs() const {
  std::vector<tensor_blob> out;
  const auto& s = *impl_;
  s.host_copies.clear();
  // On the CPU the blobs point into the live tensors; on a GPU into host copies (kept until the next call).
  auto host = [&](const torch::Tensor& t) -> const torch::Tensor& {
    if (t.is_cpu()) return t;
    s.host_copies.push_back(t.detach().to(torch::kCPU).contiguous());
    return s.host_copies.back();
  };
  // Every parameter of the model; optimizer state for the trained ones (all but a frozen Item LLM), in one order.
  std::size_t i = 0;
  for (const auto& p : s.net->named_parameters()) {
    out.push_back(blob_of("model." + p.key(), host(p.value())));
    if (i < s.names.size() && s.names[i] == p.key()) {
      out.push_back(blob_of("optim.exp_avg." + s.names[i], host(s.adam[i].exp_avg)));
      out.push_back(blob_of("optim.exp_avg_sq." + s.names[i], host(s.adam[i].exp_avg_sq)));
      ++i;
    }
  }
  return out;
}

void trainer::save(const std::string& dir) const {
  const auto& s = *impl_;
  std::filesystem::create_directories(dir);
  std::vector<tensor_blob> model, optim;
  for (const auto& b : state_blobs()) {
    if (b.name.rfind("model.", 0) == 0) {
      model.push_back(b);
      model.back().name = b.name.substr(6);
    } else {
      optim.push_back(b);
      optim.back().name = b.name.substr(6);
    }
  }
  write_safetensors(dir + "/model.safetensors", model, {{"format", "pt"}});
  write_safetensors(dir + "/optimizer.safetensors", optim, {{"step", std::to_string(s.step)}});
  nlohmann::json j = {{"format", checkpoint_format},
                      {"version", checkpoint_version},
                      {"model", to_json(s.model_cfg)},
                      {"train", to_json(s.train_cfg)},
                      {"step", s.step}};
  const std::string text = j.dump(2) + "\n";
  storage::write_file_durably(dir + "/config.json", text.data(), text.size());
}

trainer trainer::load(const std::string& dir, item_text_table texts, span<const float> cache,
                      const std::string& device) {
  const std::string on = resolve_device(device, 0);  // a device this machine lacks fails before anything is read
  std::ifstream in(dir + "/config.json");
  if (!in) {
    throw error(errc::not_found, "checkpoint: cannot open " + dir + "/config.json");
  }
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    throw error(errc::format, dir + "/config.json: not JSON");
  }
  // The map location: every tensor is read on the host and copied into the trainer's (device) tensors.
  auto p = std::make_unique<impl>(read_checkpoint_config(dir), train_config_from_json(j.at("train")), texts, cache,
                                  on);
  load_module(*p->net, safetensors_archive::open_file(dir + "/model.safetensors"), "");
  auto optim = safetensors_archive::open_file(dir + "/optimizer.safetensors");
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < p->names.size(); ++i) {
    for (auto [key, dst] : {std::pair{"exp_avg.", &p->adam[i].exp_avg}, {"exp_avg_sq.", &p->adam[i].exp_avg_sq}}) {
      const auto& v = optim.at(key + p->names[i]);
      if (v.shape != dst->sizes().vec() || v.dtype != st_dtype::f32) {
        throw error(errc::mismatch, dir + "/optimizer.safetensors: tensor '" + v.name + "' does not match " +
                                        "its parameter");
      }
      dst->copy_(to_tensor(v));
    }
  }
  p->step = j.at("step").get<int64_t>();
  return trainer(std::move(p));
}

std::vector<float> trainer::item_embeddings(const std::vector<int32_t>& ids) {
  torch::NoGradGuard no_grad;
  torch::Tensor m;
  {
    cuda_autocast autocast(impl_->on_gpu());
    m = impl_->net->item_embeddings(impl_->texts, ids);
  }
  m = m.to(torch::kCPU, torch::kFloat32).contiguous();
  return {m.data_ptr<float>(), m.data_ptr<float>() + m.numel()};
}

void trainer::load_item_llm(const std::string& hf_dir) {
  auto& s = *impl_;
  if (s.model_cfg.source != item_source::text) {
    throw error(errc::invalid_input, hf_dir + ": only a model whose items come from text has an Item LLM to load");
  }
  const auto want = llama_config_to_json(s.model_cfg.item_llm);
  const auto have = llama_config_to_json(load_hf_config(hf_dir + "/config.json"));
  if (want != have) {
    throw error(errc::mismatch, hf_dir + "/config.json describes " + have.dump() + ", this model's Item LLM is " +
                                    want.dump());
  }
  // Straight into this model's parameters (checked tensor by tensor), on its device: their dtype, compute dtype and
  // place stay as the trainer set them, and no second copy of the Item LLM is built on the host.
  load_hf_weights(*s.net->item->model, hf_dir);
}

void trainer::load_weights_from(const std::string& dir) {
  load_module(*impl_->net, safetensors_archive::open_file(dir + "/model.safetensors"), "",
              [](const std::string&) { return true; });
}

}  // namespace hllm::model
