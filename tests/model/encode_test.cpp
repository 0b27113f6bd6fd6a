// `hllm encode` end to end on the prepared_tiny fixture: the .npy it writes equals the in-process encoding, for a
// Hugging Face checkpoint and for a trained HLLM checkpoint, both run on item-encoder actors and cache shards;
// mismatched vocabularies are refused; the version tag of a Hugging Face model's rows changes with everything that
// changes the rows.
//
// What is promised about the rows' bits (docs/operations.md): the same command (the same encoders, shards, threads
// and unit size) writes the same bytes every time; another placement or unit size (or the in-process encode) gives
// rows within a stated tolerance, not necessarily the same bits. The tests run in the machine's environment as users'
// jobs do: with OPENBLAS_CORETYPE forced (this machine kind sets Haswell on an AVX-512 CPU), OpenBLAS's float sums
// depend on the matrix shape and thread count by an ulp, so bit equality across placements holds on some BLAS
// builds and not on others.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "actors/item_encoder.hpp"
#include "model/hllm.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/npy.hpp"
#include "storage/random.hpp"

namespace hllm::model {
namespace {

namespace fs = std::filesystem;
using storage::read_npy_f32;

class encode_command : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* data = std::getenv("HLLM_TINY_DATA");
    if (data == nullptr) {
      GTEST_SKIP() << "HLLM_TINY_DATA is not set (ctest sets it with the prepared_tiny fixture)";
    }
    data_dir = data;
    dir = (fs::temp_directory_path() / ("hllm_encode_test_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (!dir.empty()) fs::remove_all(dir);
  }
  int run(const std::string& args) {
    const std::string cmd = std::string(HLLM_BIN_DIR) + "/hllm-encode --data " + data_dir + " " + args + " > " + dir +
                            "/log.txt 2>&1";
    return std::system(cmd.c_str());
  }
  std::string log() {
    std::ifstream in(dir + "/log.txt");
    return {std::istreambuf_iterator<char>(in), {}};
  }
  void expect_matrix(const torch::Tensor& expected, const std::string& npy) {
    auto m = read_npy_f32(npy);
    ASSERT_EQ(m.rows, expected.size(0));
    ASSERT_EQ(m.cols, expected.size(1));
    auto got = torch::from_blob(m.data.data(), {m.rows, m.cols});
    EXPECT_EQ(got[0].abs().max().item<float>(), 0.f);  // row 0: padding
    EXPECT_LT((got - expected).abs().max().item<double>(), 1e-5);
  }
  std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  // The direct model encode `hllm encode --hf-model` stands for (docs/model.md): the Hugging Face Llama as an Item
  // LLM whose [ITEM] vector is a fresh Item LLM's seeded initialisation, ids encoded in units of `unit` (the work
  // units of the encoders: 1..unit, unit+1..2 unit, ...), row 0 zeros.
  torch::Tensor direct_hf_encode(const storage::dataset& d, const std::string& hf, item_pooling pooling,
                                 uint64_t seed, bool bf16, int64_t unit) {
    auto llm = load_hf_llama(hf);
    item_llm item(llm->config(), d.info().max_text_tokens, pooling);
    item->init_random(stream_seed({seed, 1}));
    item->model = item->replace_module("model", llm);
    if (bf16) item->model->set_compute_dtype(torch::kBFloat16);
    torch::NoGradGuard ng;
    const auto texts = item_texts_of(d);
    std::vector<torch::Tensor> parts{torch::zeros({1, llm->config().hidden_size})};
    for (int64_t start = 1; start <= d.num_items(); start += unit) {
      std::vector<int32_t> ids;
      for (int64_t i = start; i < std::min(start + unit, d.num_items() + 1); ++i) ids.push_back(static_cast<int32_t>(i));
      parts.push_back(item->encode(texts, ids).to(torch::kFloat32));
    }
    return torch::cat(parts).contiguous();
  }
  // Rows across placements, unit sizes or processes: within `tol` of `expected` (the largest difference is printed:
  // the numbers docs/operations.md quotes). fp32: 1e-5 absolute (observed: up to 7.2e-7 with OPENBLAS_CORETYPE=
  // Haswell on an AVX-512 CPU, 0 without); bf16 compute: two bf16 ulps at the largest row value.
  void expect_close_matrix(const torch::Tensor& expected, const std::string& npy, double tol, const std::string& what) {
    auto m = read_npy_f32(npy);
    ASSERT_EQ(m.rows, expected.size(0));
    ASSERT_EQ(m.cols, expected.size(1));
    auto got = torch::from_blob(m.data.data(), {m.rows, m.cols});
    EXPECT_EQ(got[0].abs().max().item<float>(), 0.f);  // row 0: padding
    const double diff = (got - expected).abs().max().item<double>();
    std::cout << "max |difference| " << what << ": " << diff << " (tolerance " << tol << ")\n";
    EXPECT_LE(diff, tol) << what;
  }
  static double bf16_tolerance(const torch::Tensor& expected) {
    return expected.abs().max().item<double>() * std::ldexp(1.0, -7);  // 2 ulps: bf16 keeps 8 significant bits
  }
  // A randomly initialised Llama of the dataset's vocabulary saved as a Hugging Face checkpoint in DIR/hf; its config.
  llama_config save_random_hf_model(const storage::dataset& d, uint64_t seed) {
    auto cfg = tiny_default_config(d.info().vocab_size);
    llama_model llm(cfg);
    llm->init_random(seed);
    save_hf_llama(llm, dir + "/hf");
    return cfg;
  }
  std::string data_dir, dir;
};

TEST_F(encode_command, hf_checkpoint_with_mean_pooling_matches_in_process_encoding) {
  auto d = storage::dataset::open(data_dir);
  const auto cfg = save_random_hf_model(d, 5);
  ASSERT_EQ(run("--hf-model " + dir + "/hf --pooling mean --batch 37 --out " + dir + "/x.npy"), 0) << log();

  item_llm item(cfg, d.info().max_text_tokens, item_pooling::mean);
  item->model = item->replace_module("model", load_hf_llama(dir + "/hf"));
  torch::NoGradGuard ng;
  std::vector<int32_t> ids;
  for (int32_t i = 1; i <= d.num_items(); ++i) ids.push_back(i);
  auto expected = torch::cat({torch::zeros({1, cfg.hidden_size}), item->encode(item_texts_of(d), ids)});
  expect_matrix(expected, dir + "/x.npy");

  std::ifstream in(dir + "/x.ids.txt");
  std::string line;
  int32_t row = 0;
  while (std::getline(in, line)) {
    ++row;
    ASSERT_LE(row, d.num_items());
    EXPECT_EQ(line, d.raw_item_id(row));
  }
  EXPECT_EQ(row, d.num_items());
}

TEST_F(encode_command, trained_checkpoint_matches_the_trainers_item_matrix) {
  auto d = storage::dataset::open(data_dir);
  const auto view = interactions_of(d);
  auto cfg = default_hllm_config(d.info().vocab_size, d.num_items(), d.info().max_text_tokens);
  train_config train;
  train.total_steps = 2;
  trainer t(cfg, train, item_texts_of(d));
  auto users = trainable_users(view);
  users.resize(16);
  for (int s = 0; s < 2; ++s) {
    auto b = make_train_batch(view, users, 8);
    b.negatives = sample_negatives(training_items(view), 32, 1, 1, 0, s, 0);
    t.step(b);
  }
  t.save(dir + "/ckpt");
  ASSERT_EQ(run("--checkpoint " + dir + "/ckpt --out " + dir + "/y.npy"), 0) << log();
  auto m = t.item_matrix();
  const auto trained = torch::from_blob(m.data(), {d.num_items() + 1, t.hidden_size()});
  expect_matrix(trained, dir + "/y.npy");
  // The encoder actors and cache shards do the work: another number of them and another unit size give the same
  // rows within the tolerance, also when the catalogue is a whole number of units (the last item once fell between
  // two units); the same placement and unit size again give the same bytes.
  ASSERT_EQ(d.num_items() % 40, 0) << "pick a unit size that divides the fixture's item count";
  const std::string placed = "--checkpoint " + dir + "/ckpt --encoders 2 --shards 3 --batch 40 --out ";
  ASSERT_EQ(run(placed + dir + "/z.npy"), 0) << log();
  expect_close_matrix(trained, dir + "/z.npy", 1e-5, "trained checkpoint, 2 encoders, 3 shards, units of 40");
  ASSERT_EQ(run(placed + dir + "/z2.npy"), 0) << log();
  const std::string z = read_bytes(dir + "/z.npy");
  EXPECT_FALSE(z.empty());
  EXPECT_TRUE(z == read_bytes(dir + "/z2.npy")) << "the same placement and unit size gave other bytes";
}

// The Hugging Face path runs on the encoder actors too: its rows are the direct model encode's (within the
// tolerance), for either pooling and in bf16, with one encoder and one shard as with several of each (also a last
// unit shorter than the rest), and the log names the units, actors and the rows' version tag. The same command run
// again writes the same bytes.
TEST_F(encode_command, hf_checkpoint_on_encoder_actors_gives_the_direct_encode_rows) {
  auto d = storage::dataset::open(data_dir);
  save_random_hf_model(d, 11);
  const std::string hf = dir + "/hf";
  ASSERT_GT(d.num_items() % 37, 0) << "pick a unit size that leaves a short last unit";
  struct variant {
    std::string flags;
    item_pooling pooling;
    uint64_t seed;
    bool bf16;
  };
  const std::vector<variant> variants = {{"--pooling item --seed 7", item_pooling::item_token, 7, false},
                                         {"--pooling mean", item_pooling::mean, 2020, false},
                                         {"--pooling item --seed 3 --bf16", item_pooling::item_token, 3, true}};
  for (const auto& v : variants) {
    SCOPED_TRACE(v.flags);
    for (int64_t unit : {int64_t{40}, int64_t{37}}) {
      auto expected = direct_hf_encode(d, hf, v.pooling, v.seed, v.bf16, unit);
      const double tol = v.bf16 ? bf16_tolerance(expected) : 1e-5;
      const std::string base = "--hf-model " + hf + " " + v.flags + " --batch " + std::to_string(unit);
      const std::string what = v.flags + ", units of " + std::to_string(unit);
      ASSERT_EQ(run(base + " --out " + dir + "/one.npy"), 0) << log();
      expect_close_matrix(expected, dir + "/one.npy", tol, what + ", 1 encoder vs in-process");
      ASSERT_EQ(run(base + " --encoders 2 --shards 3 --out " + dir + "/many.npy"), 0) << log();
      expect_close_matrix(expected, dir + "/many.npy", tol, what + ", 2 encoders and 3 shards vs in-process");
      const int64_t units = (d.num_items() + unit - 1) / unit;
      item_encoder_options eo;
      eo.hf_model_dir = hf;
      eo.hf_pooling = v.pooling;
      eo.hf_seed = v.seed;
      eo.hf_bf16 = v.bf16;
      const std::string summary = std::to_string(units) + " units on 2 encoders, 3 cache shards; rows version " +
                                  item_encoder_version_hex(eo);
      EXPECT_NE(log().find(summary), std::string::npos) << "expected '" << summary << "' in\n" << log();
      EXPECT_EQ(read_bytes(dir + "/one.ids.txt"), read_bytes(dir + "/many.ids.txt"));
    }
  }
  // The same placement and unit size give the same bytes, with several encoders (whose units finish in any order)
  // as with one.
  const std::string many = "--hf-model " + hf + " --pooling item --seed 7 --batch 37 --encoders 2 --shards 3 --out ";
  ASSERT_EQ(run(many + dir + "/many-a.npy"), 0) << log();
  ASSERT_EQ(run(many + dir + "/many-b.npy"), 0) << log();
  EXPECT_FALSE(read_bytes(dir + "/many-a.npy").empty());
  EXPECT_TRUE(read_bytes(dir + "/many-a.npy") == read_bytes(dir + "/many-b.npy"))
      << "2 encoders, 3 shards, units of 37: two runs gave other bytes";
  // The [ITEM] seed reaches the encoders: another seed gives other rows with item pooling; the same seed the same.
  ASSERT_EQ(run("--hf-model " + hf + " --pooling item --seed 8 --batch 40 --out " + dir + "/seed8.npy"), 0) << log();
  ASSERT_EQ(run("--hf-model " + hf + " --pooling item --seed 7 --batch 40 --out " + dir + "/seed7.npy"), 0) << log();
  ASSERT_EQ(run("--hf-model " + hf + " --pooling item --seed 7 --batch 40 --out " + dir + "/seed7b.npy"), 0) << log();
  EXPECT_NE(read_bytes(dir + "/seed7.npy"), read_bytes(dir + "/seed8.npy"));
  EXPECT_TRUE(read_bytes(dir + "/seed7.npy") == read_bytes(dir + "/seed7b.npy")) << "1 encoder: two runs differ";
}

// Rows are tagged with a hash of what made them: the same model and settings give the same tag, and the weights,
// the config, the pooling, the [ITEM] seed (with item pooling; mean pooling never reads the vector) and the compute
// dtype each give another.
TEST_F(encode_command, hf_model_version_changes_with_everything_that_changes_the_rows) {
  auto cfg = tiny_default_config(64);
  llama_model a(cfg), b(cfg);
  a->init_random(1);
  b->init_random(2);
  save_hf_llama(a, dir + "/a");
  save_hf_llama(a, dir + "/a2");  // the same weights in another directory
  save_hf_llama(b, dir + "/b");
  auto eps = cfg;
  eps.rms_norm_eps *= 10;
  llama_model c(eps);
  c->init_random(1);
  save_hf_llama(c, dir + "/c");  // a's weights, another config
  auto version = [&](const std::string& d, item_pooling p, uint64_t seed, bool bf16) {
    item_encoder_options o;
    o.hf_model_dir = dir + "/" + d;
    o.hf_pooling = p;
    o.hf_seed = seed;
    o.hf_bf16 = bf16;
    return item_encoder_version_hex(o);
  };
  const auto item = item_pooling::item_token, mean = item_pooling::mean;
  const std::string v = version("a", item, 7, false);
  EXPECT_EQ(v.size(), 16u);
  EXPECT_EQ(v, version("a", item, 7, false));
  EXPECT_EQ(v, version("a2", item, 7, false));
  EXPECT_NE(v, version("b", item, 7, false));
  EXPECT_NE(v, version("c", item, 7, false));
  EXPECT_NE(v, version("a", item, 8, false));
  EXPECT_NE(v, version("a", mean, 7, false));
  EXPECT_NE(v, version("a", item, 7, true));
  EXPECT_EQ(version("a", mean, 7, false), version("a", mean, 8, false));
  // Exactly one model: both or neither is an error.
  item_encoder_options both;
  both.hf_model_dir = dir + "/a";
  both.checkpoint_dir = dir + "/a";
  EXPECT_THROW(item_encoder_version_hex(both), std::exception);
  EXPECT_THROW(item_encoder_version_hex(item_encoder_options{}), std::exception);
}

TEST_F(encode_command, model_with_a_smaller_vocabulary_is_refused) {
  llama_model llm(tiny_default_config(50));
  save_hf_llama(llm, dir + "/hf");
  EXPECT_NE(run("--hf-model " + dir + "/hf --out " + dir + "/x.npy"), 0);
  EXPECT_NE(log().find("outside the vocabulary"), std::string::npos) << log();
  EXPECT_FALSE(fs::exists(dir + "/x.npy"));
}

}  // namespace
}  // namespace hllm::model
