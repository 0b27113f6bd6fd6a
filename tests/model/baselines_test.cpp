// Issue 19's baselines and ablation on the model side: SASRec's inputs and regularisation (learned positions,
// input and block dropout: on in training, off in evaluation, a pure function of the seeds) and the frozen Item LLM.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/trainer.hpp"
#include "synthetic.hpp"

namespace hllm::model {
namespace {

namespace fs = std::filesystem;

train_batch batch_of(const testing::synthetic_data& d, int64_t step) {
  const auto view = d.view();
  const auto users = trainable_users(view);
  const auto order = epoch_order(users, 3, 0);
  std::vector<int64_t> u(order.begin() + step * 16, order.begin() + (step + 1) * 16);
  auto b = make_train_batch(view, u, 8);
  b.negatives = sample_negatives(training_items(view), 64, 3, 0, 0, step, 0);
  return b;
}

hllm_config sasrec(const testing::synthetic_data& d, double dropout) {
  auto c = testing::tiny_hllm(0, d.items, 8);
  c.source = item_source::id;
  c.position_embeddings = 8;
  c.input_dropout = dropout;
  c.block_dropout = dropout;
  return c;
}

std::map<std::string, std::vector<float>> weights(const trainer& t) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& b : t.state_blobs()) {
    if (b.name.rfind("model.", 0) != 0) continue;
    const auto* f = static_cast<const float*>(b.data);
    out[b.name.substr(6)] = std::vector<float>(f, f + b.bytes / sizeof(float));
  }
  return out;
}

TEST(sasrec_baseline, dropout_is_on_in_training_and_off_in_evaluation) {
  const auto d = testing::make_synthetic(120, 5);
  const auto e = make_eval_set(d.view(), split::valid, 8);
  train_config tc;
  tc.total_steps = 20;
  trainer plain(sasrec(d, 0.0), tc, d.texts.view());
  trainer dropped(sasrec(d, 0.5), tc, d.texts.view());
  // The same initial weights (dropout draws nothing at initialisation) ...
  ASSERT_EQ(weights(plain), weights(dropped));
  // ... score identically in evaluation: no dropout there.
  EXPECT_EQ(plain.ranks(e), dropped.ranks(e));
  // In training the masks change the loss.
  const auto b = batch_of(d, 0);
  const auto m_plain = plain.compute_gradients(b), m_dropped = dropped.compute_gradients(b);
  EXPECT_NE(m_plain.loss, m_dropped.loss);
  // After a few steps, evaluation gives the same scores twice.
  for (int64_t s = 0; s < 4; ++s) dropped.step(batch_of(d, s));
  EXPECT_EQ(dropped.ranks(e), dropped.ranks(e));
  EXPECT_EQ(dropped.item_matrix(), dropped.item_matrix());
}

TEST(sasrec_baseline, dropout_masks_are_a_pure_function_of_seed_step_and_rank) {
  const auto d = testing::make_synthetic(120, 6);
  train_config tc;
  tc.total_steps = 20;
  trainer a(sasrec(d, 0.3), tc, d.texts.view()), b(sasrec(d, 0.3), tc, d.texts.view());
  for (int64_t s = 0; s < 3; ++s) {
    const auto ma = a.step(batch_of(d, s)), mb = b.step(batch_of(d, s));
    EXPECT_EQ(ma.loss, mb.loss) << "step " << s;
  }
  EXPECT_EQ(weights(a), weights(b));
  // A checkpoint resumes with the same masks: save after 3 steps, both continue one more step.
  const auto dir = (fs::temp_directory_path() / ("sasrec_resume_" + std::to_string(::getpid()))).string();
  a.save(dir);
  auto c = trainer::load(dir, d.texts.view());
  fs::remove_all(dir);
  EXPECT_EQ(a.step(batch_of(d, 3)).loss, c.step(batch_of(d, 3)).loss);
  EXPECT_EQ(weights(a), weights(c));
}

TEST(sasrec_baseline, learned_positions_start_at_zero_train_and_round_trip_the_config) {
  const auto d = testing::make_synthetic(120, 7);
  const auto e = make_eval_set(d.view(), split::valid, 8);
  auto with = sasrec(d, 0.0), without = sasrec(d, 0.0);
  without.position_embeddings = 0;
  train_config tc;
  tc.total_steps = 20;
  trainer tw(with, tc, d.texts.view()), to(without, tc, d.texts.view());
  // Zeros at first: the same scores as without them; once trained they change the scores.
  EXPECT_EQ(tw.ranks(e), to.ranks(e));
  for (int64_t s = 0; s < 4; ++s) {
    tw.step(batch_of(d, s));
    to.step(batch_of(d, s));
  }
  EXPECT_NE(tw.ranks(e), to.ranks(e));
  EXPECT_NE(weights(tw).at("position_table.weight"), std::vector<float>(8 * 16, 0.0f));
  const auto j = to_json(with);
  EXPECT_EQ(j.at("position_embeddings"), 8);
  EXPECT_EQ(hllm_config_from_json(j).position_embeddings, 8);
}

TEST(sasrec_baseline, configs_with_everything_off_are_written_as_before) {
  const auto d = testing::make_synthetic(60, 8);
  const auto j = to_json(testing::tiny_hllm(d.vocab, d.items, 8));
  for (const char* key : {"position_embeddings", "input_dropout", "block_dropout", "freeze_item_llm"}) {
    EXPECT_FALSE(j.contains(key)) << key;
  }
  auto bad = sasrec(d, 1.0);
  EXPECT_THROW(bad.validate(), std::exception);
  auto frozen_id = sasrec(d, 0.0);
  frozen_id.freeze_item_llm = true;
  EXPECT_THROW(frozen_id.validate(), std::exception);
}

TEST(frozen_item_llm, the_item_llm_keeps_its_initial_weights_while_the_user_llm_trains) {
  const auto d = testing::make_synthetic(120, 9);
  auto c = testing::tiny_hllm(d.vocab, d.items, 12);
  c.freeze_item_llm = true;
  train_config tc;
  tc.total_steps = 20;
  trainer t(c, tc, d.texts.view());
  const auto initial = weights(t);
  for (int64_t s = 0; s < 3; ++s) t.step(batch_of(d, s));
  const auto after = weights(t);
  int item = 0, user_changed = 0;
  for (const auto& [name, w] : after) {
    if (name.rfind("item_llm.", 0) == 0) {
      ++item;
      EXPECT_EQ(w, initial.at(name)) << name;
    } else if (name.rfind("user_llm.", 0) == 0 && w != initial.at(name)) {
      ++user_changed;
    }
  }
  EXPECT_GT(item, 0);
  EXPECT_GT(user_changed, 0);
  // No optimizer state for the frozen part; the checkpoint still holds every parameter and loads.
  for (const auto& b : t.state_blobs()) {
    EXPECT_EQ(b.name.rfind("optim.exp_avg.item_llm.", 0), std::string::npos) << b.name;
    EXPECT_EQ(b.name.rfind("optim.exp_avg_sq.item_llm.", 0), std::string::npos) << b.name;
  }
  const auto dir = (fs::temp_directory_path() / ("frozen_item_llm_" + std::to_string(::getpid()))).string();
  t.save(dir);
  auto loaded = trainer::load(dir, d.texts.view());
  fs::remove_all(dir);
  EXPECT_TRUE(loaded.model_config().freeze_item_llm);
  EXPECT_EQ(weights(loaded), after);
  // The same model unfrozen changes its Item LLM.
  c.freeze_item_llm = false;
  trainer u(c, tc, d.texts.view());
  for (int64_t s = 0; s < 3; ++s) u.step(batch_of(d, s));
  EXPECT_NE(weights(u).at("item_llm.item_token"), initial.at("item_llm.item_token"));
}

}  // namespace
}  // namespace hllm::model
