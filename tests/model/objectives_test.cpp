// InfoNCE against hand-computed values, false-negative masking, logit-scale clamping, finite-difference gradients
// of the whole objective, and ranking metrics against hand-computed ranks.
#include <gtest/gtest.h>

#include <cmath>

#include "model/hllm.hpp"
#include "model/losses.hpp"
#include "model/metrics.hpp"
#include "test_support.hpp"

namespace hllm::model {
namespace {

torch::Tensor vecs(std::vector<std::vector<double>> rows) {
  std::vector<torch::Tensor> t;
  for (auto& r : rows) t.push_back(torch::tensor(r, torch::kFloat64));
  return torch::stack(t);
}

double cosine(const std::vector<double>& a, const std::vector<double>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

TEST(info_nce, matches_a_hand_computed_three_item_example) {
  const std::vector<double> u{1, 0}, p{3, 4}, n1{0, 2}, n2{-1, 1};
  const double scale = 10.0;
  const double lp = scale * cosine(u, p), l1 = scale * cosine(u, n1), l2 = scale * cosine(u, n2);
  const double expected = -lp + std::log(std::exp(lp) + std::exp(l1) + std::exp(l2));
  auto s = torch::tensor(std::log(scale), torch::kFloat64);
  auto out = info_nce(vecs({u}), vecs({p}), vecs({n1, n2}), s);
  EXPECT_NEAR(out.loss.item<double>(), expected, 1e-12);
  EXPECT_EQ(out.top1, 1.0);  // 0.6 * 10 beats 0 and -7.07
}

TEST(info_nce, mean_over_positions_and_top_k) {
  // Position 0 ranks its positive first; position 1 ranks it behind one negative.
  auto user = vecs({{1, 0}, {0, 1}});
  auto pos = vecs({{1, 0.1}, {1, 0.2}});
  auto neg = vecs({{0, 1}, {-1, 0}});
  auto s = torch::tensor(0.0, torch::kFloat64);
  auto out = info_nce(user, pos, neg, s);
  EXPECT_EQ(out.positions, 2);
  EXPECT_DOUBLE_EQ(out.top1, 0.5);
  EXPECT_DOUBLE_EQ(out.top5, 1.0);
  auto one = info_nce(user.narrow(0, 0, 1), pos.narrow(0, 0, 1), neg, s).loss.item<double>();
  auto two = info_nce(user.narrow(0, 1, 1), pos.narrow(0, 1, 1), neg, s).loss.item<double>();
  EXPECT_NEAR(out.loss.item<double>(), (one + two) / 2, 1e-12);
}

TEST(info_nce, near_duplicate_of_the_positive_is_masked_and_the_scale_gradient_stays_finite) {
  auto user = vecs({{1, 0.5}});
  auto pos = vecs({{1, 1}});
  auto dup = vecs({{2.0, 2.0001}, {0, 1}});  // cosine with the positive > 0.99
  auto rest = vecs({{0, 1}});
  auto s = torch::tensor(std::log(20.0), torch::TensorOptions().dtype(torch::kFloat64).requires_grad(true));
  auto with_dup = info_nce(user, pos, dup, s);
  auto without = info_nce(user, pos, rest, s);
  EXPECT_NEAR(with_dup.loss.item<double>(), without.loss.item<double>(), 1e-12);
  with_dup.loss.backward();
  EXPECT_TRUE(std::isfinite(s.grad().item<double>()));
  // Without the guard the duplicate counts: the loss is larger.
  auto unguarded = info_nce(user, pos, dup, s, 1.1);
  EXPECT_GT(unguarded.loss.item<double>(), without.loss.item<double>() + 0.1);
}

TEST(info_nce, the_positive_item_id_in_the_pool_is_masked) {
  auto user = vecs({{1, 0}});
  auto pos = vecs({{0.5, 0.5}});
  auto neg = vecs({{0.9, -0.1}, {0, 1}});  // different vectors (an ID model's table rows can differ... or not)
  auto s = torch::tensor(1.0, torch::kFloat64);
  auto masked = info_nce(user, pos, neg, s, 0.99, torch::tensor({7}), torch::tensor({7, 3}));
  auto only = info_nce(user, pos, neg.narrow(0, 1, 1), s);
  EXPECT_NEAR(masked.loss.item<double>(), only.loss.item<double>(), 1e-12);
}

TEST(recommender, logit_scale_is_clamped_to_zero_and_ln_100) {
  auto texts = testing::random_texts(5, 4, 20, 1);
  recommender r(testing::tiny_hllm(20, 5, 6));
  EXPECT_NEAR(r->logit_scale.item<double>(), std::log(1 / 0.07), 1e-6);
  {
    torch::NoGradGuard ng;
    r->logit_scale.fill_(9.0);
  }
  r->clamp_logit_scale();
  EXPECT_NEAR(r->logit_scale.item<double>(), std::log(100.0), 1e-6);
  {
    torch::NoGradGuard ng;
    r->logit_scale.fill_(-2.0);
  }
  r->clamp_logit_scale();
  EXPECT_EQ(r->logit_scale.item<double>(), 0.0);
}

train_batch tiny_batch() {
  train_batch b;
  b.batch = 2;
  b.seq_len = 3;
  b.items = {0, 3, 1, 4, 2, 5, 1, 3};
  b.negatives = {2, 5, 6, 4};
  return b;
}

// d loss / d theta by central differences on a float64 model, against autograd, for sampled parameters.
void check_gradients(hllm_config c) {
  auto texts = testing::random_texts(6, 5, 20, 2);
  recommender r(c);
  r->to(torch::kFloat64);
  const auto b = tiny_batch();
  auto loss = r->training_loss(b, texts.view()).loss;
  r->zero_grad();
  loss.backward();
  int checked = 0;
  for (auto& p : r->named_parameters()) {
    auto& t = p.value();
    auto flat = t.view({-1});
    for (int64_t i : {int64_t{0}, t.numel() / 2, t.numel() - 1}) {
      const double analytic = t.grad().view({-1})[i].item<double>();
      const double h = 1e-6, old = flat[i].item<double>();
      double plus, minus;
      {
        torch::NoGradGuard ng;
        flat[i].fill_(old + h);
        plus = r->training_loss(b, texts.view()).loss.item<double>();
        flat[i].fill_(old - h);
        minus = r->training_loss(b, texts.view()).loss.item<double>();
        flat[i].fill_(old);
      }
      const double numeric = (plus - minus) / (2 * h);
      EXPECT_NEAR(analytic, numeric, 1e-6 + 1e-4 * std::abs(numeric)) << p.key() << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 30);
}

TEST(recommender, hllm_gradients_match_finite_differences) {
  check_gradients(testing::tiny_hllm(20, 6, 6));
}

TEST(recommender, fusion_head_gradients_match_finite_differences) {
  auto c = testing::tiny_hllm(20, 6, 6);
  c.early_fusion = c.late_fusion = true;
  c.cls_negatives = 2;
  check_gradients(c);
}

TEST(recommender, id_baseline_gradients_match_finite_differences) {
  auto c = testing::tiny_hllm(20, 6, 6);
  c.source = item_source::id;
  check_gradients(c);
}

eval_set one_query(int32_t target, std::vector<int32_t> seen) {
  eval_set e;
  e.history = seen;
  e.history_offsets.push_back(seen.size());
  e.mask = seen;
  e.mask_offsets.push_back(seen.size());
  e.targets.push_back(target);
  e.users.push_back(0);
  return e;
}

// Items on the unit circle at the given angles (degrees); row 0 is padding.
torch::Tensor circle(const std::vector<double>& deg) {
  auto t = torch::zeros({static_cast<int64_t>(deg.size()) + 1, 2});
  for (size_t i = 0; i < deg.size(); ++i) {
    t[i + 1][0] = std::cos(deg[i] * M_PI / 180);
    t[i + 1][1] = std::sin(deg[i] * M_PI / 180);
  }
  return t;
}

TEST(ranking, rank_counts_better_items_and_masks_history_but_not_the_target) {
  // User at 0 degrees: scores by angle; target item 4 at 40 degrees.
  auto items = circle({10, 20, 30, 40, 50, 170});
  auto user = torch::tensor({{1.0f, 0.0f}});
  EXPECT_EQ(target_ranks(items, user, one_query(4, {}))[0], 3);         // items 1, 2, 3 score higher
  EXPECT_EQ(target_ranks(items, user, one_query(4, {2, 6}))[0], 2);     // item 2 masked; 6 is below anyway
  EXPECT_EQ(target_ranks(items, user, one_query(4, {4, 1, 1}))[0], 2);  // target in history stays ranked
}

TEST(ranking, ties_count_against_the_target) {
  auto items = circle({10, 40, 40, 40, 90});
  auto user = torch::tensor({{1.0f, 0.0f}});
  EXPECT_EQ(target_ranks(items, user, one_query(3, {}))[0], 3);  // item 1 above, items 2 and 4 tie
  auto flat = torch::ones({6, 2});                                // collapsed model: all equal
  EXPECT_EQ(target_ranks(flat, user, one_query(3, {}))[0], 4);
}

TEST(ranking, chunk_sizes_do_not_change_ranks) {
  torch::manual_seed(3);
  auto items = torch::randn({300, 8});
  auto users = torch::randn({37, 8});
  eval_set e;
  for (int q = 0; q < 37; ++q) {
    for (int j = 0; j < q % 5; ++j) e.mask.push_back(1 + (q * 7 + j * 13) % 299);
    e.mask_offsets.push_back(e.mask.size());
    e.history_offsets.push_back(0);
    e.targets.push_back(1 + (q * 31) % 299);
    e.users.push_back(q);
  }
  EXPECT_EQ(target_ranks(items, users, e, 5, 17), target_ranks(items, users, e, 256, 16384));
}

TEST(ranking, recall_and_ndcg_from_ranks) {
  auto m = summarize_ranks({0, 3, 7, 60, 250});
  EXPECT_EQ(m.users, 5);
  EXPECT_DOUBLE_EQ(m.recall[0], 40.0);   // @5: ranks 0, 3
  EXPECT_DOUBLE_EQ(m.recall[1], 60.0);   // @10: + 7
  EXPECT_DOUBLE_EQ(m.recall[2], 60.0);   // @50
  EXPECT_DOUBLE_EQ(m.recall[3], 80.0);   // @200: + 60
  EXPECT_NEAR(m.ndcg[0], 100.0 * (1.0 + 1.0 / std::log2(5.0)) / 5, 1e-9);
  EXPECT_NEAR(m.ndcg[1], 100.0 * (1.0 + 1.0 / std::log2(5.0) + 1.0 / std::log2(9.0)) / 5, 1e-9);
  auto some = summarize_ranks({0, 3, 7}, {false, true, true});
  EXPECT_EQ(some.users, 2);
  EXPECT_DOUBLE_EQ(some.recall[0], 50.0);
}

}  // namespace
}  // namespace hllm::model
