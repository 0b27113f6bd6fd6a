#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

#include "actors/data_loader.hpp"
#include "actors/negative_sampler.hpp"
#include "job_test_util.hpp"
#include "storage/dataset.hpp"

using namespace hllm;

namespace {

std::string tiny() { return test::tiny_dataset(); }

msg::batch_request req(uint32_t epoch, uint64_t step, uint32_t rank, uint32_t world = 2) {
  msg::batch_request r;
  r.at = {1, epoch, step, rank};
  r.world_size = world;
  r.batch_size = 16;
  r.max_length = 6;
  return r;
}

}  // namespace

TEST(data_loader, any_loader_gives_the_same_batch_for_the_same_step) {
  data_loader a({"loader-0", tiny(), 2020}), b({"loader-1", tiny(), 2020});
  auto x = std::get<msg::batch>(a.batch_of(req(0, 3, 1)));
  b.batch_of(req(1, 0, 0));  // b has seen other epochs first: no hidden state may leak
  auto y = std::get<msg::batch>(b.batch_of(req(0, 3, 1)));
  EXPECT_EQ(x, y);
  EXPECT_EQ(x.user_ids.size(), 16u);
  EXPECT_EQ(x.item_ids.size(), 16u * 7u);
  data_loader other_seed({"loader-2", tiny(), 7});
  EXPECT_NE(std::get<msg::batch>(other_seed.batch_of(req(0, 3, 1))).user_ids, x.user_ids);
}

TEST(data_loader, ranks_and_steps_partition_an_epoch_and_epochs_reshuffle) {
  data_loader a({"loader-0", tiny(), 2020});
  auto steps = a.steps_per_epoch(2, 16);
  ASSERT_GT(steps, 2);
  std::set<int64_t> seen;
  for (uint64_t s = 0; s < static_cast<uint64_t>(steps); ++s) {
    for (uint32_t r = 0; r < 2; ++r) {
      auto b = std::get<msg::batch>(a.batch_of(req(0, s, r)));
      for (auto u : b.user_ids) EXPECT_TRUE(seen.insert(u).second) << "user " << u << " twice in one epoch";
    }
  }
  EXPECT_NE(std::get<msg::batch>(a.batch_of(req(1, 0, 0))).user_ids,
            std::get<msg::batch>(a.batch_of(req(0, 0, 0))).user_ids);
  // Past the end of the epoch, and nonsense requests, are refused with an error body.
  EXPECT_TRUE(std::holds_alternative<msg::error>(a.batch_of(req(0, steps, 0))));
  EXPECT_TRUE(std::holds_alternative<msg::error>(a.batch_of(req(0, 0, 2))));
}

TEST(data_loader, windows_hold_the_most_recent_training_items_left_padded) {
  data_loader a({"loader-0", tiny(), 2020});
  auto ds = storage::dataset::open(tiny());
  auto b = std::get<msg::batch>(a.batch_of(req(0, 0, 0)));
  for (std::size_t k = 0; k < b.user_ids.size(); ++k) {
    auto part = ds.train_sequence(b.user_ids[k]);
    std::size_t n = std::min<std::size_t>(part.size(), 7);
    for (std::size_t j = 0; j < 7; ++j) {
      int32_t expect = j < 7 - n ? 0 : part[part.size() - n + (j - (7 - n))];
      EXPECT_EQ(b.item_ids[k * 7 + j], expect);
    }
  }
}

TEST(negative_sampler, draws_are_pure_functions_from_training_items_with_exclusions) {
  negative_sampler a({"sampler-0", tiny(), 2020}), b({"sampler-1", tiny(), 2020});
  auto ds = storage::dataset::open(tiny());
  msg::negatives_request r;
  r.at = {1, 0, 5, 0};
  r.count = 200;
  auto x = std::get<msg::negatives>(a.negatives_of(r));
  EXPECT_EQ(x.item_ids, std::get<msg::negatives>(b.negatives_of(r)).item_ids);
  for (int32_t id : x.item_ids) {
    ASSERT_GT(id, 0);
    EXPECT_GT(ds.train_count(id), 0) << "cold item " << id << " drawn as a negative";
  }
  r.exclude_ids = {x.item_ids[0], x.item_ids[1]};
  auto y = std::get<msg::negatives>(a.negatives_of(r));
  for (int32_t id : y.item_ids) {
    EXPECT_NE(id, r.exclude_ids[0]);
    EXPECT_NE(id, r.exclude_ids[1]);
  }
  r.at.step = 6;
  r.exclude_ids.clear();
  EXPECT_NE(std::get<msg::negatives>(a.negatives_of(r)).item_ids, x.item_ids);
}
