// messages/protocol.hpp: the table of who accepts which request and what it answers is consistent, and the
// shard rule is the one the shard files and actors assume.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "messages/protocol.hpp"

namespace hllm::msg {
namespace {

static_assert(std::is_same_v<reply_t<batch_request>, batch>);
static_assert(std::is_same_v<reply_t<cache_lookup>, cache_rows>);
static_assert(std::is_same_v<reply_t<cache_put>, ack>);
static_assert(kind_of_type<error>() == body_kind::error);
static_assert(kind_of_type<checkpoint_done>() == body_kind::checkpoint_done);
static_assert(protocol::embedding_cache_shard::accepts::contains<cache_lookup>);
static_assert(!protocol::data_loader::accepts::contains<cache_lookup>);
static_assert(accepts("negative_sampler", body_kind::negatives_request));
static_assert(!accepts("negative_sampler", body_kind::batch_request));
static_assert(reply_kind_of(body_kind::encode_request) == body_kind::encode_result);
static_assert(!reply_kind_of(body_kind::encode_result));

TEST(protocol, a_request_has_the_same_reply_whichever_actor_answers_it) {
  for (const auto& e : protocol::exchanges()) {
    EXPECT_EQ(reply_kind_of(e.request), e.reply) << e.actor_kind << " answers " << to_string(e.request);
  }
}

TEST(protocol, no_body_is_both_a_request_and_a_reply_and_error_is_neither) {
  std::set<body_kind> requests, replies;
  for (const auto& e : protocol::exchanges()) {
    requests.insert(e.request);
    replies.insert(e.reply);
  }
  for (auto k : requests) EXPECT_EQ(replies.count(k), 0u) << to_string(k) << " is a request and a reply";
  EXPECT_EQ(requests.count(body_kind::error), 0u);
  EXPECT_EQ(replies.count(body_kind::error), 0u) << "error answers any request; it is not in the table";
}

TEST(protocol, every_body_on_the_wire_is_used_no_dead_bodies) {
  // error answers any request; credit is the one one-way body (a receiver's window, consumed by the router).
  std::set<body_kind> used = {body_kind::error, body_kind::credit};
  for (const auto& e : protocol::exchanges()) {
    used.insert(e.request);
    used.insert(e.reply);
  }
  for (std::size_t k = 0; k < body_kind_count; ++k) {
    EXPECT_EQ(used.count(static_cast<body_kind>(k)), 1u)
        << to_string(static_cast<body_kind>(k)) << " is in the schema but no actor sends or answers it";
  }
}

TEST(protocol, every_actor_kind_answers_status_and_appears_once) {
  std::set<std::string> kinds, with_status;
  std::string last;
  for (const auto& e : protocol::exchanges()) {
    std::string kind(e.actor_kind);
    if (kind != last) {
      EXPECT_TRUE(kinds.insert(kind).second) << kind << " is listed twice";
      last = kind;
    }
    if (e.request == body_kind::status_request) with_status.insert(kind);
  }
  EXPECT_EQ(kinds, with_status) << "the monitor polls every actor with status_request";
  EXPECT_EQ(kinds.size(), 8u);
  EXPECT_FALSE(accepts("no_such_kind", body_kind::status_request));
}

TEST(protocol, shard_of_is_id_mod_n_and_shard_name_the_address) {
  EXPECT_EQ(shard_of(1, 1), 0u);
  EXPECT_EQ(shard_of(7, 3), 1u);
  EXPECT_EQ(shard_of(9, 3), 0u);
  EXPECT_EQ(shard_of(std::int64_t{1} << 40, 7), static_cast<std::uint32_t>((std::uint64_t{1} << 40) % 7));
  EXPECT_EQ(shard_name(0), "cache-shard-0");
  EXPECT_EQ(shard_name(12), "cache-shard-12");
}

}  // namespace
}  // namespace hllm::msg
