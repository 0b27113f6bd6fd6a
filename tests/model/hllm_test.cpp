// Item LLM packing and pooling, User LLM causality and padding, the extra-token pass of the fusion heads.
#include <gtest/gtest.h>

#include <functional>
#include <numeric>
#include <utility>

#include "model/hllm.hpp"
#include "storage/error.hpp"
#include "test_support.hpp"

namespace hllm::model {
namespace {

using testing::random_texts;
using testing::tiny_llama;

std::vector<int32_t> all_ids(int n) {
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 1);
  return ids;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

class item_llm_packing : public ::testing::TestWithParam<item_pooling> {};

TEST_P(item_llm_packing, packed_batch_equals_items_encoded_one_at_a_time) {
  auto texts = random_texts(30, 14, 40, 3);
  item_llm m(tiny_llama(40), 10, GetParam());  // max 10 tokens: longer texts are cut
  m->init_random(11);
  torch::NoGradGuard ng;
  const auto ids = all_ids(30);
  auto packed = pack_items(texts.view(), ids, 10, GetParam());
  ASSERT_GT(packed.plan.groups.size(), 1u) << "the lengths should fall into several buckets";
  auto together = m->forward(packed);
  for (int32_t id : ids) {
    auto alone = m->encode(texts.view(), {id});
    EXPECT_LT(max_abs_diff(alone[0], together[id - 1]), 1e-5) << "item " << id;
  }
}

INSTANTIATE_TEST_SUITE_P(pooling, item_llm_packing, ::testing::Values(item_pooling::item_token, item_pooling::mean));

TEST(item_llm, other_items_in_the_pack_never_change_an_embedding) {
  auto a = random_texts(8, 12, 40, 5), b = a;
  b.tokens[b.offsets[6] + 1] = 39;  // change a token of item 6 only
  ASSERT_NE(a.tokens[a.offsets[6] + 1], 39);
  item_llm m(tiny_llama(40), 12, item_pooling::item_token);
  m->init_random(2);
  torch::NoGradGuard ng;
  auto ea = m->encode(a.view(), all_ids(8)), eb = m->encode(b.view(), all_ids(8));
  for (int i = 0; i < 8; ++i) {
    if (i + 1 == 6) {
      EXPECT_GT(max_abs_diff(ea[i], eb[i]), 1e-4);
    } else {
      EXPECT_EQ(max_abs_diff(ea[i], eb[i]), 0.0) << "item " << i + 1;
    }
  }
}

TEST(item_llm, item_token_sits_at_max_text_tokens_with_right_aligned_text) {
  testing::owned_texts t;
  t.add({1, 5, 6});
  auto p = pack_items(t.view(), {1}, 8, item_pooling::item_token);
  const std::vector<int64_t> expected{5, 6, 7, 8};
  auto pos = p.plan.positions;
  ASSERT_EQ(pos.numel(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(pos[i].item<int64_t>(), expected[i]);
  EXPECT_EQ(p.pick[0].item<int64_t>(), 3);
}

TEST(item_llm, padding_and_out_of_range_ids_are_refused) {
  auto texts = random_texts(3, 5, 20, 1);
  EXPECT_THROW(pack_items(texts.view(), {0}, 8, item_pooling::item_token), error);
  EXPECT_THROW(pack_items(texts.view(), {4}, 8, item_pooling::item_token), error);
}

TEST(attention_plan, realistic_length_mix_spends_under_ten_percent_on_padding) {
  std::mt19937 rng(9);
  std::vector<int64_t> lengths, positions;
  for (int i = 0; i < 500; ++i) {
    lengths.push_back(8 + rng() % 25);  // 8..32 tokens with [ITEM]
    for (int64_t t = 0; t < lengths.back(); ++t) positions.push_back(t);
  }
  auto plan = plan_packed(lengths, positions);
  EXPECT_LE(plan.attention_padding, 0.10);
  EXPECT_EQ(plan.tokens, std::accumulate(lengths.begin(), lengths.end(), int64_t{0}));
}

TEST(llama_model, a_later_token_never_changes_an_earlier_hidden_state) {
  llama_model m(tiny_llama(30));
  m->init_random(4);
  torch::NoGradGuard ng;
  std::vector<int64_t> ids{1, 4, 7, 2, 9, 3, 5}, pos(7);
  std::iota(pos.begin(), pos.end(), 0);
  auto plan = plan_packed({7}, pos);
  auto a = m->forward(m->embed(torch::tensor(ids)), plan);
  ids[4] = 20;
  auto b = m->forward(m->embed(torch::tensor(ids)), plan);
  EXPECT_EQ(max_abs_diff(a.narrow(0, 0, 4), b.narrow(0, 0, 4)), 0.0);
  EXPECT_GT(max_abs_diff(a.narrow(0, 4, 3), b.narrow(0, 4, 3)), 1e-4);
}

struct user_fixture : ::testing::Test {
  void SetUp() override {
    torch::manual_seed(1);
    x = torch::randn({3, 6, 16});
    valid = torch::ones({3, 6}, torch::kBool);
    valid[1].narrow(0, 0, 2).fill_(false);  // left padding: user 1 has 4 items
    valid[2].narrow(0, 0, 5).fill_(false);  // user 2 has 1 item
  }
  // A User LLM's outputs for x and for a copy of x that `change` edits (same weights, same mask).
  std::pair<torch::Tensor, torch::Tensor> outputs_before_and_after(const std::function<void(torch::Tensor&)>& change) {
    user_llm u(tiny_llama(0), false);
    u->init_random(6);
    torch::NoGradGuard ng;
    auto y = x.clone();
    change(y);
    return {u->forward(x, valid), u->forward(y, valid)};
  }
  torch::Tensor x, valid;
};

TEST_F(user_fixture, changing_a_later_item_never_changes_an_earlier_output) {
  auto [a, b] = outputs_before_and_after([](torch::Tensor& y) {
    y[0][3] += 1.0;
    y[1][4] += 1.0;
  });
  EXPECT_EQ(max_abs_diff(a[0].narrow(0, 0, 3), b[0].narrow(0, 0, 3)), 0.0);
  EXPECT_EQ(max_abs_diff(a[1].narrow(0, 2, 2), b[1].narrow(0, 2, 2)), 0.0);
  EXPECT_GT(max_abs_diff(a[0].narrow(0, 3, 3), b[0].narrow(0, 3, 3)), 1e-4);
  EXPECT_EQ(max_abs_diff(a[2], b[2]), 0.0);  // another user
}

TEST_F(user_fixture, padding_embeddings_never_change_valid_outputs) {
  auto [a, b] = outputs_before_and_after([](torch::Tensor& y) {
    y[1].narrow(0, 0, 2).normal_();
    y[2].narrow(0, 0, 5).fill_(3.0);
  });
  EXPECT_EQ(max_abs_diff(a[1].narrow(0, 2, 4), b[1].narrow(0, 2, 4)), 0.0);
  EXPECT_EQ(max_abs_diff(a[2][5], b[2][5]), 0.0);
}

TEST_F(user_fixture, extra_tokens_see_the_prefix_and_themselves_only) {
  user_llm u(tiny_llama(0), true);
  u->init_random(8);
  torch::NoGradGuard ng;
  auto extras = torch::randn({3, 3, 16});
  auto [prefix, out] = u->forward_with_extras(x, valid, extras);
  // Extras never leak into the sequence (padding positions' outputs are meaningless and not compared).
  auto keep = valid.unsqueeze(2).to(torch::kFloat32);
  EXPECT_LT(max_abs_diff(prefix * keep, u->forward(x, valid) * keep), 1e-6);
  for (int e = 0; e < 3; ++e) {
    // Each extra equals appending it alone to the sequence.
    auto seq = torch::cat({x, extras.narrow(1, e, 1)}, 1);
    auto v = torch::cat({valid, torch::ones({3, 1}, torch::kBool)}, 1);
    auto alone = u->forward(seq, v).select(1, 6);
    EXPECT_LT(max_abs_diff(out.select(1, e), alone), 1e-5) << "extra " << e;
  }
}

}  // namespace
}  // namespace hllm::model
