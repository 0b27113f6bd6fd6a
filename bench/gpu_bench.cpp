// gpu_bench (issue 18): Item-LLM forward+backward tokens/s on one GPU at the TinyLlama-1.1B shape (hidden 2048, 22
// layers, 32 heads, 4 KV heads, intermediate 5632; text 32 tokens + [ITEM]), bf16 autocast as the trainer runs it, and
// MFU against a bf16 matmul measured in the same run. Prints one Markdown table row per measurement.
// Usage: gpu_bench [--layers N] [--items N] [--seconds S]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "model/hllm.hpp"
#include "model/trainer.hpp"

namespace {
using namespace hllm::model;

double seconds_of(const std::function<void()>& f, double min_seconds, const torch::Device& d) {
  f();
  if (d.is_cuda()) torch::cuda::synchronize(d.index());
  int reps = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double el = 0;
  while (reps < 3 || el < min_seconds) {
    f();
    ++reps;
    if (d.is_cuda()) torch::cuda::synchronize(d.index());
    el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return el / reps;
}
}  // namespace

int main(int argc, char** argv) {
  int64_t layers = 22, items = 64;
  double min_s = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--layers")) layers = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--items")) items = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seconds")) min_s = std::atof(argv[i + 1]);
  }
  const std::string dev_name = resolve_device("auto");
  const torch::Device dev(dev_name);
  const llama_config c = tinyllama_config(layers);  // model/llama_config.hpp: the TinyLlama-1.1B shape
  const int64_t text = 32;
  item_llm m(c, text, item_pooling::item_token);
  m->model->set_compute_dtype(torch::kBFloat16);
  m->to(dev);
  // Random texts of exactly `text` tokens.
  std::vector<uint64_t> offsets{0, 0};
  std::vector<int32_t> tokens;
  for (int64_t i = 0; i < items; ++i) {
    for (int64_t t = 0; t < text; ++t) tokens.push_back(1 + static_cast<int32_t>((i * 131 + t * 7) % 31999));
    offsets.push_back(tokens.size());
  }
  item_text_table texts{{offsets.data(), offsets.size()}, {tokens.data(), tokens.size()}};
  std::vector<int32_t> ids;
  for (int64_t i = 1; i <= items; ++i) ids.push_back(static_cast<int32_t>(i));
  const auto packed = pack_items(texts, ids, text, item_pooling::item_token);
  auto step = [&] {
    torch::Tensor out;
    {
      if (dev.is_cuda()) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
        at::autocast::set_autocast_enabled(at::kCUDA, true);
        at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
#else
        at::autocast::set_enabled(true);
        at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
#endif
      }
      out = m->forward(packed);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
      if (dev.is_cuda()) at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
      if (dev.is_cuda()) at::autocast::set_enabled(false);
#endif
      at::autocast::clear_cache();
    }
    out.to(torch::kFloat32).pow(2).mean().backward();
    for (auto& p : m->parameters()) p.mutable_grad() = torch::Tensor();
  };
  const double t_step = seconds_of(step, min_s, dev);
  const int64_t n_tok = packed.tokens;
  // Non-embedding parameters: 6 * params FLOPs per token for forward + backward, plus attention scores.
  int64_t params = 0;
  for (const auto& p : m->named_parameters()) {
    if (p.key().find("embed_tokens") == std::string::npos) params += p.value().numel();
  }
  const double attn = 6.0 * 2.0 * layers * (text + 1) * c.hidden_size;  // QK^T and PV, fwd + bwd, per token
  const double flops = (6.0 * params + attn) * n_tok;
  auto a = torch::randn({8192, 8192}, torch::TensorOptions().device(dev).dtype(dev.is_cuda() ? torch::kBFloat16
                                                                                           : torch::kFloat32));
  const double t_mm = seconds_of([&] { torch::matmul(a, a); }, min_s, dev);
  const double peak = 2.0 * 8192.0 * 8192.0 * 8192.0 / t_mm;
  std::printf("| program | device | layers | tokens/step | tokens/s | model TFLOP/s | bf16 matmul TFLOP/s | MFU |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  std::printf("| hllm Item LLM (C++) | %s | %lld | %lld | %.0f | %.1f | %.1f | %.1f%% |\n", dev_name.c_str(),
              static_cast<long long>(layers), static_cast<long long>(n_tok), n_tok / t_step, flops / t_step / 1e12,
              peak / 1e12, 100.0 * flops / t_step / peak);
  return 0;
}
