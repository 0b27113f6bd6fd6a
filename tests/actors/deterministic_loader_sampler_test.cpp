// Data loaders and negative samplers behind the router, on the deterministic scheduler (deterministic_fixture.hpp):
// requests in order, out of order, duplicated, from a foreign job or job epoch, past the end of an epoch, and two
// loaders answering in an order the test picks. Every answer must be the pure function of its request that the
// determinism contract promises, whatever the order; a refused request must leave nothing behind.
#include <cstdlib>
#include <map>

#include "actors/data_loader.hpp"
#include "actors/negative_sampler.hpp"
#include "storage/dataset.hpp"
#include "deterministic_fixture.hpp"

using namespace hllm;
using hllm::test::body_as;

namespace {

constexpr job_ref job{11, 3};

std::string tiny() {
  const char* p = std::getenv("HLLM_TINY_DATA");
  return p == nullptr ? "" : p;
}

msg::batch_request batch_req(std::uint32_t epoch, std::uint64_t step, std::uint32_t rank) {
  msg::batch_request r;
  r.at = {1, epoch, step, rank};
  r.world_size = 2;
  r.batch_size = 16;
  r.max_length = 6;
  return r;
}

msg::negatives_request neg_req(std::uint64_t step, std::uint32_t count = 50) {
  msg::negatives_request r;
  r.at = {1, 0, step, 0};
  r.count = count;
  return r;
}

std::int64_t counter(const msg::status_reply& s, const std::string& name) {
  for (const auto& c : s.counters) {
    if (c.name == name) return c.value;
  }
  ADD_FAILURE() << s.name << " has no counter " << name;
  return -1;
}

class deterministic_loader : public hllm::test::deterministic_fixture {
 protected:
  void SetUp() override {
    if (tiny().empty()) GTEST_SKIP() << "HLLM_TINY_DATA is not set (ctest sets it: fixture prepared_tiny)";
    start_router(job);
    loader0 = enroll("loader-0", std::make_unique<data_loader>(data_loader_options{"loader-0", tiny(), 2020}));
    loader1 = enroll("loader-1", std::make_unique<data_loader>(data_loader_options{"loader-1", tiny(), 2020}));
    sampler = enroll("sampler-0",
                     std::make_unique<negative_sampler>(negative_sampler_options{"sampler-0", tiny(), 2020}));
  }

  // What a loader of its own, outside any actor, answers: the reference every routed answer must equal.
  msg::batch reference(const msg::batch_request& r) {
    data_loader direct({"direct", tiny(), 2020});
    return std::get<msg::batch>(direct.batch_of(r));
  }

  msg::status_reply status_of(const std::string& name) {
    ask(name, msg::status_request{}, job);
    run();
    return body_as<msg::status_reply>(next_envelope());
  }

  addressable_actor loader0, loader1, sampler;
};

}  // namespace

TEST_F(deterministic_loader, requests_are_answered_in_the_order_they_were_sent) {
  std::vector<std::uint64_t> ids;
  for (std::uint64_t s = 0; s < 4; ++s) ids.push_back(ask("loader-0", batch_req(0, s, 1), job));
  // The router forwards all four before the loader takes any: they wait in its mailbox in send order.
  for (int i = 0; i < 4; ++i) step(router, "router");
  auto waiting = peek_delivery(loader0);
  ASSERT_TRUE(waiting.has_value());
  EXPECT_EQ(waiting->head.correlation_id, ids[0]);
  EXPECT_FALSE(client_has_mail());
  run();
  for (std::uint64_t s = 0; s < 4; ++s) {
    auto env = next_envelope();
    EXPECT_EQ(env.head.correlation_id, ids[s]);
    EXPECT_EQ(env.head.sender, "loader-0");
    auto b = body_as<msg::batch>(env);
    EXPECT_EQ(b.at.step, s);
    EXPECT_EQ(b.user_ids, reference(batch_req(0, s, 1)).user_ids);
    EXPECT_EQ(b.item_ids, reference(batch_req(0, s, 1)).item_ids);
  }
  EXPECT_FALSE(client_has_mail());
}

TEST_F(deterministic_loader, out_of_order_and_duplicate_requests_get_the_same_bytes_as_in_order_ones) {
  const std::uint64_t order[] = {3, 1, 3, 0, 1};
  for (auto s : order) ask("loader-0", batch_req(0, s, 0), job);
  run();
  std::map<std::uint64_t, msg::batch> first_answer;
  for (auto s : order) {
    auto b = body_as<msg::batch>(next_envelope());
    EXPECT_EQ(b.at.step, s);
    EXPECT_EQ(b.item_ids, reference(batch_req(0, s, 0)).item_ids) << "step " << s;
    auto [it, fresh] = first_answer.emplace(s, b);
    if (!fresh) {
      EXPECT_EQ(it->second, b) << "a duplicate of step " << s << " got another batch";
    }
  }
  EXPECT_EQ(counter(status_of("loader-0"), "batches_served"), 5);
}

TEST_F(deterministic_loader, two_loaders_answering_in_either_order_give_each_step_the_same_batch) {
  auto c0 = ask("loader-0", batch_req(1, 2, 0), job);
  auto c1 = ask("loader-1", batch_req(1, 2, 0), job);
  step(router, "router");
  step(router, "router");
  // loader-1 answers first, after taking a request for another epoch that must leave no trace.
  auto other = ask("loader-1", batch_req(0, 0, 1), job);
  step(router, "router");
  step(loader1, "loader-1");
  step(loader1, "loader-1");
  step(router, "router");
  auto from1 = next_envelope();
  EXPECT_EQ(from1.head.correlation_id, c1);
  EXPECT_FALSE(client_has_mail());
  run();
  auto rest = replies_by_id();
  ASSERT_EQ(rest.size(), 2u);
  ASSERT_EQ(rest.count(c0), 1u);
  ASSERT_EQ(rest.count(other), 1u);
  EXPECT_EQ(rest[c0].head.sender, "loader-0");
  EXPECT_EQ(body_as<msg::batch>(rest[c0]), body_as<msg::batch>(from1));
  EXPECT_EQ(body_as<msg::batch>(rest[other]).item_ids, reference(batch_req(0, 0, 1)).item_ids);
}

TEST_F(deterministic_loader, requests_of_a_foreign_job_or_job_epoch_never_reach_the_loader) {
  ask("loader-0", batch_req(0, 0, 0), job_ref{job.id + 1, job.epoch});
  ask("loader-0", batch_req(0, 0, 0), job_ref{job.id, job.epoch - 1});
  step(router, "router");
  step(router, "router");
  EXPECT_FALSE(has_mail(loader0)) << "a fenced request was forwarded";
  for (int i = 0; i < 2; ++i) {
    auto env = next_envelope();
    ASSERT_TRUE(std::holds_alternative<msg::error>(env.content));
    EXPECT_EQ(std::get<msg::error>(env.content).code, msg::error_code::stale_epoch);
  }
  EXPECT_EQ(counter(status_of("loader-0"), "batches_served"), 0);
  EXPECT_EQ(counter(status_of("loader-0"), "refused"), 0);
}

TEST_F(deterministic_loader, the_epoch_fence_applies_when_the_router_takes_a_request_not_when_it_was_sent) {
  // Two requests under the current job epoch; the job moves to the next epoch between them, before the router has
  // taken the second.
  auto early = ask("loader-0", batch_req(0, 0, 0), job);
  caf::anon_send(router, atom::epoch_v, job.epoch + 1);
  auto late = ask("loader-0", batch_req(0, 1, 0), job);
  step(router, "router");  // the first request: still the old epoch, forwarded
  EXPECT_TRUE(has_mail(loader0));
  step(router, "router");  // the epoch moves
  step(router, "router");  // the second request: refused at once, while the first is still with the loader
  auto refused = next_envelope();
  EXPECT_EQ(refused.head.correlation_id, late);
  ASSERT_TRUE(std::holds_alternative<msg::error>(refused.content));
  EXPECT_EQ(std::get<msg::error>(refused.content).code, msg::error_code::stale_epoch);
  // The first one, taken under the old epoch, is still answered.
  run();
  auto served = next_envelope();
  EXPECT_EQ(served.head.correlation_id, early);
  EXPECT_EQ(body_as<msg::batch>(served).at.step, 0u);
  // A request of the new epoch goes through; one of the old epoch no longer does.
  ask("loader-0", batch_req(0, 1, 0), job_ref{job.id, job.epoch + 1});
  ask("loader-0", batch_req(0, 1, 0), job);
  run();
  auto replies = std::vector<msg::envelope>{next_envelope(), next_envelope()};
  EXPECT_EQ(std::get<msg::error>(replies[0].content).code, msg::error_code::stale_epoch);
  EXPECT_EQ(body_as<msg::batch>(replies[1]).at.step, 1u);
}

TEST_F(deterministic_loader, a_step_past_the_epoch_is_refused_and_leaves_the_next_answers_unchanged) {
  data_loader direct({"direct", tiny(), 2020});
  const auto steps = static_cast<std::uint64_t>(direct.steps_per_epoch(2, 16));
  ASSERT_GT(steps, 1u);
  ask("loader-0", batch_req(0, steps, 0), job);
  ask("loader-0", batch_req(0, steps - 1, 0), job);
  run();
  auto refused = next_envelope();
  ASSERT_TRUE(std::holds_alternative<msg::error>(refused.content));
  EXPECT_EQ(std::get<msg::error>(refused.content).code, msg::error_code::rejected);
  EXPECT_NE(std::get<msg::error>(refused.content).message.find("past the epoch"), std::string::npos);
  EXPECT_EQ(body_as<msg::batch>(next_envelope()).item_ids, reference(batch_req(0, steps - 1, 0)).item_ids);
  auto s = status_of("loader-0");
  EXPECT_EQ(counter(s, "refused"), 1);
  EXPECT_EQ(counter(s, "batches_served"), 1);
}

TEST_F(deterministic_loader, a_loader_refuses_a_body_it_does_not_serve_by_name) {
  ask("loader-0", neg_req(0), job);
  run();
  auto env = next_envelope();
  ASSERT_TRUE(std::holds_alternative<msg::error>(env.content));
  EXPECT_NE(std::get<msg::error>(env.content).message.find("loader-0: unexpected"), std::string::npos);
}

TEST_F(deterministic_loader, sampler_answers_out_of_order_and_duplicate_requests_as_pure_functions) {
  negative_sampler direct({"direct", tiny(), 2020});
  const std::uint64_t order[] = {5, 2, 5};
  for (auto s : order) ask("sampler-0", neg_req(s), job);
  run();
  for (auto s : order) {
    auto n = body_as<msg::negatives>(next_envelope());
    EXPECT_EQ(n.at.step, s);
    EXPECT_EQ(n.item_ids, std::get<msg::negatives>(direct.negatives_of(neg_req(s))).item_ids) << "step " << s;
  }
}

TEST_F(deterministic_loader, sampler_refuses_a_request_that_excludes_every_candidate_then_serves_the_next) {
  negative_sampler direct({"direct", tiny(), 2020});
  auto all = direct.status();
  const auto candidates = counter(all, "candidates");
  ASSERT_GT(candidates, 0);
  // Exclude every item id of the dataset (a superset of the candidates).
  auto greedy = neg_req(0);
  const auto items = storage::dataset::open(tiny()).num_items();
  for (std::int32_t id = 1; id <= items; ++id) greedy.exclude_ids.push_back(id);
  ask("sampler-0", greedy, job);
  ask("sampler-0", neg_req(0), job);
  run();
  auto refused = next_envelope();
  ASSERT_TRUE(std::holds_alternative<msg::error>(refused.content));
  EXPECT_EQ(std::get<msg::error>(refused.content).code, msg::error_code::rejected);
  EXPECT_EQ(body_as<msg::negatives>(next_envelope()).item_ids,
            std::get<msg::negatives>(direct.negatives_of(neg_req(0))).item_ids);
}
