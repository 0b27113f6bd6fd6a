// The training step: schedule, loss going down, resume from a checkpoint bit for bit, and the learning claims of
// the paper in miniature (HLLM and the ID baseline beat popularity; HLLM beats the ID model on cold items).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <utility>

#include "model/metrics.hpp"
#include "model/trainer.hpp"
#include "device_digest.hpp"
#include "synthetic.hpp"
#include "train_loop.hpp"

namespace hllm::model {
namespace {

TEST(schedule, linear_warmup_then_cosine_to_zero) {
  train_config t;
  t.lr = 1.0;
  t.total_steps = 100;
  t.warmup_share = 0.1;
  EXPECT_DOUBLE_EQ(scheduled_lr(t, 0), 0.1);
  EXPECT_DOUBLE_EQ(scheduled_lr(t, 9), 1.0);
  EXPECT_DOUBLE_EQ(scheduled_lr(t, 10), 1.0);
  EXPECT_NEAR(scheduled_lr(t, 55), 0.5, 1e-12);
  EXPECT_NEAR(scheduled_lr(t, 100), 0.0, 1e-12);
}

// The small job of the device tests (device_digest.hpp): the same data, model and batches.
using small_job = testing::digest_job;

// Loss of a first step on `b`, then of the last of 20 more steps on the same batch.
std::pair<double, double> first_and_last_loss(trainer& t, const train_batch& b) {
  const double first = t.step(b).loss;
  double last = first;
  for (int i = 0; i < 20; ++i) last = t.step(b).loss;
  return {first, last};
}

TEST(trainer, repeated_batch_loss_goes_down) {
  small_job job;
  job.train.total_steps = 30;
  trainer t(job.model, job.train, job.data.texts.view());
  const auto [first, last] = first_and_last_loss(t, job.batch(0));
  EXPECT_LT(last, first * 0.8);
  EXPECT_EQ(t.steps_done(), 21);
}

TEST(trainer, resumed_from_a_checkpoint_matches_the_uninterrupted_run_bit_for_bit) {
  small_job job;
  job.model.late_fusion = true;
  job.train.total_steps = 6;
  const auto dir = (std::filesystem::temp_directory_path() / ("hllm_ckpt_" + std::to_string(::getpid()))).string();
  trainer a(job.model, job.train, job.data.texts.view());
  for (int s = 0; s < 3; ++s) a.step(job.batch(s));
  a.save(dir);
  auto b = trainer::load(dir, job.data.texts.view());
  EXPECT_EQ(b.steps_done(), 3);
  for (int s = 3; s < 6; ++s) {
    const auto ma = a.step(job.batch(s)), mb = b.step(job.batch(s));
    EXPECT_EQ(ma.loss, mb.loss) << "step " << s;
  }
  auto sa = a.state_blobs(), sb = b.state_blobs();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    ASSERT_EQ(sa[i].name, sb[i].name);
    EXPECT_EQ(std::memcmp(sa[i].data, sb[i].data, sa[i].bytes), 0) << sa[i].name;
  }
  std::filesystem::remove_all(dir);
}

TEST(trainer, two_ranks_averaging_gradients_stay_identical) {
  small_job job;
  job.model.early_fusion = true;  // the head sees only the last position: some batches leave parts untouched
  job.train.total_steps = 4;
  trainer a(job.model, job.train, job.data.texts.view()), b(job.model, job.train, job.data.texts.view());
  for (int s = 0; s < 3; ++s) {
    auto ma = a.compute_gradients(job.batch(2 * s)), mb = b.compute_gradients(job.batch(2 * s + 1));
    auto ga = a.gradients(), gb = b.gradients();
    ASSERT_EQ(ga.size(), gb.size());
    for (size_t i = 0; i < ga.size(); ++i) {  // what an all-reduce (average) leaves on every rank
      auto mean = (ga[i] + gb[i]) / 2;
      ga[i].copy_(mean);
      gb[i].copy_(mean);
    }
    a.apply_gradients(ma);
    b.apply_gradients(mb);
  }
  auto sa = a.state_blobs(), sb = b.state_blobs();
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(std::memcmp(sa[i].data, sb[i].data, sa[i].bytes), 0) << sa[i].name;
  }
}

TEST(trainer, bf16_compute_keeps_fp32_parameters_and_trains) {
  small_job job;
  job.train.bf16 = true;
  job.train.total_steps = 30;
  trainer t(job.model, job.train, job.data.texts.view());
  const auto [first, last] = first_and_last_loss(t, job.batch(1));
  EXPECT_LT(last, first * 0.8);
  for (const auto& blob : t.state_blobs()) EXPECT_EQ(blob.dtype, st_dtype::f32) << blob.name;
}

// ---- learning ----

struct learned {
  ranking_metrics all, cold;
};

learned train_and_evaluate(const testing::synthetic_data& d, hllm_config model, int64_t steps) {
  train_config train;
  train.lr = 1e-3;
  train.total_steps = steps;
  trainer t(model, train, d.texts.view());
  const auto view = d.view();
  constexpr int64_t seq_len = 10;
  testing::train_over_epochs(t, view, model.seed, steps, 32, seq_len, 128);
  const auto e = make_eval_set(view, split::valid, seq_len);
  const auto ranks = t.ranks(e);
  std::vector<bool> cold(e.size());
  for (int64_t q = 0; q < e.size(); ++q) cold[q] = d.cold[e.targets[q]];
  return {summarize_ranks(ranks), summarize_ranks(ranks, cold)};
}

TEST(learning, hllm_and_id_baseline_beat_popularity_and_hllm_wins_on_cold_items) {
  const auto d = testing::make_synthetic(600, 2026);
  const auto view = d.view();
  const auto e = make_eval_set(view, split::valid, 10);
  const auto pop = summarize_ranks(popularity_ranks(view, e));

  auto text_model = default_hllm_config(d.vocab, d.items, 12);
  auto id_model = text_model;
  id_model.source = item_source::id;
  const auto hllm = train_and_evaluate(d, text_model, 200);
  const auto id = train_and_evaluate(d, id_model, 400);  // the cheaper ID model gets twice the steps

  std::printf("valid R@10 x100: popularity %.1f, ID %.1f, HLLM %.1f; cold targets (%lld): ID %.1f, HLLM %.1f\n",
              pop.recall[1], id.all.recall[1], hllm.all.recall[1], static_cast<long long>(hllm.cold.users),
              id.cold.recall[1], hllm.cold.recall[1]);
  ASSERT_GT(hllm.cold.users, 50);
  EXPECT_GT(hllm.all.recall[1], pop.recall[1]);
  EXPECT_GT(id.all.recall[1], pop.recall[1]);
  EXPECT_GT(hllm.cold.recall[1], id.cold.recall[1]);
}

}  // namespace
}  // namespace hllm::model
