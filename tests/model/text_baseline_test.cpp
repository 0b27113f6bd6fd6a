// The text-only baseline (model/text_baseline.hpp): BM25 over item texts against the user's recent history, ranked
// with the protocol of every other row (masking, ties against the target). Torch-free.
#include <gtest/gtest.h>

#include <vector>

#include "model/text_baseline.hpp"
#include "test_support.hpp"

namespace hllm::model {
namespace {

// One query: history `h` (also the mask), target `t`.
eval_set one_query(const std::vector<int32_t>& h, int32_t t) {
  eval_set e;
  e.history = h;
  e.history_offsets = {0, h.size()};
  e.mask = h;
  e.mask_offsets = {0, h.size()};
  e.targets = {t};
  e.users = {0};
  return e;
}

TEST(text_baseline, an_exact_text_duplicate_of_the_history_item_ranks_first) {
  auto texts = testing::random_texts(300, 12, 500, 41);
  // Item 301 repeats item 17's text word for word.
  const auto row = texts.view().row(17);
  texts.add(std::vector<int32_t>(row.begin(), row.end()));
  const auto e = one_query({5, 17}, 301);
  text_baseline_options o;
  o.history_items = 1;  // the query is item 17's text alone
  o.ignore_tokens = {1};  // BOS
  EXPECT_EQ(text_baseline_ranks(texts.view(), e, o), std::vector<int64_t>{0});
  // Its own score beats every other item's (item 17 itself scores the same but is masked: seen before).
  const bm25_index index(texts.view(), o);
  const auto s = index.scores({17});
  for (int32_t i = 1; i <= 300; ++i) {
    if (i != 17) EXPECT_LT(s[i], s[301]) << "item " << i;
  }
  EXPECT_DOUBLE_EQ(s[17], s[301]);
}

TEST(text_baseline, ranks_follow_the_scores_with_masking_and_ties_against_the_target) {
  testing::owned_texts t;
  t.add({1, 10, 11});      // 1: the history item
  t.add({1, 10, 11});      // 2: a duplicate (scores as 1)
  t.add({1, 10, 20});      // 3: shares one token
  t.add({1, 30, 31});      // 4: shares none
  t.add({1, 32, 33});      // 5: shares none
  text_baseline_options o;
  o.ignore_tokens = {1};
  const auto v = t.view();
  // Target 3 (one shared token): only item 2 scores higher; item 1 is masked.
  EXPECT_EQ(text_baseline_ranks(v, one_query({1}, 3), o), std::vector<int64_t>{1});
  // Target 4 shares nothing: score 0 ties with item 5, counted against it; 2 and 3 score higher.
  EXPECT_EQ(text_baseline_ranks(v, one_query({1}, 4), o), std::vector<int64_t>{3});
  // The target is never masked, even when it is in the history.
  EXPECT_EQ(text_baseline_ranks(v, one_query({1, 2}, 2), o), std::vector<int64_t>{0});
  // Only the last history_items items make the query: with 1, the query is item 4's text.
  o.history_items = 1;
  EXPECT_EQ(text_baseline_ranks(v, one_query({1, 4}, 5), o), std::vector<int64_t>{2});
}

TEST(text_baseline, bad_options_and_ids_are_errors) {
  const auto texts = testing::random_texts(10, 5, 50, 3);
  text_baseline_options o;
  o.b = 2;
  EXPECT_THROW(bm25_index(texts.view(), o), std::exception);
  EXPECT_THROW(text_baseline_ranks(texts.view(), one_query({1}, 11)), std::exception);
  EXPECT_THROW(text_baseline_ranks(texts.view(), one_query({12}, 2)), std::exception);
}

}  // namespace
}  // namespace hllm::model
