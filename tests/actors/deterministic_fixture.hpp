#pragma once
// Protocol tests on CAF's deterministic scheduler (caf::scheduler::test_coordinator, libcaf-dev): no scheduler
// threads, no sleeps. Every actor message waits in a mailbox until the test lets one actor take exactly one message,
// so the order in which the router, the actors and the clients see each other's messages is the test's to choose,
// and a run is the same every time.
//
// Why not caf/test/dsl.hpp's expect()/allow()/disallow(): they report through CAF's own unit-test engine
// (CAF_CHECK and CAF_REQUIRE call caf::test::engine::current_test(), which is null outside CAF's test main), and our
// tests are GoogleTest. Tried with libcaf-dev 0.17.6: dsl.hpp in a gtest binary needs GTEST_DONT_DEFINE_FAIL (both
// define FAIL) and then crashes (SIGSEGV) in the first expect(); CAF's own runner (unit_test_impl.hpp, no library)
// would be a second test framework with its own ctest registration. The fixture below drives the same coordinator with the same steps the DSL uses
// (test_coordinator::prioritize, peek_at_next_mailbox_element, run_once) and reports with gtest assertions.
//
// The router is the real one (spawn_router, binding nothing, so no message ever comes from its I/O thread) and the
// actors are the real cores in the real CAF wrapper (spawn_addressable). Only the enrollment that spawn_addressable
// waits for is answered by a small desk on its own thread (see enroll()): a blocking wait on a scheduled actor can
// never end on a scheduler that only runs when the test says so. The test then enrolls the handle with the real
// router itself, as one more message it steps through.
#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "actors/addressable.hpp"
#include "actors/router.hpp"
#include "messages/codec.hpp"

namespace hllm::test {

struct deterministic_config : caf::actor_system_config {
  deterministic_config() {
    configure_actor_system(*this);  // the type ids, as in every process
    set("scheduler.policy", caf::atom("testing"));
    set("logger.file-verbosity", caf::atom("quiet"));
    set("logger.console-verbosity", caf::atom("quiet"));
  }
};

class deterministic_fixture : public ::testing::Test {
 protected:
  deterministic_fixture()
      : sys(cfg), self(sys, true), sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())) {}

  ~deterministic_fixture() override {
    for (auto& a : actors_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    if (router) caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    run();
  }

  // The router of this "process": job `job`, at most `window` requests in flight per destination.
  void start_router(job_ref job, std::uint32_t window = 64) {
    router_config rc;
    rc.name = "router";
    rc.bind = {};
    rc.job_id = job.id;
    rc.job_epoch = job.epoch;
    rc.default_window = window;
    router = spawn_router(sys, rc);
    run();
  }

  // Spawns `core` in spawn_addressable's wrapper and enrolls it with the router under `name` (one router step).
  template <class Core>
  addressable_actor enroll(const std::string& name, std::unique_ptr<Core> core) {
    // The desk answers spawn_addressable's enrollment request from a thread of its own (caf::detached), so the
    // blocking wait inside spawn_addressable ends without the test scheduler running.
    auto desk = sys.spawn<caf::detached>([](caf::event_based_actor* desk_self) -> caf::behavior {
      return {[desk_self](atom::enroll, const std::string&, const addressable_actor&) {
        desk_self->quit();
        return true;
      }};
    });
    auto handle = spawn_addressable(sys, caf::actor_cast<router_actor>(desk), name, std::move(core));
    self->request(router, caf::infinite, atom::enroll_v, name, handle);
    run();
    take_reply<bool>();
    actors_.push_back(caf::actor_cast<caf::actor>(handle));
    return handle;
  }

  // Every actor takes every message it has, until all mailboxes are empty.
  std::size_t run() {
    std::size_t n = 0;
    while (sched.try_run_once()) ++n;
    return n;
  }

  // Lets `whom` take exactly its next message. Fails the test when it has none.
  template <class Handle>
  void step(const Handle& whom, const char* what = "") {
    ASSERT_TRUE(sched.prioritize(whom)) << "no message waits for " << what;
    sched.run_once();
  }

  // Whether `whom` has a message waiting.
  template <class Handle>
  bool has_mail(const Handle& whom) {
    return caf::actor_cast<caf::abstract_actor*>(whom)->peek_at_next_mailbox_element() != nullptr;
  }

  // The envelope of the next (atom::deliver, buffer) waiting for `whom`, decoded, without taking it out.
  template <class Handle>
  std::optional<msg::envelope> peek_delivery(const Handle& whom) {
    auto* e = caf::actor_cast<caf::abstract_actor*>(whom)->peek_at_next_mailbox_element();
    if (e == nullptr || !e->content().template match_elements<atom::deliver, msg::buffer>()) return std::nullopt;
    auto env = msg::decode(e->content().template get_as<msg::buffer>(1));
    if (!env) return std::nullopt;
    return std::move(env).value();
  }

  // A client request as a local actor sends it: (atom::request, envelope) to the router, answered to `self`.
  // Returns the request's correlation id. Nothing runs yet.
  std::uint64_t ask(const std::string& to, msg::body content, job_ref job, const std::string& from = "client") {
    auto b = make_request(from, to, std::move(content), job);
    auto head = msg::read_header(b);
    self->request(router, caf::infinite, atom::request_v, b);
    return head.ok() ? head->head.correlation_id : 0;
  }

  // The next message in the client's mailbox, which must be a single T; taken out.
  template <class T>
  T take_reply() {
    auto* e = self->peek_at_next_mailbox_element();
    if (e == nullptr) {
      ADD_FAILURE() << "the client has no reply waiting";
      return T{};
    }
    if (!e->content().template match_elements<T>()) {
      ADD_FAILURE() << "the client's next message is " << caf::to_string(e->content());
      self->dequeue();
      return T{};
    }
    T out = e->content().template get_as<T>(0);
    self->dequeue();
    return out;
  }

  // The next reply envelope to the client, decoded.
  msg::envelope next_envelope() {
    auto b = take_reply<msg::buffer>();
    auto env = msg::decode(b);
    if (!env) {
      ADD_FAILURE() << "reply does not decode: " << env.error().what;
      return {};
    }
    return std::move(env).value();
  }

  bool client_has_mail() { return self->peek_at_next_mailbox_element() != nullptr; }

  // Every reply waiting for the client, by correlation id (for requests to several receivers, whose answers come
  // back in the order the receivers happened to run).
  std::map<std::uint64_t, msg::envelope> replies_by_id() {
    std::map<std::uint64_t, msg::envelope> out;
    while (client_has_mail()) {
      auto env = next_envelope();
      out[env.head.correlation_id] = std::move(env);
    }
    return out;
  }

  deterministic_config cfg;
  caf::actor_system sys;
  caf::scoped_actor self;
  caf::scheduler::test_coordinator& sched;
  router_actor router;

 private:
  std::vector<caf::actor> actors_;
};

// The body of a reply envelope as T; fails the test (and returns T{}) when it is something else.
template <class T>
T body_as(const msg::envelope& env) {
  if (const auto* t = std::get_if<T>(&env.content)) return *t;
  if (const auto* e = std::get_if<msg::error>(&env.content)) {
    ADD_FAILURE() << "error reply: " << e->message;
  } else {
    ADD_FAILURE() << "reply is a " << msg::to_string(msg::kind_of(env.content));
  }
  return T{};
}

}  // namespace hllm::test
