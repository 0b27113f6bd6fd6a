#pragma once
// One typed, blocking client call: ask<Request>(...) sends a request through the router and returns the reply
// body the protocol table (messages/protocol.hpp) declares for it, or a typed failure. The retry policy lives
// here, once: failures that a restarted receiver cures (transient()) are asked again until `retry_for` has
// passed; anything else returns at once.
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <spdlog/spdlog.h>
#include <string>
#include <thread>
#include <variant>

#include "actors/router.hpp"
#include "messages/codec.hpp"
#include "messages/protocol.hpp"

namespace hllm {

// Failures a restarted receiver cures: no answer in time, nobody there yet, a connection being re-established,
// a reply that could not be read.
inline bool transient(msg::error_code c) {
  return c == msg::error_code::timeout || c == msg::error_code::unknown_receiver ||
         c == msg::error_code::overloaded || c == msg::error_code::unknown;
}

struct retry_policy {
  std::chrono::milliseconds retry_for{0};    // keep asking after transient failures this long (0: one attempt)
  std::chrono::milliseconds pause{500};      // between attempts
  std::chrono::milliseconds timeout{0};      // each attempt's timeout_ms (0: the router's default)
  std::string log_as = "ask";                // the prefix of the warning logged before each new attempt
};

// Why a request did not get its reply: the error body's code and text, or `rejected` for a reply of another kind.
struct ask_failure {
  msg::error_code code = msg::error_code::unknown;
  std::string message;
};

template <class Request>
class ask_result {
 public:
  using reply_type = msg::reply_t<Request>;
  ask_result(reply_type r) : state_(std::move(r)) {}  // NOLINT: implicit on purpose
  ask_result(ask_failure f) : state_(std::move(f)) {}  // NOLINT
  bool ok() const { return state_.index() == 0; }
  reply_type& value() { return std::get<0>(state_); }
  const ask_failure& failure() const { return std::get<1>(state_); }

 private:
  std::variant<reply_type, ask_failure> state_;
};

// Sends `request` from `from` to `to` and waits for the reply, asking again after transient failures as
// `policy` says. Blocks the calling thread (a scoped_actor's); for actor code that must not block, see step_feed.
template <class Request>
ask_result<Request> ask(caf::scoped_actor& self, const router_actor& router, const std::string& from, job_ref job,
                        const std::string& to, const Request& request, const retry_policy& policy = {}) {
  using reply_type = msg::reply_t<Request>;
  const auto give_up = std::chrono::steady_clock::now() + policy.retry_for;
  while (true) {
    msg::body out = msg::error{msg::error_code::unknown, "no reply"};
    self->request(router, caf::infinite, atom::request_v, make_request(from, to, request, job, policy.timeout))
        .receive(
            [&](const msg::buffer& b) {
              auto env = msg::decode(b);
              if (env) out = std::move(env->content);
            },
            [&](const caf::error& e) { out = msg::error{msg::error_code::unknown, caf::to_string(e)}; });
    if (auto* reply = std::get_if<reply_type>(&out)) return std::move(*reply);
    const auto* e = std::get_if<msg::error>(&out);
    if (e == nullptr) {
      return ask_failure{msg::error_code::rejected, std::string("answered ") + msg::to_string(msg::kind_of(out)) +
                                                        " to " + msg::to_string(msg::kind_of_type<Request>())};
    }
    if (!transient(e->code) || std::chrono::steady_clock::now() >= give_up) return ask_failure{e->code, e->message};
    spdlog::warn("{}: {} failed ({}); asking again", policy.log_as, to, e->message);
    std::this_thread::sleep_for(policy.pause);
  }
}

}  // namespace hllm
