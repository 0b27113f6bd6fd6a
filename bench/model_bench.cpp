// model_bench: Item-LLM and User-LLM forward+backward throughput (tokens/s, items/s) with model-FLOP utilisation
// against the matmul throughput measured in the same run, fp32 and bf16, for the default config and a
// TinyLlama-shaped config cut to 2 layers; plus the padding share of packed Item-LLM batches.
// Usage: model_bench [--quick] [--data PREPARED_DIR]   (prints a Markdown table for docs/benchmarks.md)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "model/hllm.hpp"
#include "storage/dataset.hpp"

namespace {

using namespace hllm::model;
using clock_type = std::chrono::steady_clock;

// Seconds per call: one warm-up, then repeats until both min_reps and min_seconds are reached.
double time_call(const std::function<void()>& f, int min_reps, double min_seconds) {
  f();
  int reps = 0;
  const auto t0 = clock_type::now();
  double elapsed = 0;
  while (reps < min_reps || elapsed < min_seconds) {
    f();
    ++reps;
    elapsed = std::chrono::duration<double>(clock_type::now() - t0).count();
  }
  return elapsed / reps;
}

double matmul_flops_per_s(torch::Dtype dt, int64_t m, int64_t k, int64_t n, double min_seconds) {
  auto a = torch::randn({m, k}).to(dt), b = torch::randn({k, n}).to(dt);
  torch::NoGradGuard ng;
  const double s = time_call([&] { auto c = torch::matmul(a, b); }, 3, min_seconds);
  return 2.0 * m * k * n / s;
}

// Forward matmul FLOPs per token: projections and MLP (2 per weight) plus attention scores and mixing over
// `attended` keys on average (causal: the useful work only).
double forward_flops_per_token(const llama_config& c, double attended) {
  const double h = c.hidden_size, d = c.dim_per_head(), q = c.num_attention_heads * d,
               kv = c.num_key_value_heads * d, f = c.intermediate_size;
  const double weights = h * q + 2 * h * kv + q * h + 3 * h * f;
  return c.num_hidden_layers * (2 * weights + 4 * q * attended);
}

struct result {
  std::string what;
  double tokens_per_s = 0, items_per_s = 0, mfu = 0, peak = 0;
};

// The matmul throughput of the dtype at this config's MLP shape, measured right before the case it normalises
// (the machine is shared: a peak measured minutes apart would compare different loads).
double peak_for(const llama_config& c, torch::Dtype dt, int64_t tokens, double min_seconds) {
  return matmul_flops_per_s(dt, tokens, c.hidden_size, c.intermediate_size, min_seconds);
}

// Item text lengths (text tokens, cut at max_text): resampled from a prepared dataset when given, else 8..32.
std::vector<int64_t> length_mix(const std::string& data, int64_t count, int64_t max_text) {
  std::vector<int64_t> real, lengths;
  if (!data.empty()) {
    auto d = hllm::storage::dataset::open(data, false);
    for (int32_t i = 1; i <= d.num_items(); ++i) {
      real.push_back(std::min<int64_t>(static_cast<int64_t>(d.item_tokens(i).size()), max_text));
    }
  }
  std::mt19937 rng(7);
  while (static_cast<int64_t>(lengths.size()) < count) {
    lengths.push_back(real.empty() ? 8 + static_cast<int64_t>(rng() % 25) : real[rng() % real.size()]);
  }
  return lengths;
}

// Item texts of the given lengths (tokens drawn at random below vocab).
struct texts_holder {
  std::vector<uint64_t> offsets{0, 0};
  std::vector<int32_t> tokens;
  item_text_table view() const { return {{offsets.data(), offsets.size()}, {tokens.data(), tokens.size()}}; }
};

texts_holder make_texts(const std::vector<int64_t>& lengths, int64_t vocab) {
  texts_holder t;
  std::mt19937 rng(3);
  for (int64_t n : lengths) {
    t.tokens.push_back(1);
    for (int64_t j = 1; j < n; ++j) t.tokens.push_back(2 + static_cast<int32_t>(rng() % (vocab - 2)));
    t.offsets.push_back(t.tokens.size());
  }
  return t;
}

result bench_item_llm(const std::string& name, const llama_config& c, torch::Dtype dt, const texts_holder& texts,
                      int64_t items, double min_seconds) {
  item_llm m(c, 32, item_pooling::item_token);
  m->init_random(1);
  m->model->set_compute_dtype(dt);
  std::vector<int32_t> ids(items);
  for (int64_t i = 0; i < items; ++i) ids[i] = static_cast<int32_t>(1 + i);
  auto packed = pack_items(texts.view(), ids, 32, item_pooling::item_token);
  double attended = 0;  // mean keys per query under causal attention within an item
  for (int32_t id : ids) {
    const double n = static_cast<double>(std::min<std::size_t>(texts.view().row(id).size(), 32)) + 1;
    attended += n * (n + 1) / 2;
  }
  attended /= static_cast<double>(packed.tokens);
  const double peak = peak_for(c, dt, packed.tokens, min_seconds);
  const double s = time_call([&] {
    m->zero_grad();
    m->forward(packed).pow(2).mean().backward();
  }, 2, min_seconds);
  result r;
  r.what = name;
  r.tokens_per_s = packed.tokens / s;
  r.items_per_s = items / s;
  r.peak = 0.5 * (peak + peak_for(c, dt, packed.tokens, min_seconds));  // before and after: load drifts
  r.mfu = 3.0 * forward_flops_per_token(c, attended) * r.tokens_per_s / r.peak;
  return r;
}

result bench_user_llm(const std::string& name, const llama_config& c, torch::Dtype dt, int64_t users, int64_t len,
                      double min_seconds) {
  const double peak = peak_for(c, dt, users * len, min_seconds);
  user_llm u(c, false);
  u->init_random(2);
  u->model->set_compute_dtype(dt);
  auto x = torch::randn({users, len, c.hidden_size});
  auto valid = torch::ones({users, len}, torch::kBool);
  const double s = time_call([&] {
    u->zero_grad();
    u->forward(x, valid).pow(2).mean().backward();
  }, 2, min_seconds);
  result r;
  r.what = name;
  r.tokens_per_s = users * len / s;
  r.items_per_s = r.tokens_per_s;  // one position per item
  r.peak = 0.5 * (peak + peak_for(c, dt, users * len, min_seconds));  // before and after: load drifts
  r.mfu = 3.0 * forward_flops_per_token(c, (len + 1) / 2.0) * r.tokens_per_s / r.peak;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string data;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    if (!std::strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
  }
  torch::set_num_threads(2);
  const double min_s = quick ? 0.3 : 2.0;
  std::printf("torch threads: %d\n\n", torch::get_num_threads());

  // Peak per dtype at a TinyLlama MLP shape (768 tokens x 2048 -> 5632).
  const double peak32 = matmul_flops_per_s(torch::kFloat32, 768, 2048, 5632, min_s);
  const double peak16 = matmul_flops_per_s(torch::kBFloat16, 768, 2048, 5632, min_s);
  std::printf("matmul 768x2048x5632: fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s\n\n", peak32 / 1e9, peak16 / 1e9);

  // Padding: packed stream (projections/MLP see none), attention buckets; a synthetic 8-32 mix and the dataset's.
  for (const std::string& source : {std::string(), data}) {
    const auto mix = length_mix(source, 2000, 32);
    std::vector<int64_t> lengths, positions;
    for (int64_t n : mix) {
      lengths.push_back(n + 1);
      for (int64_t t = 0; t <= n; ++t) positions.push_back(32 - n + t);
    }
    const auto plan = plan_packed(lengths, positions);
    const int64_t longest = *std::max_element(lengths.begin(), lengths.end());
    std::printf("padding (%s, %zu items): projections+MLP 0.0%%; attention %.1f%% in %zu buckets; "
                "padding every item to the longest would waste %.1f%% of projection/MLP work\n",
                source.empty() ? "synthetic 8-32 text tokens" : source.c_str(), mix.size(),
                100 * plan.attention_padding, plan.groups.size(),
                100.0 * (1.0 - static_cast<double>(plan.tokens) / static_cast<double>(longest * mix.size())));
    if (data.empty()) {
      break;
    }
  }
  std::printf("\n");
  const auto mix = length_mix("", 2000, 32);
  auto small = tiny_default_config(600);
  auto tl = tinyllama_config(2);
  const auto texts = make_texts(mix, 600);
  std::vector<result> rows;
  for (auto [dt, tag] : {std::pair{torch::kFloat32, "fp32"}, {torch::kBFloat16, "bf16"}}) {
    rows.push_back(bench_item_llm(std::string("Item LLM, default (h64 L2), 512 items, ") + tag, small, dt, texts, 512,
                                  min_s));
    rows.push_back(bench_user_llm(std::string("User LLM, default, 64 x 50, ") + tag, small, dt, 64, 50, min_s));
    rows.push_back(bench_item_llm(std::string("Item LLM, TinyLlama-shaped L2, 48 items, ") + tag, tl, dt, texts, 48,
                                  min_s));
    rows.push_back(bench_user_llm(std::string("User LLM, TinyLlama-shaped L2, 16 x 64, ") + tag, tl, dt, 16, 64,
                                  min_s));
  }
  std::printf("| case (forward + backward) | tokens/s | items/s | matmul GFLOP/s (same shape) | MFU |\n"
              "|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    std::printf("| %s | %.0f | %.0f | %.0f | %.0f%% |\n", r.what.c_str(), r.tokens_per_s, r.items_per_s, r.peak / 1e9,
                100 * r.mfu);
  }
  return 0;
}
