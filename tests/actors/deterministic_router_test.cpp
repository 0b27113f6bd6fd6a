// The router's delivery rules (actors/router.hpp) on the deterministic scheduler (deterministic_fixture.hpp): credit
// windows, unknown receivers, a receiver that dies with requests queued, and replies matched to their requests. The
// receiver is a real embedding-cache shard; the test holds it back or lets it run to create each situation.
#include <cstring>

#include "actors/embedding_cache_shard.hpp"
#include "deterministic_fixture.hpp"

using namespace hllm;
using hllm::test::body_as;

namespace {

constexpr job_ref job{5, 0};

std::unique_ptr<embedding_cache_shard> shard_core() {
  embedding_cache_shard_options o;
  o.name = "cache-shard-0";
  o.shard = 0;
  o.shard_count = 1;
  o.num_items = 4;
  return std::make_unique<embedding_cache_shard>(o);
}

msg::error_code error_of(const msg::envelope& env) {
  const auto* e = std::get_if<msg::error>(&env.content);
  if (e == nullptr) {
    ADD_FAILURE() << "expected an error reply, got " << msg::to_string(msg::kind_of(env.content));
    return msg::error_code::unknown;
  }
  return e->code;
}

std::int64_t router_counter(const msg::status_reply& s, const std::string& name) {
  for (const auto& c : s.counters) {
    if (c.name == name) return c.value;
  }
  ADD_FAILURE() << "the router has no counter " << name;
  return -1;
}

class deterministic_router : public hllm::test::deterministic_fixture {
 protected:
  void start(std::uint32_t window) {
    start_router(job, window);
    shard = enroll("cache-shard-0", shard_core());
  }
  msg::status_reply router_status() {
    ask("router", msg::status_request{}, job);
    run();
    return body_as<msg::status_reply>(next_envelope());
  }
  addressable_actor shard;
};

}  // namespace

TEST_F(deterministic_router, a_request_over_the_window_is_refused_at_once_and_the_next_goes_once_one_is_answered) {
  start(2);
  auto a = ask("cache-shard-0", msg::coverage_request{}, job);
  auto b = ask("cache-shard-0", msg::coverage_request{}, job);
  auto c = ask("cache-shard-0", msg::coverage_request{}, job);
  for (int i = 0; i < 3; ++i) step(router, "router");
  // Two are with the shard (it has not run); the third was answered by the router itself.
  auto over = next_envelope();
  EXPECT_EQ(over.head.correlation_id, c);
  EXPECT_EQ(error_of(over), msg::error_code::overloaded);
  EXPECT_FALSE(client_has_mail());
  // The shard answers one; once the router has its reply, there is room for one more.
  step(shard, "cache-shard-0");
  step(router, "router");
  EXPECT_EQ(next_envelope().head.correlation_id, a);
  auto d = ask("cache-shard-0", msg::coverage_request{}, job);
  step(router, "router");
  EXPECT_FALSE(client_has_mail()) << "the fourth request was refused although a slot was free";
  run();
  EXPECT_EQ(next_envelope().head.correlation_id, b);
  auto last = next_envelope();
  EXPECT_EQ(last.head.correlation_id, d);
  EXPECT_TRUE(std::holds_alternative<msg::coverage>(last.content));
  EXPECT_EQ(router_counter(router_status(), "overloaded"), 1);
}

TEST_F(deterministic_router, a_request_to_a_name_nobody_enrolled_gets_unknown_receiver) {
  start(64);
  ask("cache-shard-9", msg::coverage_request{}, job);
  step(router, "router");
  auto env = next_envelope();
  EXPECT_EQ(error_of(env), msg::error_code::unknown_receiver);
  EXPECT_NE(std::get<msg::error>(env.content).message.find("cache-shard-9"), std::string::npos);
  EXPECT_FALSE(has_mail(shard));
}

TEST_F(deterministic_router, a_request_forwarded_to_a_receiver_that_just_died_fails_and_the_name_leaves_the_book) {
  start(64);
  // The shard stops before the router has taken the request, and the router learns of it (its down message) only
  // after it has forwarded the request to the dead handle.
  auto a = ask("cache-shard-0", msg::coverage_request{}, job);
  caf::anon_send_exit(shard, caf::exit_reason::user_shutdown);
  step(shard, "cache-shard-0");  // takes the exit message and terminates
  step(router, "router");        // the request: the name is still in the book
  run();
  auto failed = next_envelope();
  EXPECT_EQ(failed.head.correlation_id, a);
  EXPECT_EQ(error_of(failed), msg::error_code::internal) << "the request must get an answer, never silence";
  EXPECT_NE(std::get<msg::error>(failed.content).message.find("cache-shard-0 did not answer"), std::string::npos);
  // The down message has been taken meanwhile: the name is gone, a new request is refused at once.
  ask("cache-shard-0", msg::coverage_request{}, job);
  step(router, "router");
  EXPECT_EQ(error_of(next_envelope()), msg::error_code::unknown_receiver);
  EXPECT_EQ(router_counter(router_status(), "receiver_failed"), 1);
}

TEST_F(deterministic_router, a_new_enrollment_under_the_same_name_takes_over_the_address) {
  start(64);
  auto put_rows = [] {
    msg::tensor t;
    t.type = msg::dtype::f32;
    t.shape = {1, 1};
    float one = 1.0f;
    t.data.resize(sizeof one);
    std::memcpy(t.data.data(), &one, sizeof one);
    return msg::cache_put{0, "00000000000000aa", {3}, t};
  };
  ask("cache-shard-0", put_rows(), job);
  run();
  EXPECT_TRUE(std::holds_alternative<msg::ack>(next_envelope().content));
  // A restarted shard (empty, memory only) enrolls under the same name: later requests reach it, not the old one.
  auto old = shard;
  shard = enroll("cache-shard-0", shard_core());
  ask("cache-shard-0", msg::coverage_request{}, job);
  step(router, "router");
  EXPECT_TRUE(has_mail(shard));
  EXPECT_FALSE(has_mail(old));
  run();
  EXPECT_EQ(body_as<msg::coverage>(next_envelope()).rows_present, 0u);
}

TEST_F(deterministic_router, a_credit_body_from_a_receiver_sets_its_window_for_the_requests_that_follow) {
  start(64);
  // The shard grants a window of one (a one-way credit body, consumed by the router).
  self->send(router, atom::send_v, make_oneway("cache-shard-0", "router", msg::credit{1}, job));
  auto a = ask("cache-shard-0", msg::coverage_request{}, job);
  auto b = ask("cache-shard-0", msg::coverage_request{}, job);
  for (int i = 0; i < 3; ++i) step(router, "router");
  auto refused = next_envelope();
  EXPECT_EQ(refused.head.correlation_id, b);
  EXPECT_EQ(error_of(refused), msg::error_code::overloaded);
  run();
  EXPECT_EQ(next_envelope().head.correlation_id, a);
  // A larger grant lets two through at once.
  self->send(router, atom::send_v, make_oneway("cache-shard-0", "router", msg::credit{2}, job));
  ask("cache-shard-0", msg::coverage_request{}, job);
  ask("cache-shard-0", msg::coverage_request{}, job);
  for (int i = 0; i < 3; ++i) step(router, "router");
  EXPECT_FALSE(client_has_mail());
  run();
  EXPECT_TRUE(std::holds_alternative<msg::coverage>(next_envelope().content));
  EXPECT_TRUE(std::holds_alternative<msg::coverage>(next_envelope().content));
}

// The router's deadlines run on the actor clock, so the test advances time instead of sleeping.
TEST_F(deterministic_router, a_receiver_that_answers_after_the_deadline_leaves_the_client_with_a_timeout) {
  start(64);
  auto b = make_request("client", "cache-shard-0", msg::coverage_request{}, job, std::chrono::milliseconds(50));
  auto id = msg::read_header(b)->head.correlation_id;
  self->request(router, caf::infinite, atom::request_v, b);
  step(router, "router");
  ASSERT_TRUE(has_mail(shard));
  EXPECT_EQ(sched.advance_time(std::chrono::milliseconds(49)), 0u);  // nothing due before the deadline
  EXPECT_FALSE(has_mail(router));
  EXPECT_EQ(sched.advance_time(std::chrono::milliseconds(1)), 1u);
  step(router, "router");  // the deadline passes while the shard still holds the request
  auto late = next_envelope();
  EXPECT_EQ(late.head.correlation_id, id);
  ASSERT_TRUE(std::holds_alternative<msg::error>(late.content));
  EXPECT_EQ(std::get<msg::error>(late.content).code, msg::error_code::timeout);
  run();  // the shard answers after all: dropped as an orphan, the client hears nothing more
  EXPECT_FALSE(client_has_mail());
  auto s = router_status();
  EXPECT_EQ(router_counter(s, "timeouts"), 1);
  EXPECT_EQ(router_counter(s, "orphan_replies"), 1);
}
