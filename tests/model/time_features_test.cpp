// Timestamp features (model.time_buckets): on data where only the time between interactions tells which items come
// next, the model with time-interval embeddings learns it and the one without cannot.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "model/batching.hpp"
#include "model/ranking.hpp"
#include "model/trainer.hpp"
#include "test_support.hpp"
#include "train_loop.hpp"

namespace hllm::model {
namespace {

// 40 items: 1..20 "quick" items, 21..40 "slow" items. Each gap between interactions is a minute or a day, at
// random; when the gap that led to the current item was a minute the next item is a quick one, else a slow one
// (uniform within the group). So the group of the next item is told by that gap and by nothing else: item ids carry
// no information about it.
struct timed_data {
  testing::owned_texts texts;
  std::vector<uint64_t> offsets{0};
  std::vector<int32_t> items;
  std::vector<int64_t> times;
  std::vector<int64_t> counts;
  interaction_table view() const {
    return {{offsets.data(), offsets.size()}, {items.data(), items.size()}, {counts.data(), counts.size()},
            {times.data(), times.size()}};
  }
};

timed_data make_timed(int users, uint32_t seed) {
  std::mt19937 rng(seed);
  timed_data d;
  for (int k = 1; k <= 40; ++k) d.texts.add({1, 1 + k});
  for (int u = 0; u < users; ++u) {
    const int n = 10 + static_cast<int>(rng() % 6);
    // quick[j]: the gap between item j - 1 and item j is a minute (else a day).
    std::vector<bool> quick(n);
    for (int j = 1; j < n; ++j) quick[j] = rng() % 2 == 0;
    int64_t t = 1700000000 + static_cast<int64_t>(rng() % 100000);
    for (int j = 0; j < n; ++j) {
      // Item j's group follows the gap that led to item j - 1: what the User LLM sees at the position predicting j.
      const int group = j < 2 ? static_cast<int>(rng() % 2) : (quick[j - 1] ? 0 : 1);
      if (j > 0) t += quick[j] ? 60 : 86400;
      d.items.push_back(1 + group * 20 + static_cast<int>(rng() % 20));
      d.times.push_back(t);
    }
    d.offsets.push_back(d.items.size());
  }
  d.counts.assign(41, 0);
  auto v = d.view();
  for (int64_t u = 0; u < v.num_users(); ++u)
    for (int32_t i : v.train_part(u)) ++d.counts[i];
  return d;
}

double valid_recall10(const timed_data& d, int64_t time_buckets) {
  auto model = default_hllm_config(64, 40, 4);
  model.source = item_source::id;
  model.time_buckets = time_buckets;
  train_config train;
  train.lr = 2e-3;
  train.total_steps = 200;
  trainer t(model, train, d.texts.view());
  const auto view = d.view();
  constexpr int64_t seq_len = 8;
  testing::train_over_epochs(t, view, model.seed, train.total_steps, 32, seq_len, 32, /*with_times=*/true);
  const auto e = make_eval_set(view, split::valid, seq_len);
  return summarize_ranks(t.ranks(e)).recall[1];  // R@10 x100
}

TEST(time_features, batches_and_eval_sets_carry_the_timestamps_and_buckets_grow_with_the_gap) {
  const auto d = make_timed(4, 1);
  const auto v = d.view();
  auto b = make_train_batch(v, {0, 1}, 8);
  EXPECT_TRUE(b.times.empty());  // only asked for
  attach_times(b, v);
  ASSERT_EQ(b.times.size(), b.items.size());
  for (std::size_t i = 0; i < b.items.size(); ++i) EXPECT_EQ(b.items[i] == 0, b.times[i] == 0) << i;
  const auto e = make_eval_set(v, split::test, 8);
  EXPECT_EQ(e.history_times.size(), e.history.size());
  EXPECT_EQ(time_bucket(0, 5, true, 32), 1);
  EXPECT_EQ(time_bucket(100, 100, false, 32), 2);
  EXPECT_LT(time_bucket(0, 60, false, 32), time_bucket(0, 86400, false, 32));
  EXPECT_EQ(time_bucket(0, int64_t{1} << 40, false, 8), 7);  // capped
}

TEST(time_features, the_model_learns_a_signal_that_only_time_carries) {
  const auto d = make_timed(600, 2026);
  const double without = valid_recall10(d, 0);
  const double with = valid_recall10(d, 24);
  std::printf("valid R@10 x100: without timestamp features %.1f, with %.1f\n", without, with);
  // Without time the next group is a coin flip: the top 10 is spread over 40 items (a little better than 10/40 as
  // the history is masked). With time, the top 10 is drawn from the right 20.
  EXPECT_LT(without, 35.0);
  EXPECT_GT(with, 40.0);
  EXPECT_GT(with, without + 10.0);
}

}  // namespace
}  // namespace hllm::model
