#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <cstring>
#include <filesystem>

#include "../storage/test_util.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "actors/router.hpp"
#include "messages/codec.hpp"
#include "../actors/sample_rows.hpp"
#include "job_test_util.hpp"

using namespace hllm;

namespace {

using hllm::test::rows_for;

float at(const msg::tensor& t, int64_t row, int64_t col) {
  float f;
  std::memcpy(&f, t.data.data() + (row * t.shape[1] + col) * sizeof(float), sizeof f);
  return f;
}

embedding_cache_shard_options opts(const std::string& dir) {
  embedding_cache_shard_options o;
  o.name = "cache-shard-1";
  o.shard = 1;
  o.shard_count = 2;
  o.num_items = 9;  // shard 1 owns 1, 3, 5, 7, 9
  o.directory = dir;
  return o;
}

}  // namespace

TEST(embedding_cache_shard, serves_put_rows_and_reports_missing_ones) {
  embedding_cache_shard s(opts(""));
  auto r = s.handle(msg::cache_put{1, "00000000000000aa", {1, 5}, rows_for({1, 5}, 3)});
  ASSERT_TRUE(std::holds_alternative<msg::ack>(r));
  auto out = std::get<msg::cache_rows>(s.handle(msg::cache_lookup{1, "00000000000000aa", {5, 3, 7, 1}}));
  EXPECT_EQ(out.item_ids, (std::vector<int32_t>{5, 1}));
  EXPECT_EQ(out.missing_ids, (std::vector<int32_t>{3, 7}));  // ours, not filled
  EXPECT_EQ(at(out.rows, 0, 2), 52.0f);
  EXPECT_EQ(at(out.rows, 1, 0), 10.0f);
  auto cov = s.coverage_of();
  EXPECT_EQ(cov.rows_present, 2u);
  EXPECT_EQ(cov.rows_expected, 5u);
}

TEST(embedding_cache_shard, refuses_lookups_against_another_item_llm_version) {
  embedding_cache_shard s(opts(""));
  s.handle(msg::cache_put{1, "00000000000000aa", {1}, rows_for({1}, 2)});
  auto r = s.handle(msg::cache_lookup{1, "00000000000000bb", {1}});
  ASSERT_TRUE(std::holds_alternative<msg::error>(r));
  EXPECT_NE(std::get<msg::error>(r).message.find("00000000000000bb"), std::string::npos);
  // Items of another shard are refused on put.
  r = s.handle(msg::cache_put{1, "00000000000000aa", {2}, rows_for({2}, 2)});
  EXPECT_TRUE(std::holds_alternative<msg::error>(r));
  // A put with a new version starts a fresh cache.
  s.handle(msg::cache_put{1, "00000000000000bb", {3}, rows_for({3}, 2)});
  EXPECT_EQ(s.coverage_of().rows_present, 1u);
  EXPECT_TRUE(std::holds_alternative<msg::error>(s.handle(msg::cache_lookup{1, "00000000000000aa", {1}})));
}

TEST(embedding_cache_shard, persisted_rows_come_back_after_a_restart_and_damage_costs_only_a_refill) {
  test::temp_dir tmp;
  {
    embedding_cache_shard s(opts(tmp.path()));
    s.handle(msg::cache_put{1, "00000000000000aa", {1, 9}, rows_for({1, 9}, 4)});
    auto done = s.persist({7, "", "test"});
    ASSERT_TRUE(done.ok) << done.error;
  }
  embedding_cache_shard restarted(opts(tmp.path()));
  EXPECT_EQ(restarted.version(), "00000000000000aa");
  auto out = std::get<msg::cache_rows>(restarted.handle(msg::cache_lookup{1, "00000000000000aa", {9}}));
  EXPECT_EQ(at(out.rows, 0, 3), 93.0f);
  // Damage the file: the shard starts empty (refill) instead of failing.
  std::string p = restarted.file_path();
  std::string bytes = test::read_bytes(p);
  bytes[bytes.size() - 1] ^= 1;
  test::write_text(p, bytes);
  embedding_cache_shard after_damage(opts(tmp.path()));
  EXPECT_EQ(after_damage.coverage_of().rows_present, 0u);
  EXPECT_NE(after_damage.status().last_error.find("checksum"), std::string::npos);
}

TEST(embedding_cache_shard, answers_through_the_router_in_process) {
  test::local_actor_env env;
  const auto& router = env.router;
  spawn_embedding_cache_shard(*env.sys, router, opts(""));
  caf::scoped_actor self{*env.sys};
  auto put = make_request("test", "cache-shard-1", msg::cache_put{1, "0000000000000001", {3}, rows_for({3}, 2)}, {});
  auto lookup = make_request("test", "cache-shard-1", msg::cache_lookup{1, "0000000000000001", {3}}, {});
  self->request(router, std::chrono::seconds(5), atom::request_v, put).receive([](const msg::buffer&) {},
                                                                              [](const caf::error& e) {
                                                                                FAIL() << caf::to_string(e);
                                                                              });
  msg::cache_rows rows;
  self->request(router, std::chrono::seconds(5), atom::request_v, lookup)
      .receive(
          [&](const msg::buffer& b) {
            auto got = msg::decode(b);
            ASSERT_TRUE(got.ok());
            ASSERT_TRUE(std::holds_alternative<msg::cache_rows>(got->content)) << msg::to_string(msg::kind_of(got->content));
            rows = std::get<msg::cache_rows>(got->content);
          },
          [](const caf::error& e) { FAIL() << caf::to_string(e); });
  EXPECT_EQ(rows.item_ids, (std::vector<int32_t>{3}));
  EXPECT_EQ(at(rows.rows, 0, 1), 31.0f);
}
