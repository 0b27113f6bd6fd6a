// Llama blocks against an independent float64 reference, and Hugging Face checkpoint loading (good and bad files).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "model/llama.hpp"
#include "storage/error.hpp"
#include "test_support.hpp"

namespace hllm::model {
namespace {

namespace fs = std::filesystem;

struct weight {
  std::vector<int64_t> shape;
  std::vector<float> values;
};
using weights = std::map<std::string, weight>;  // Hugging Face names, "model." prefix

// The tests' tiny grouped-query shape (4 heads over 2 KV heads), with its own RoPE base.
llama_config tiny_gqa_config() {
  llama_config c = testing::tiny_llama(11);
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500.0;
  return c;
}

weights random_weights(const llama_config& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 0.3f);
  weights w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(n);
    for (auto& x : v) x = norm ? 1.f + normal(rng) : normal(rng);
    w[name] = {shape, v};
  };
  const int64_t h = c.hidden_size, d = c.dim_per_head(), f = c.intermediate_size;
  add("model.embed_tokens.weight", {c.vocab_size, h}, false);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "self_attn.q_proj.weight", {c.num_attention_heads * d, h}, false);
    add(p + "self_attn.k_proj.weight", {c.num_key_value_heads * d, h}, false);
    add(p + "self_attn.v_proj.weight", {c.num_key_value_heads * d, h}, false);
    add(p + "self_attn.o_proj.weight", {h, c.num_attention_heads * d}, false);
    add(p + "mlp.gate_proj.weight", {f, h}, false);
    add(p + "mlp.up_proj.weight", {f, h}, false);
    add(p + "mlp.down_proj.weight", {h, f}, false);
    add(p + "input_layernorm.weight", {h}, true);
    add(p + "post_attention_layernorm.weight", {h}, true);
  }
  add("model.norm.weight", {h}, true);
  add("lm_head.weight", {c.vocab_size, h}, false);  // present in real checkpoints; must be ignored
  return w;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// A safetensors writer independent of the one under test: header JSON assembled by hand.
void write_file(const std::string& path, const weights& w, const std::string& dtype,
                const std::map<std::string, std::string>& dtype_override = {}) {
  std::string header = "{";
  std::string data;
  for (const auto& [name, t] : w) {
    std::string bytes;
    const std::string dt = dtype_override.count(name) ? dtype_override.at(name) : dtype;
    if (dt == "BF16") {
      for (float x : t.values) {
        uint16_t b = to_bf16(x);
        bytes.append(reinterpret_cast<const char*>(&b), 2);
      }
    } else {
      bytes.assign(reinterpret_cast<const char*>(t.values.data()), t.values.size() * 4);
    }
    std::string shape;
    for (auto d : t.shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    header += (header.size() > 1 ? "," : "") + std::string("\"") + name + "\":{\"dtype\":\"" + dt +
              "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
              std::to_string(data.size() + bytes.size()) + "]}";
    data += bytes;
  }
  header += "}";
  uint64_t n = header.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << data;
}

void write_config(const std::string& dir, const llama_config& c) {
  std::ofstream(dir + "/config.json")
      << "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_act\":\"silu\",\"hidden_size\":" << c.hidden_size
      << ",\"intermediate_size\":" << c.intermediate_size << ",\"num_hidden_layers\":" << c.num_hidden_layers
      << ",\"num_attention_heads\":" << c.num_attention_heads
      << ",\"num_key_value_heads\":" << c.num_key_value_heads << ",\"vocab_size\":" << c.vocab_size
      << ",\"rms_norm_eps\":" << c.rms_norm_eps << ",\"rope_theta\":" << c.rope_theta
      << ",\"rope_scaling\":null,\"torch_dtype\":\"float32\"}";
}

std::string fresh_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("hllm_model_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

// ---- the independent reference: explicit loops in float64 ----
using vec = std::vector<double>;

vec matvec(const weight& w, const vec& x) {
  const int64_t out = w.shape[0], in = w.shape[1];
  vec y(out, 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) y[o] += static_cast<double>(w.values[o * in + i]) * x[i];
  return y;
}

vec rmsnorm(const vec& x, const weight& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / x.size() + eps);
  vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * w.values[i];
  return y;
}

void rope(vec& x, int64_t heads, int64_t d, int64_t pos, double theta) {
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < d / 2; ++i) {
      const double angle = pos * std::pow(theta, -2.0 * i / d);
      const double a = x[h * d + i], b = x[h * d + i + d / 2];
      x[h * d + i] = a * std::cos(angle) - b * std::sin(angle);
      x[h * d + i + d / 2] = b * std::cos(angle) + a * std::sin(angle);
    }
  }
}

std::vector<vec> reference_forward(const llama_config& c, const weights& w, const std::vector<int64_t>& ids) {
  const int64_t t_len = ids.size(), h = c.hidden_size, d = c.dim_per_head();
  const int64_t hq = c.num_attention_heads, group = hq / c.num_key_value_heads;
  std::vector<vec> x(t_len, vec(h));
  for (int64_t t = 0; t < t_len; ++t)
    for (int64_t i = 0; i < h; ++i) x[t][i] = w.at("model.embed_tokens.weight").values[ids[t] * h + i];
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    std::vector<vec> q(t_len), k(t_len), v(t_len);
    for (int64_t t = 0; t < t_len; ++t) {
      vec n = rmsnorm(x[t], w.at(p + "input_layernorm.weight"), c.rms_norm_eps);
      q[t] = matvec(w.at(p + "self_attn.q_proj.weight"), n);
      k[t] = matvec(w.at(p + "self_attn.k_proj.weight"), n);
      v[t] = matvec(w.at(p + "self_attn.v_proj.weight"), n);
      rope(q[t], hq, d, t, c.rope_theta);
      rope(k[t], c.num_key_value_heads, d, t, c.rope_theta);
    }
    for (int64_t t = 0; t < t_len; ++t) {
      vec o(hq * d, 0.0);
      for (int64_t head = 0; head < hq; ++head) {
        const int64_t kvh = head / group;
        vec s(t + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= t; ++j) {
          s[j] = 0;
          for (int64_t i = 0; i < d; ++i) s[j] += q[t][head * d + i] * k[j][kvh * d + i];
          s[j] /= std::sqrt(static_cast<double>(d));
          mx = std::max(mx, s[j]);
        }
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= t; ++j)
          for (int64_t i = 0; i < d; ++i) o[head * d + i] += s[j] / sum * v[j][kvh * d + i];
      }
      vec a = matvec(w.at(p + "self_attn.o_proj.weight"), o);
      for (int64_t i = 0; i < h; ++i) x[t][i] += a[i];
    }
    for (int64_t t = 0; t < t_len; ++t) {
      vec n = rmsnorm(x[t], w.at(p + "post_attention_layernorm.weight"), c.rms_norm_eps);
      vec g = matvec(w.at(p + "mlp.gate_proj.weight"), n), u = matvec(w.at(p + "mlp.up_proj.weight"), n);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      vec m = matvec(w.at(p + "mlp.down_proj.weight"), g);
      for (int64_t i = 0; i < h; ++i) x[t][i] += m[i];
    }
  }
  for (auto& row : x) row = rmsnorm(row, w.at("model.norm.weight"), c.rms_norm_eps);
  return x;
}

// max |ours - reference| / max |reference| over every element
double relative_error(const torch::Tensor& ours, const std::vector<vec>& ref, int64_t row_offset) {
  auto o = ours.to(torch::kFloat64).contiguous();
  double max_diff = 0, max_ref = 0;
  for (size_t t = 0; t < ref.size(); ++t) {
    for (size_t i = 0; i < ref[t].size(); ++i) {
      max_diff = std::max(max_diff, std::abs(o[row_offset + t][i].item<double>() - ref[t][i]));
      max_ref = std::max(max_ref, std::abs(ref[t][i]));
    }
  }
  return max_diff / max_ref;
}

torch::Tensor run_packed(llama_model& m, const std::vector<std::vector<int64_t>>& seqs) {
  std::vector<int64_t> ids, lengths, positions;
  for (const auto& s : seqs) {
    lengths.push_back(s.size());
    for (size_t t = 0; t < s.size(); ++t) {
      ids.push_back(s[t]);
      positions.push_back(t);
    }
  }
  auto plan = plan_packed(lengths, positions);
  torch::NoGradGuard ng;
  return m->forward(m->embed(torch::tensor(ids)), plan);
}

class hf_checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    cfg = tiny_gqa_config();
    w = random_weights(cfg, 7);
    dir = fresh_dir(::testing::UnitTest::GetInstance()->current_test_info()->name());
    write_config(dir, cfg);
  }
  void TearDown() override { fs::remove_all(dir); }
  llama_config cfg;
  weights w;
  std::string dir;
};

TEST_F(hf_checkpoint, hidden_states_match_float64_reference_within_1e5) {
  write_file(dir + "/model.safetensors", w, "F32");
  auto m = load_hf_llama(dir);
  const std::vector<std::vector<int64_t>> seqs = {{1, 5, 2, 9, 3, 3, 7}, {4, 10, 0}};
  auto out = run_packed(m, seqs);
  EXPECT_LT(relative_error(out, reference_forward(cfg, w, seqs[0]), 0), 1e-5);
  EXPECT_LT(relative_error(out, reference_forward(cfg, w, seqs[1]), 7), 1e-5);
}

TEST_F(hf_checkpoint, float64_model_matches_reference_to_1e10) {
  write_file(dir + "/model.safetensors", w, "F32");
  auto m = load_hf_llama(dir);
  m->to(torch::kFloat64);
  const std::vector<int64_t> seq = {2, 8, 1, 6, 6, 0, 10, 3, 4};
  auto out = run_packed(m, {seq});
  EXPECT_LT(relative_error(out, reference_forward(cfg, w, seq), 0), 1e-10);
}

TEST_F(hf_checkpoint, bf16_checkpoint_loads_rounded_weights) {
  write_file(dir + "/model.safetensors", w, "BF16");
  auto m = load_hf_llama(dir);
  const auto& src = w.at("model.layers.1.mlp.up_proj.weight").values;
  auto loaded = m->named_parameters()["layers.1.mlp.up_proj.weight"].flatten();
  for (size_t i = 0; i < src.size(); ++i) {
    ASSERT_EQ(loaded[i].item<float>(), from_bf16(to_bf16(src[i]))) << i;
  }
}

TEST_F(hf_checkpoint, sharded_index_loads_the_same_model) {
  weights a, b;
  for (const auto& [name, t] : w) (name < "model.layers.1" ? a : b)[name] = t;
  write_file(dir + "/model-00001-of-00002.safetensors", a, "F32");
  write_file(dir + "/model-00002-of-00002.safetensors", b, "F32");
  std::ofstream idx(dir + "/model.safetensors.index.json");
  idx << "{\"metadata\":{},\"weight_map\":{";
  bool first = true;
  for (const auto& [name, t] : w) {
    idx << (first ? "" : ",") << "\"" << name << "\":\"model-0000" << (name < "model.layers.1" ? 1 : 2)
        << "-of-00002.safetensors\"";
    first = false;
  }
  idx << "}}";
  idx.close();
  auto m = load_hf_llama(dir);
  const std::vector<int64_t> seq = {3, 1, 4, 1, 5};
  EXPECT_LT(relative_error(run_packed(m, {seq}), reference_forward(cfg, w, seq), 0), 1e-5);
}

TEST_F(hf_checkpoint, saved_model_reloads_bit_identical) {
  write_file(dir + "/model.safetensors", w, "F32");
  auto m = load_hf_llama(dir);
  save_hf_llama(m, dir + "/copy");
  auto r = load_hf_llama(dir + "/copy");
  auto a = m->named_parameters(), b = r->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
}

// Loads and expects an hllm::error whose message contains every one of `needles`.
void expect_load_error(const std::string& dir, const std::vector<std::string>& needles) {
  try {
    load_hf_llama(dir);
    FAIL() << "loading succeeded";
  } catch (const error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

TEST_F(hf_checkpoint, truncated_file_names_the_tensor_past_the_end) {
  write_file(dir + "/model.safetensors", w, "F32");
  const auto path = dir + "/model.safetensors";
  fs::resize_file(path, fs::file_size(path) - 10);
  expect_load_error(dir, {"truncated", "model.norm.weight"});  // the last tensor in name order
}

TEST_F(hf_checkpoint, absurd_header_length_is_refused) {
  write_file(dir + "/model.safetensors", w, "F32");
  std::fstream f(dir + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  uint64_t huge = uint64_t{1} << 60;
  f.write(reinterpret_cast<const char*>(&huge), 8);
  f.close();
  expect_load_error(dir, {"header length"});
}

TEST_F(hf_checkpoint, unknown_dtype_names_the_tensor) {
  write_file(dir + "/model.safetensors", w, "F32", {{"model.layers.0.mlp.up_proj.weight", "F8_E9M9"}});
  expect_load_error(dir, {"model.layers.0.mlp.up_proj.weight", "F8_E9M9"});
}

TEST_F(hf_checkpoint, missing_tensor_is_named) {
  w.erase("model.layers.1.self_attn.k_proj.weight");
  write_file(dir + "/model.safetensors", w, "F32");
  expect_load_error(dir, {"model.layers.1.self_attn.k_proj.weight", "missing"});
}

TEST_F(hf_checkpoint, extra_tensor_is_named) {
  w["model.layers.0.self_attn.extra.weight"] = {{2}, {1.f, 2.f}};
  write_file(dir + "/model.safetensors", w, "F32");
  expect_load_error(dir, {"model.layers.0.self_attn.extra.weight"});
}

TEST_F(hf_checkpoint, shape_mismatch_with_config_is_named) {
  cfg.intermediate_size = 20;  // config says 20, file holds 24
  write_config(dir, cfg);
  write_file(dir + "/model.safetensors", w, "F32");
  expect_load_error(dir, {"model.layers.0.mlp", "shape"});
}

TEST(llama_config_json, unsupported_rope_scaling_is_refused) {
  auto j = llama_config_to_json(tiny_default_config(100));
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_THROW(llama_config_from_json(j), error);
  j.erase("rope_scaling");
  EXPECT_EQ(llama_config_from_json(j).hidden_size, 64);
}

}  // namespace
}  // namespace hllm::model
