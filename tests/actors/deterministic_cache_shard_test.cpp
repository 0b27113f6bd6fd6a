// Embedding-cache shards behind the router, on the deterministic scheduler (deterministic_fixture.hpp): the test
// decides which actor takes which message when, so interleavings of puts, lookups, version changes and misrouted
// ids are reproduced step by step instead of slept around.
#include <cstring>

#include "../storage/test_util.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "deterministic_fixture.hpp"
#include "sample_rows.hpp"

using namespace hllm;
using hllm::test::body_as;

namespace {

constexpr job_ref job{7, 1};
const std::string v_a = "00000000000000aa", v_b = "00000000000000bb";

using hllm::test::rows_for;

std::unique_ptr<embedding_cache_shard> shard_core(std::uint32_t shard, const std::string& dir = "") {
  embedding_cache_shard_options o;
  o.directory = dir;
  o.name = "cache-shard-" + std::to_string(shard);
  o.shard = shard;
  o.shard_count = 2;
  o.num_items = 9;  // shard 0 owns 2, 4, 6, 8; shard 1 owns 1, 3, 5, 7, 9
  return std::make_unique<embedding_cache_shard>(o);
}

msg::cache_put put(std::uint32_t shard, const std::string& v, std::vector<int32_t> ids) {
  auto rows = rows_for(ids, 2);
  return msg::cache_put{shard, v, std::move(ids), std::move(rows)};
}

class deterministic_cache_shard : public hllm::test::deterministic_fixture {
 protected:
  void SetUp() override {
    start_router(job);
    shard0 = enroll("cache-shard-0", shard_core(0));
    shard1 = enroll("cache-shard-1", shard_core(1));
  }
  addressable_actor shard0, shard1;
};

}  // namespace

TEST_F(deterministic_cache_shard, a_shard_takes_requests_in_the_order_the_router_forwarded_them) {
  auto c_put = ask("cache-shard-1", put(1, v_a, {1, 5}), job);
  auto c_lookup = ask("cache-shard-1", msg::cache_lookup{1, v_a, {5, 3}}, job);
  step(router, "router");
  step(router, "router");
  // Both wait in the shard's mailbox, the put first; nothing has been answered yet.
  auto first = peek_delivery(shard1);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->head.correlation_id, c_put);
  EXPECT_TRUE(std::holds_alternative<msg::cache_put>(first->content));
  EXPECT_FALSE(client_has_mail());
  run();
  auto r1 = next_envelope();
  EXPECT_EQ(r1.head.correlation_id, c_put);
  EXPECT_TRUE(std::holds_alternative<msg::ack>(r1.content));
  auto r2 = next_envelope();
  EXPECT_EQ(r2.head.correlation_id, c_lookup);
  auto rows = body_as<msg::cache_rows>(r2);
  EXPECT_EQ(rows.item_ids, (std::vector<int32_t>{5}));
  EXPECT_EQ(rows.missing_ids, (std::vector<int32_t>{3}));
}

TEST_F(deterministic_cache_shard, a_lookup_taken_before_the_put_misses_and_one_taken_after_hits) {
  // The same two requests, the lookup sent first: the shard answers from what it holds when it takes the message.
  auto c_lookup = ask("cache-shard-1", msg::cache_lookup{1, v_a, {5}}, job);
  auto c_put = ask("cache-shard-1", put(1, v_a, {5}), job);
  run();
  auto r1 = next_envelope();
  EXPECT_EQ(r1.head.correlation_id, c_lookup);
  ASSERT_TRUE(std::holds_alternative<msg::error>(r1.content)) << "a lookup before any put must be refused";
  EXPECT_EQ(std::get<msg::error>(r1.content).code, msg::error_code::rejected);
  EXPECT_EQ(next_envelope().head.correlation_id, c_put);
  ask("cache-shard-1", msg::cache_lookup{1, v_a, {5}}, job);
  run();
  EXPECT_EQ(body_as<msg::cache_rows>(next_envelope()).item_ids, (std::vector<int32_t>{5}));
}

TEST_F(deterministic_cache_shard, replies_come_back_in_the_order_the_shards_answer_each_with_its_correlation_id) {
  ask("cache-shard-0", put(0, v_a, {2, 4}), job);
  ask("cache-shard-1", put(1, v_a, {1, 3}), job);
  run();
  next_envelope();
  next_envelope();
  auto c0 = ask("cache-shard-0", msg::cache_lookup{0, v_a, {4}}, job);
  auto c1 = ask("cache-shard-1", msg::cache_lookup{1, v_a, {3}}, job);
  step(router, "router");
  step(router, "router");
  // Shard 1 answers first although it was asked second.
  step(shard1, "cache-shard-1");
  step(router, "router");
  auto first = next_envelope();
  EXPECT_EQ(first.head.correlation_id, c1);
  EXPECT_EQ(first.head.sender, "cache-shard-1");
  EXPECT_EQ(body_as<msg::cache_rows>(first).item_ids, (std::vector<int32_t>{3}));
  EXPECT_FALSE(client_has_mail());
  run();
  auto second = next_envelope();
  EXPECT_EQ(second.head.correlation_id, c0);
  EXPECT_EQ(body_as<msg::cache_rows>(second).item_ids, (std::vector<int32_t>{4}));
}

TEST_F(deterministic_cache_shard, a_put_of_a_new_version_between_two_lookups_refuses_the_second) {
  ask("cache-shard-1", put(1, v_a, {1}), job);
  run();
  next_envelope();
  auto c_before = ask("cache-shard-1", msg::cache_lookup{1, v_a, {1}}, job);
  ask("cache-shard-1", put(1, v_b, {3}), job);
  auto c_after = ask("cache-shard-1", msg::cache_lookup{1, v_a, {1}}, job);
  run();
  auto before = next_envelope();
  EXPECT_EQ(before.head.correlation_id, c_before);
  EXPECT_EQ(body_as<msg::cache_rows>(before).item_ids, (std::vector<int32_t>{1}));
  EXPECT_TRUE(std::holds_alternative<msg::ack>(next_envelope().content));
  auto after = next_envelope();
  EXPECT_EQ(after.head.correlation_id, c_after);
  ASSERT_TRUE(std::holds_alternative<msg::error>(after.content));
  EXPECT_NE(std::get<msg::error>(after.content).message.find(v_b), std::string::npos)
      << "the refusal names the version the shard holds: " << std::get<msg::error>(after.content).message;
}

TEST_F(deterministic_cache_shard, an_id_the_shard_does_not_own_is_refused_on_put_and_missing_on_lookup) {
  ask("cache-shard-1", put(1, v_a, {1}), job);
  ask("cache-shard-1", put(1, v_a, {4}), job);  // 4 belongs to shard 0
  ask("cache-shard-1", msg::cache_lookup{1, v_a, {1, 4, 0, 10}}, job);
  run();
  EXPECT_TRUE(std::holds_alternative<msg::ack>(next_envelope().content));
  auto refused = next_envelope();
  ASSERT_TRUE(std::holds_alternative<msg::error>(refused.content));
  EXPECT_EQ(std::get<msg::error>(refused.content).code, msg::error_code::rejected);
  EXPECT_NE(std::get<msg::error>(refused.content).message.find("item 4 is not in this shard"), std::string::npos);
  auto rows = body_as<msg::cache_rows>(next_envelope());
  EXPECT_EQ(rows.item_ids, (std::vector<int32_t>{1}));
  EXPECT_EQ(rows.missing_ids, (std::vector<int32_t>{4, 0, 10}));  // foreign, padding and out of range: never rows
  // The shard that owns 4 never saw any of it.
  ask("cache-shard-0", msg::coverage_request{v_a}, job);
  run();
  EXPECT_EQ(body_as<msg::coverage>(next_envelope()).rows_present, 0u);
}

TEST_F(deterministic_cache_shard, a_checkpoint_holds_exactly_the_puts_the_shard_took_before_it) {
  test::temp_dir tmp;
  auto persisted = enroll("cache-shard-p", shard_core(1, tmp.path()));
  ask("cache-shard-p", put(1, v_a, {1}), job);
  ask("cache-shard-p", msg::checkpoint_request{4, "", "test"}, job);
  ask("cache-shard-p", put(1, v_a, {3}), job);
  // The router forwards all three before the shard takes any; the shard takes them in that order.
  for (int i = 0; i < 3; ++i) step(router, "router");
  run();
  EXPECT_TRUE(std::holds_alternative<msg::ack>(next_envelope().content));
  auto done = body_as<msg::checkpoint_done>(next_envelope());
  ASSERT_TRUE(done.ok) << done.error;
  EXPECT_EQ(done.step, 4u);
  EXPECT_TRUE(std::holds_alternative<msg::ack>(next_envelope().content));
  // A restarted shard reloads the file: the row put before the checkpoint, not the one after.
  auto restarted = shard_core(1, tmp.path());
  EXPECT_EQ(restarted->version(), v_a);
  auto rows = std::get<msg::cache_rows>(restarted->handle(msg::cache_lookup{1, v_a, {1, 3}}));
  EXPECT_EQ(rows.item_ids, (std::vector<int32_t>{1}));
  EXPECT_EQ(rows.missing_ids, (std::vector<int32_t>{3}));
}

// Every id is checked before the shard changes: a misrouted put of a new version does not wipe it, and a put
// with one foreign id stores none of its rows.
TEST_F(deterministic_cache_shard, a_refused_put_leaves_the_shard_unchanged) {
  ask("cache-shard-1", put(1, v_a, {1}), job);
  ask("cache-shard-1", put(1, v_b, {2}), job);     // misrouted, new version
  ask("cache-shard-1", put(1, v_a, {3, 4}), job);  // 4 is foreign
  ask("cache-shard-1", msg::cache_lookup{1, v_a, {1, 3}}, job);
  run();
  next_envelope();
  EXPECT_TRUE(std::holds_alternative<msg::error>(next_envelope().content));
  EXPECT_TRUE(std::holds_alternative<msg::error>(next_envelope().content));
  auto rows = body_as<msg::cache_rows>(next_envelope());
  EXPECT_EQ(rows.item_ids, (std::vector<int32_t>{1}));
  EXPECT_EQ(rows.missing_ids, (std::vector<int32_t>{3}));
}
