// The client call of actors/ask.hpp and the one error vocabulary across the actor boundary: what a reply turns
// into (result_of), the two tables between hllm::error categories and wire codes (code_of, errc_of), the retry
// rule, requests in flight together on the deterministic scheduler (deterministic_fixture.hpp), and a real client,
// the step feed, whose failure now carries the category of what its receivers said.
#include <caf/all.hpp>
#include <cstdlib>
#include <functional>
#include <stdexcept>

#include "actors/ask.hpp"
#include "actors/data_loader.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "actors/negative_sampler.hpp"
#include "actors/step_feed.hpp"
#include "../job/job_test_util.hpp"
#include "deterministic_fixture.hpp"
#include "sample_rows.hpp"

using namespace hllm;

namespace {

msg::buffer reply_with(msg::body content) { return hllm::make_reply(msg::header{}, std::move(content)); }

constexpr errc all_errc[] = {errc::io,      errc::format,    errc::checksum, errc::invalid_input,
                             errc::version, errc::not_found, errc::mismatch};

}  // namespace

// ---- result_of: what came back, typed ----

TEST(protocol_result_of, the_reply_body_of_the_request_is_the_value) {
  msg::batch b;
  b.user_ids = {3, 4};
  b.item_ids = {1, 2, 3, 4, 5, 6};
  auto r = result_of<msg::batch_request>(reply_with(b));
  ASSERT_TRUE(r.ok()) << r.failure().message;
  EXPECT_EQ(r.value().user_ids, b.user_ids);
  EXPECT_EQ(r.value().item_ids, b.item_ids);
}

TEST(protocol_result_of, an_error_body_is_a_failure_with_its_code_and_text) {
  auto r = result_of<msg::cache_lookup>(reply_with(msg::error{msg::error_code::stale_epoch, "epoch 2, router at 3"}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().code, msg::error_code::stale_epoch);
  EXPECT_EQ(r.failure().message, "epoch 2, router at 3");
  EXPECT_EQ(describe(r.failure()), "stale_epoch: epoch 2, router at 3");
}

TEST(protocol_result_of, a_reply_of_another_kind_is_rejected_naming_both_kinds) {
  auto r = result_of<msg::batch_request>(reply_with(msg::ack{"stored"}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().code, msg::error_code::rejected);
  EXPECT_EQ(r.failure().message, "answered ack to batch_request");
}

TEST(protocol_result_of, an_undecodable_reply_is_unknown_and_so_transient) {
  const char garbage[] = "not an envelope, not even close";
  auto r = result_of<msg::status_request>(msg::buffer::copy_of(garbage, sizeof(garbage)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().code, msg::error_code::unknown);
  EXPECT_EQ(r.failure().message.rfind("unreadable reply: ", 0), 0u) << r.failure().message;
  EXPECT_TRUE(transient(r.failure().code));
}

TEST(protocol_result_of, a_caf_error_instead_of_a_reply_is_unknown_with_its_text) {
  auto r = result_of<msg::coverage_request>(caf::make_error(caf::sec::request_timeout));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.failure().code, msg::error_code::unknown);
  EXPECT_NE(r.failure().message.find("request_timeout"), std::string::npos) << r.failure().message;
}

// ---- one vocabulary: errc -> code (receiver) and code -> errc (client) ----

TEST(protocol_error_tables, a_thrown_category_comes_back_as_itself_or_its_documented_fold) {
  // What a client reads for what a receiver threw: the same errc, except the three the wire has no code for.
  EXPECT_EQ(errc_of(code_of(errc::io)), errc::io);
  EXPECT_EQ(errc_of(code_of(errc::format)), errc::format);
  EXPECT_EQ(errc_of(code_of(errc::version)), errc::version);
  EXPECT_EQ(errc_of(code_of(errc::mismatch)), errc::mismatch);
  EXPECT_EQ(errc_of(code_of(errc::checksum)), errc::format);
  EXPECT_EQ(errc_of(code_of(errc::invalid_input)), errc::mismatch);
  EXPECT_EQ(errc_of(code_of(errc::not_found)), errc::mismatch);
  // No thrown category is ever sent as a code a client asks again after: a receiver's failure is not transient.
  for (errc e : all_errc) EXPECT_FALSE(transient(code_of(e))) << to_string(e);
}

TEST(protocol_error_tables, every_code_a_receiver_sends_for_a_throw_survives_the_trip_through_errc) {
  for (errc e : all_errc) {
    const auto c = code_of(e);
    EXPECT_EQ(code_of(errc_of(c)), c) << to_string(e) << " -> " << msg::to_string(c);
  }
}

TEST(protocol_error_tables, every_wire_code_has_one_category) {
  using msg::error_code;
  const std::pair<error_code, errc> table[] = {
      {error_code::unknown, errc::io},          {error_code::malformed, errc::format},
      {error_code::version_mismatch, errc::version}, {error_code::unknown_body, errc::version},
      {error_code::too_large, errc::format},    {error_code::unknown_receiver, errc::not_found},
      {error_code::stale_epoch, errc::mismatch}, {error_code::timeout, errc::io},
      {error_code::overloaded, errc::io},       {error_code::rejected, errc::mismatch},
      {error_code::internal, errc::io},
  };
  static_assert(static_cast<int>(error_code::internal) == 10, "a new code needs its row here and in errc_of");
  for (const auto& [code, category] : table) EXPECT_EQ(errc_of(code), category) << msg::to_string(code);
  auto e = to_error(ask_failure{error_code::unknown_receiver, "no route to 'loader-9'"}, "trainer-0: step 4");
  EXPECT_EQ(e.code(), errc::not_found);
  EXPECT_STREQ(e.what(), "trainer-0: step 4: unknown_receiver: no route to 'loader-9'");
}

// ---- the retry rule ----

TEST(protocol_retry_policy, asks_again_only_within_its_bounds_and_for_the_failures_it_names) {
  const auto now = std::chrono::steady_clock::now();
  const ask_failure timeout{msg::error_code::timeout, ""}, refused{msg::error_code::rejected, ""},
      died{msg::error_code::internal, ""};
  retry_policy once;  // the default: one attempt
  EXPECT_FALSE(once.asks_again(timeout, 1, now));

  retry_policy by_time;
  by_time.retry_for = std::chrono::milliseconds(60000);
  EXPECT_TRUE(by_time.asks_again(timeout, 1, now));
  EXPECT_TRUE(by_time.asks_again(timeout, 50, now));
  EXPECT_FALSE(by_time.asks_again(refused, 1, now));
  EXPECT_FALSE(by_time.asks_again(died, 1, now));
  EXPECT_FALSE(by_time.asks_again(timeout, 1, now - std::chrono::minutes(2)));  // past retry_for

  retry_policy by_count;
  by_count.attempts = 3;
  by_count.on = retry_on::not_refused;
  EXPECT_TRUE(by_count.asks_again(died, 2, now));
  EXPECT_FALSE(by_count.asks_again(died, 3, now));
  EXPECT_FALSE(by_count.asks_again(refused, 1, now));
  by_count.on = retry_on::any;
  EXPECT_TRUE(by_count.asks_again(refused, 1, now));
}

// ---- requests in flight together, on the deterministic scheduler ----

namespace {

constexpr job_ref job{5, 2};
const std::string version = "00000000000000aa";

std::unique_ptr<embedding_cache_shard> shard_core(std::uint32_t shard) {
  embedding_cache_shard_options o;
  o.name = "cache-shard-" + std::to_string(shard);
  o.shard = shard;
  o.shard_count = 2;
  o.num_items = 9;  // shard 0 owns 2, 4, 6, 8; shard 1 owns 1, 3, 5, 7, 9
  return std::make_unique<embedding_cache_shard>(o);
}

// A receiver whose handling throws what it was built with.
struct throwing_core {
  std::function<void()> raise;
  msg::body handle(const msg::body&) {
    raise();
    return msg::ack{};
  }
};

class deterministic_ask : public hllm::test::deterministic_fixture {
 protected:
  void SetUp() override {
    start_router(job);
    enroll("cache-shard-0", shard_core(0));
    enroll("cache-shard-1", shard_core(1));
  }

  template <class Request>
  pending<Request> send(const std::string& to, const Request& r) {
    return send_request(self, router, "client", job, to, r);
  }
};

}  // namespace

TEST_F(deterministic_ask, replies_in_flight_together_are_each_received_typed_in_any_order) {
  auto put0 = send("cache-shard-0", msg::cache_put{0, version, {2, 4}, hllm::test::rows_for({2, 4}, 3)});
  auto put1 = send("cache-shard-1", msg::cache_put{1, version, {1, 3, 5}, hllm::test::rows_for({1, 3, 5}, 3)});
  run();
  // Received in the other order than sent: each handle takes its own reply out of the client's mailbox.
  ASSERT_TRUE(put1.receive().ok());
  ASSERT_TRUE(put0.receive().ok());
  auto look1 = send("cache-shard-1", msg::cache_lookup{1, version, {5, 7}});
  auto stale = send("cache-shard-0", msg::cache_lookup{0, "00000000000000bb", {2}});
  auto look0 = send("cache-shard-0", msg::cache_lookup{0, version, {4, 2}});
  run();
  auto r0 = look0.receive();
  ASSERT_TRUE(r0.ok()) << r0.failure().message;
  EXPECT_EQ(r0.value().item_ids, (std::vector<std::int32_t>{4, 2}));
  EXPECT_TRUE(r0.value().missing_ids.empty());
  auto r1 = look1.receive();
  ASSERT_TRUE(r1.ok()) << r1.failure().message;
  EXPECT_EQ(r1.value().missing_ids, (std::vector<std::int32_t>{7}));
  auto refused = stale.receive();  // a lookup for another version: the shard refuses it
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.failure().code, msg::error_code::rejected);
  EXPECT_EQ(to_error(refused.failure(), "client").code(), errc::mismatch);
  EXPECT_FALSE(client_has_mail());
}

TEST_F(deterministic_ask, a_dropped_request_leaves_nothing_behind_for_the_next) {
  auto dropped = send("cache-shard-1", msg::coverage_request{version});
  auto kept = send("cache-shard-0", msg::coverage_request{version});
  run();
  dropped.drop();
  auto c = kept.receive();
  ASSERT_TRUE(c.ok()) << c.failure().message;
  EXPECT_EQ(c.value().rows_expected, 4u);  // shard 0's ids of 1..9
  EXPECT_FALSE(client_has_mail());
}

TEST_F(deterministic_ask, a_category_thrown_by_a_receiver_reaches_the_client_as_that_category) {
  enroll("throws-mismatch", std::make_unique<throwing_core>(throwing_core{
                                [] { throw error(errc::mismatch, "shard file belongs to another layout"); }}));
  enroll("throws-io", std::make_unique<throwing_core>(throwing_core{[] { throw error(errc::io, "disk full"); }}));
  enroll("throws-other", std::make_unique<throwing_core>(throwing_core{[] { throw std::runtime_error("boom"); }}));
  auto mismatch = send("throws-mismatch", msg::status_request{});
  auto io = send("throws-io", msg::status_request{});
  auto other = send("throws-other", msg::status_request{});
  auto nobody = send("nobody", msg::status_request{});
  run();
  auto m = mismatch.receive();
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.failure().code, msg::error_code::rejected);
  EXPECT_EQ(m.failure().message, "shard file belongs to another layout");
  EXPECT_EQ(to_error(m.failure(), "client").code(), errc::mismatch);
  auto i = io.receive();
  ASSERT_FALSE(i.ok());
  EXPECT_EQ(i.failure().code, msg::error_code::internal);
  EXPECT_EQ(to_error(i.failure(), "client").code(), errc::io);
  auto o = other.receive();
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.failure().code, msg::error_code::internal);
  auto n = nobody.receive();
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.failure().code, msg::error_code::unknown_receiver);
  EXPECT_EQ(to_error(n.failure(), "client").code(), errc::not_found);
}

// ---- a real client: the step feed on a real scheduler ----

namespace {

using hllm::test::tiny_dataset;
using env_type = hllm::test::local_actor_env;

// Steps the loaders are asked for fail; the batch shape does not matter (the options' defaults).
step_feed_options feed_options(std::vector<std::string> loaders) {
  step_feed_options o;
  o.loaders = std::move(loaders);
  o.samplers = {"sampler-0"};
  o.attempts = 2;
  return o;
}

// The error the feed's next step throws; fails the test when it throws none.
error next_error(step_feed& feed) {
  try {
    feed.next();
  } catch (const error& e) {
    return e;
  }
  ADD_FAILURE() << "the step was served";
  return error(errc::io, "");
}

}  // namespace

TEST(step_feed_failures, loaders_refusing_the_step_fail_it_as_a_mismatch_saying_what_they_said) {
  if (tiny_dataset().empty()) GTEST_SKIP() << "HLLM_TINY_DATA is not set (ctest sets it: fixture prepared_tiny)";
  env_type env;
  spawn_data_loader(*env.sys, env.router, {"loader-0", tiny_dataset(), 2020});
  spawn_data_loader(*env.sys, env.router, {"loader-1", tiny_dataset(), 2020});
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny_dataset(), 2020});
  step_feed feed(*env.sys, env.router, feed_options({"loader-0", "loader-1"}));
  feed.start_epoch(0, 1000000, 1000001);  // far past the tiny epoch: every loader refuses it
  auto e = next_error(feed);
  EXPECT_EQ(e.code(), errc::mismatch) << e.what();
  const std::string what = e.what();
  EXPECT_NE(what.find("no loader answered after 2 attempts; last failure: rejected: loader-1: step 1000000 is past"),
            std::string::npos)
      << what;
  EXPECT_EQ(feed.counters().retries, 1u);  // loader-0, then loader-1
}

TEST(step_feed_failures, loaders_that_are_not_there_fail_the_step_as_not_found) {
  if (tiny_dataset().empty()) GTEST_SKIP() << "HLLM_TINY_DATA is not set (ctest sets it: fixture prepared_tiny)";
  env_type env;
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny_dataset(), 2020});
  step_feed feed(*env.sys, env.router, feed_options({"loader-gone"}));
  feed.start_epoch(0, 0, 1);
  auto e = next_error(feed);
  EXPECT_EQ(e.code(), errc::not_found) << e.what();
  EXPECT_NE(std::string(e.what()).find("unknown_receiver: no route to 'loader-gone'"), std::string::npos) << e.what();
}
