#pragma once
// The client side of the protocol, in one place: how an actor or a coordinator thread asks another actor, what it
// gets back, and when it asks again.
//
//   send_request<Request>  sends a request through the router and returns a pending<Request>: several may be in
//                          flight; each .receive() waits for its own reply (in any order), .drop() discards it.
//   ask<Request>           send_request, receive, and ask again as the retry_policy says.
//   result_of<Request>     the one function that turns what came back (a reply buffer or a CAF error) into an
//                          ask_result<Request>: the reply body messages/protocol.hpp declares for the request, or
//                          an ask_failure (code + text).
//   to_error               an ask_failure as an hllm::error, its category from the one table errc_of (code ->
//                          errc), for clients that give up by throwing. The receiving side's table (errc -> code)
//                          is code_of in actors/addressable.hpp; docs/protocol.md, "Client calls and errors".
//
// receive() and ask() block the calling thread: call them from a scoped_actor's thread (a coordinator, the step
// feed, a detached actor's core), never from an event-based actor's handler.
#include <caf/scoped_actor.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>

#include <spdlog/spdlog.h>

#include "actors/router.hpp"
#include "messages/codec.hpp"
#include "messages/protocol.hpp"
#include "storage/error.hpp"

namespace hllm {

// ---- failures ----

// Why a request did not get its reply: the error body's code and text; `rejected` for a reply of another kind;
// `unknown` when nothing readable came back (an undecodable reply, a CAF error).
struct ask_failure {
  msg::error_code code = msg::error_code::unknown;
  std::string message;
};

// "code: text", as clients log and report a failure.
inline std::string describe(const ask_failure& f) { return std::string(msg::to_string(f.code)) + ": " + f.message; }

// The hllm::error category a client reports for a failure code: one fixed errc per code. The codes a receiver sends
// for a thrown hllm::error (code_of in actors/addressable.hpp) come back as the errc that was thrown for io, format,
// version and mismatch; the wire has no code of its own for checksum (travels as malformed: format), invalid_input
// and not_found (travel as rejected: mismatch).
constexpr errc errc_of(msg::error_code c) {
  switch (c) {
    case msg::error_code::malformed: return errc::format;          // not a valid envelope
    case msg::error_code::too_large: return errc::format;          // over the message size limit
    case msg::error_code::version_mismatch: return errc::version;  // a schema version the reader does not accept
    case msg::error_code::unknown_body: return errc::version;      // a body kind of a newer writer
    case msg::error_code::unknown_receiver: return errc::not_found;  // no actor or route of that name
    case msg::error_code::stale_epoch: return errc::mismatch;      // sender and router disagree on the job epoch
    case msg::error_code::rejected: return errc::mismatch;         // the receiver refused what it was asked
    case msg::error_code::unknown:                                 // no readable answer
    case msg::error_code::timeout:                                 // no answer in time
    case msg::error_code::overloaded:                              // no credit, or a full socket
    case msg::error_code::internal: return errc::io;               // the receiver failed or died while handling it
  }
  return errc::io;
}

// The failure as an hllm::error of category errc_of(f.code), saying "<context>: <code>: <text>".
inline error to_error(const ask_failure& f, const std::string& context) {
  return error(errc_of(f.code), context + ": " + describe(f));
}

// ---- the retry rules ----

// Failures a restarted receiver cures: no answer in time, nobody there yet, a connection being re-established,
// a reply that could not be read. The rule ask() retries by.
constexpr bool transient(msg::error_code c) {
  return c == msg::error_code::timeout || c == msg::error_code::unknown_receiver ||
         c == msg::error_code::overloaded || c == msg::error_code::unknown;
}

// Which failures a policy asks again after.
enum class retry_on {
  transient,    // transient(code): the same receiver, later (the default)
  not_refused,  // anything but `rejected`: the receiver itself refusing cannot change, its process dying can
  any,          // any failure: the next of several receivers that answer alike is asked (the step feed's loaders)
};

struct retry_policy {
  retry_on on = retry_on::transient;
  int attempts = 0;                          // at most this many attempts in all (0: not bounded by count)
  std::chrono::milliseconds retry_for{0};    // keep asking this long after the first send (0: not bounded by time)
                                             // both 0: one attempt
  std::chrono::milliseconds pause{500};      // between attempts (ask() sleeps it; a window client may not)
  std::chrono::milliseconds timeout{0};      // each attempt's timeout_ms (0: the router's default)
  std::string log_as = "ask";                // the prefix of the warning ask() logs before each new attempt

  // Whether to ask again after `f`, the failure of attempt number `made` (1-based) of a request first sent at
  // `first_sent`.
  bool asks_again(const ask_failure& f, int made, std::chrono::steady_clock::time_point first_sent) const {
    if (attempts <= 0 && retry_for.count() <= 0) return false;
    if (attempts > 0 && made >= attempts) return false;
    if (retry_for.count() > 0 && std::chrono::steady_clock::now() - first_sent >= retry_for) return false;
    switch (on) {
      case retry_on::transient: return transient(f.code);
      case retry_on::not_refused: return f.code != msg::error_code::rejected;
      case retry_on::any: return true;
    }
    return false;
  }
};

// ---- results ----

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

// What came back for a Request, typed: the reply body, the error body as a failure, a body of another kind as
// `rejected`, an undecodable buffer or a CAF error (no reply at all) as `unknown`.
template <class Request>
ask_result<Request> result_of(caf::expected<msg::buffer> reply) {
  using reply_type = msg::reply_t<Request>;
  if (!reply) return ask_failure{msg::error_code::unknown, caf::to_string(reply.error())};
  auto env = msg::decode(*reply);
  if (!env) return ask_failure{msg::error_code::unknown, "unreadable reply: " + env.error().what};
  if (auto* body = std::get_if<reply_type>(&env->content)) return std::move(*body);
  if (auto* e = std::get_if<msg::error>(&env->content)) return ask_failure{e->code, std::move(e->message)};
  return ask_failure{msg::error_code::rejected, std::string("answered ") + msg::to_string(msg::kind_of(env->content)) +
                                                    " to " + msg::to_string(msg::kind_of_type<Request>())};
}

// ---- calls ----

// A request in flight. receive() or drop() once; the reply of a request never received waits in the sender's
// mailbox until the sender ends.
template <class Request>
class pending {
 public:
  using handle_type = decltype(std::declval<caf::scoped_actor&>()->request(
      std::declval<const router_actor&>(), caf::duration{}, atom::request_v, std::declval<msg::buffer>()));

  explicit pending(handle_type h) : handle_(std::move(h)) {}

  // Waits for the reply.
  ask_result<Request> receive() {
    std::optional<ask_result<Request>> out;
    handle_.receive([&](const msg::buffer& b) { out.emplace(result_of<Request>(b)); },  // a shared, immutable buffer
                    [&](const caf::error& e) { out.emplace(result_of<Request>(e)); });
    return std::move(*out);
  }

  // Waits for the reply and drops it (a request nobody needs any more, e.g. of an epoch that ended).
  void drop() {
    handle_.receive([](const msg::buffer&) {}, [](const caf::error&) {});
  }

 private:
  handle_type handle_;
};

// Sends `request` from `from` to `to` through `router`. `timeout`: the router's deadline for the reply (timeout_ms;
// 0: the router's default), after which the router answers `timeout`. `backstop`: a CAF deadline for the router's
// own answer, for callers that must not wait forever on a router that stopped (infinite: the router answers).
template <class Request>
pending<Request> send_request(caf::scoped_actor& self, const router_actor& router, const std::string& from,
                              job_ref job, const std::string& to, const Request& request,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(0),
                              caf::duration backstop = caf::duration{caf::infinite}) {
  static_assert(sizeof(msg::reply_t<Request>) > 0, "not a request of the protocol (messages/protocol.hpp)");
  return pending<Request>(
      self->request(router, backstop, atom::request_v, make_request(from, to, request, job, timeout)));
}

// Sends `request` and waits for the reply, asking again as `policy` says (sleeping `pause` between attempts).
template <class Request>
ask_result<Request> ask(caf::scoped_actor& self, const router_actor& router, const std::string& from, job_ref job,
                        const std::string& to, const Request& request, const retry_policy& policy = {}) {
  const auto first_sent = std::chrono::steady_clock::now();
  for (int made = 1;; ++made) {
    auto r = send_request(self, router, from, job, to, request, policy.timeout).receive();
    if (r.ok() || !policy.asks_again(r.failure(), made, first_sent)) return r;
    spdlog::warn("{}: {} failed ({}); asking again", policy.log_as, to, r.failure().message);
    std::this_thread::sleep_for(policy.pause);
  }
}

}  // namespace hllm
