#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "actors/addressable.hpp"
#include "actors/data_loader.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "actors/negative_sampler.hpp"
#include "actors/step_feed.hpp"
#include "job_test_util.hpp"
#include "storage/dataset.hpp"

using namespace hllm;

namespace {

std::string tiny() { return test::tiny_dataset(); }

// A real loader that answers late: replies of a fast loader overtake its replies.
struct slow_loader {
  data_loader inner{{"loader-slow", tiny(), 2020}};
  msg::body handle(const msg::body& b) {
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    return inner.handle(b);
  }
};

using actor_env = test::local_actor_env;

step_feed_options feed_opts(std::vector<std::string> loaders) {
  step_feed_options o;
  o.loaders = std::move(loaders);
  o.samplers = {"sampler-0"};
  o.batch_size = 8;
  o.max_length = 5;
  o.negatives = 32;
  o.window = 3;
  o.timeout = std::chrono::milliseconds(5000);
  return o;
}

// The next step fails with an hllm::error whose message holds `text`.
void expect_next_fails(step_feed& feed, const std::string& text) {
  try {
    feed.next();
    FAIL() << "no error";
  } catch (const hllm::error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(step_feed, serves_steps_in_order_whatever_order_replies_arrive_in) {
  actor_env env;
  spawn_data_loader(*env.sys, env.router, {"loader-0", tiny(), 2020});
  spawn_addressable(*env.sys, env.router, "loader-slow", std::make_unique<slow_loader>());
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny(), 2020});
  // Step 0 goes to the slow loader, step 1 to the fast one, step 2 to a loader that does not exist (retried).
  step_feed feed(*env.sys, env.router, feed_opts({"loader-slow", "loader-0", "loader-missing"}));
  data_loader reference({"ref", tiny(), 2020});
  negative_sampler ref_sampler({"ref-s", tiny(), 2020});
  feed.start_epoch(0, 0, 6);
  for (uint64_t s = 0; s < 6; ++s) {
    auto b = feed.next();
    msg::batch_request r;
    r.at = {1, 0, s, 0};
    r.world_size = 1;
    r.batch_size = 8;
    r.max_length = 5;
    EXPECT_EQ(b.items, std::get<msg::batch>(reference.batch_of(r)).item_ids) << "step " << s;
    msg::negatives_request n;
    n.at = r.at;
    n.count = 32;
    EXPECT_EQ(b.negatives, std::get<msg::negatives>(ref_sampler.negatives_of(n)).item_ids) << "step " << s;
  }
  EXPECT_GE(feed.counters().retries, 2u);  // steps 2 and 5 went to the missing loader first
  EXPECT_EQ(feed.counters().steps, 6u);
}

TEST(step_feed, gives_up_with_a_clear_error_when_no_loader_answers) {
  actor_env env;
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny(), 2020});
  auto o = feed_opts({"loader-gone"});
  o.attempts = 2;
  step_feed feed(*env.sys, env.router, o);
  feed.start_epoch(0, 0, 2);
  expect_next_fails(feed, "no loader answered after 2 attempts");
}

namespace {

// The row a test shard holds for `id` (dim 3).
std::vector<float> row_of(int32_t id) { return {static_cast<float>(id), 0.5f * static_cast<float>(id), -1.0f}; }

// Cache shard `s` of 2, in memory, holding every row of its ids at version v1.
std::shared_ptr<embedding_cache_shard> filled_shard(uint32_t s, int64_t num_items) {
  embedding_cache_shard_options so;
  so.name = "cache-shard-" + std::to_string(s);
  so.shard = s;
  so.shard_count = 2;
  so.num_items = num_items;
  auto shard = std::make_shared<embedding_cache_shard>(so);
  msg::cache_put put;
  put.shard = s;
  put.model_version = "v1";
  std::vector<float> rows;
  for (int32_t id = s == 0 ? 2 : 1; id <= num_items; id += 2) {
    put.item_ids.push_back(id);
    auto r = row_of(id);
    rows.insert(rows.end(), r.begin(), r.end());
  }
  put.rows.shape = {static_cast<int64_t>(put.item_ids.size()), 3};
  put.rows.data.resize(rows.size() * sizeof(float));
  std::memcpy(put.rows.data.data(), rows.data(), put.rows.data.size());
  EXPECT_TRUE(std::holds_alternative<msg::ack>(shard->put(put)));
  return shard;
}

// Stage 2 from loader-0 and sampler-0 with lookups in cache-shard-0 and -1 for rows of `version`.
step_feed_options stage2_opts(const std::string& version) {
  auto o = feed_opts({"loader-0"});
  o.stage = 2;
  o.cache_shards = 2;
  o.cache_version = version;
  return o;
}

}  // namespace

TEST(step_feed, stage2_looks_every_distinct_id_up_once_in_its_shard_and_the_rows_travel_with_the_batch) {
  actor_env env;
  spawn_data_loader(*env.sys, env.router, {"loader-0", tiny(), 2020});
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny(), 2020});
  const int64_t num_items = storage::dataset::open(tiny()).num_items();
  std::vector<std::shared_ptr<embedding_cache_shard>> shards{filled_shard(0, num_items), filled_shard(1, num_items)};
  for (auto& s : shards) spawn_addressable(*env.sys, env.router, s->status().name, s);
  step_feed feed(*env.sys, env.router, stage2_opts("v1"));
  feed.start_epoch(0, 0, 5);
  uint64_t rows_total = 0;
  for (int step = 0; step < 5; ++step) {
    auto b = feed.next();
    std::vector<int32_t> ids;
    for (auto* v : {&b.items, &b.negatives}) {
      for (int32_t id : *v) {
        if (id > 0) ids.push_back(id);
      }
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    ASSERT_EQ(b.row_ids, ids) << "step " << step;
    ASSERT_EQ(b.rows.size(), ids.size() * 3);
    for (std::size_t k = 0; k < ids.size(); ++k) {
      EXPECT_EQ(std::vector<float>(b.rows.begin() + 3 * k, b.rows.begin() + 3 * k + 3), row_of(ids[k])) << ids[k];
    }
    rows_total += ids.size();
  }
  EXPECT_EQ(feed.counters().lookups, 10u);  // one per shard per step
  EXPECT_EQ(feed.counters().ids_looked_up, rows_total);
  EXPECT_GT(feed.counters().ids_in_steps, rows_total);  // windows repeat items: deduplication saved lookups
  // The shards served each distinct id of a step once.
  uint64_t served = 0;
  for (auto& s : shards) {
    for (const auto& c : s->status().counters) {
      if (c.name == "rows_served") served += static_cast<uint64_t>(c.value);
    }
  }
  EXPECT_EQ(served, rows_total);
}

TEST(step_feed, stage2_lookups_against_another_cache_version_fail_at_once) {
  actor_env env;
  spawn_data_loader(*env.sys, env.router, {"loader-0", tiny(), 2020});
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny(), 2020});
  const int64_t num_items = storage::dataset::open(tiny()).num_items();
  for (uint32_t s = 0; s < 2; ++s) {
    spawn_addressable(*env.sys, env.router, "cache-shard-" + std::to_string(s), filled_shard(s, num_items));
  }
  step_feed feed(*env.sys, env.router, stage2_opts("v0"));
  feed.start_epoch(0, 0, 2);
  expect_next_fails(feed, "lookup for version 'v0'");
  EXPECT_EQ(feed.counters().retries, 0u);
}
