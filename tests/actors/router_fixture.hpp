#pragma once
// A CAF actor system on the real scheduler plus helpers to talk to routers from a test thread.
#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "actors/router.hpp"
#include "messages/codec.hpp"
#include "storage/error.hpp"

namespace hllm::testing {

class router_fixture : public ::testing::Test {
 public:
  router_fixture() {
    configure_actor_system(cfg_);
    sys_ = std::make_unique<caf::actor_system>(cfg_);
    self_ = std::make_unique<caf::scoped_actor>(*sys_);
  }

  ~router_fixture() override {
    for (auto& a : spawned_) {
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    }
    spawned_.clear();
    self_.reset();
    sys_.reset();
  }

  caf::actor_system& sys() { return *sys_; }
  caf::scoped_actor& self() { return *self_; }

  // Every actor spawned through here is stopped when the test ends (the system waits for all actors).
  template <class Handle>
  Handle keep(Handle h) {
    spawned_.push_back(caf::actor_cast<caf::actor>(h));
    return h;
  }

  router_actor router(router_config rc) { return keep(spawn_router(sys(), std::move(rc))); }

  void enroll(const router_actor& r, const std::string& name, const addressable_actor& a) {
    bool ok = false;
    self()->request(r, caf::infinite, atom::enroll_v, name, a).receive([&](bool b) { ok = b; }, [](caf::error&) {});
    ASSERT_TRUE(ok);
  }

  void route(const router_actor& r, const std::string& name, const std::string& endpoint,
             const std::string& key = "") {
    bool ok = false;
    self()
        ->request(r, caf::infinite, atom::route_v, name, endpoint, key)
        .receive([&](bool b) { ok = b; }, [](caf::error&) {});
    ASSERT_TRUE(ok);
  }

  std::vector<std::string> endpoints(const router_actor& r) {
    std::vector<std::string> out;
    self()->request(r, caf::infinite, atom::endpoints_v).receive([&](std::vector<std::string>& e) { out = e; },
                                                                 [](caf::error&) {});
    return out;
  }

  // Sends a request through `r` and decodes the reply envelope (a failed decode fails the test).
  msg::envelope ask(const router_actor& r, const msg::buffer& request) {
    msg::envelope out;
    self()
        ->request(r, std::chrono::seconds(20), atom::request_v, request)
        .receive(
            [&](msg::buffer& reply) {
              auto d = msg::decode(reply);
              EXPECT_TRUE(d.ok()) << d.error().what;
              if (d.ok()) {
                out = std::move(d.value());
              }
            },
            [&](caf::error& e) { ADD_FAILURE() << "router did not answer: " << sys().render(e); });
    return out;
  }

  void tell(const router_actor& r, const msg::buffer& oneway) { self()->send(r, atom::send_v, oneway); }

  // The status_reply of the router or actor at `address`, asked through `r` as `from`.
  msg::status_reply status_of(const router_actor& r, const std::string& address, job_ref job = {},
                              const std::string& from = "probe") {
    auto reply = ask(r, make_request(from, address, msg::status_request{}, job, std::chrono::milliseconds(5000)));
    if (auto* s = std::get_if<msg::status_reply>(&reply.content)) {
      return *s;
    }
    if (auto* e = std::get_if<msg::error>(&reply.content)) {
      ADD_FAILURE() << "status of " << address << ": " << msg::to_string(e->code) << ": " << e->message;
    }
    return {};
  }

  // A router's own status, asked directly (not by address).
  msg::status_reply local_status(const router_actor& r) {
    msg::status_reply out;
    self()->request(r, caf::infinite, atom::status_v).receive(
        [&](msg::buffer& b) {
          auto d = msg::decode(b);
          if (d.ok()) {
            out = std::get<msg::status_reply>(d->content);
          }
        },
        [](caf::error&) {});
    return out;
  }

  static std::int64_t counter(const msg::status_reply& s, const std::string& name) {
    for (const auto& c : s.counters) {
      if (c.name == name) {
        return c.value;
      }
    }
    ADD_FAILURE() << "no counter " << name << " in the status of " << s.name;
    return -1;
  }

  static msg::error_code error_of(const msg::envelope& e) {
    auto* err = std::get_if<msg::error>(&e.content);
    return err ? err->code : msg::error_code::unknown;
  }

  static bool is_error(const msg::envelope& e) { return std::holds_alternative<msg::error>(e.content); }

 private:
  caf::actor_system_config cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<caf::scoped_actor> self_;
  std::vector<caf::actor> spawned_;
};

}  // namespace hllm::testing
