// `hllm encode` end to end on the prepared_tiny fixture: the .npy it writes equals the in-process encoding, for a
// Hugging Face checkpoint and for a trained HLLM checkpoint; mismatched vocabularies are refused.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "model/hllm.hpp"
#include "model/npy.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"

namespace hllm::model {
namespace {

namespace fs = std::filesystem;

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
  std::string data_dir, dir;
};

TEST_F(encode_command, hf_checkpoint_with_mean_pooling_matches_in_process_encoding) {
  auto d = storage::dataset::open(data_dir);
  auto cfg = tiny_default_config(d.info().vocab_size);
  llama_model llm(cfg);
  llm->init_random(5);
  save_hf_llama(llm, dir + "/hf");
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
  expect_matrix(torch::from_blob(m.data(), {d.num_items() + 1, t.hidden_size()}), dir + "/y.npy");
  // The encoder actors and cache shards do the work: their number and the unit size never change a byte, also
  // when the catalogue is a whole number of units (the last item once fell between two units).
  ASSERT_EQ(d.num_items() % 40, 0) << "pick a unit size that divides the fixture's item count";
  ASSERT_EQ(run("--checkpoint " + dir + "/ckpt --encoders 2 --shards 3 --batch 40 --out " + dir + "/z.npy"), 0)
      << log();
  std::ifstream a(dir + "/y.npy", std::ios::binary), b(dir + "/z.npy", std::ios::binary);
  std::string ya{std::istreambuf_iterator<char>(a), {}}, zb{std::istreambuf_iterator<char>(b), {}};
  EXPECT_FALSE(ya.empty());
  EXPECT_TRUE(ya == zb) << "encoder/shard placement changed the embeddings";
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
