#pragma once
// Internal to the router (router.cpp, router_state.cpp): what one router actor holds (address book, sockets towards
// remote routers, requests in flight with their deadlines, credit, counters) and the counters' names. Actor code
// includes actors/router.hpp, never this.
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <variant>

#include "actors/curve_keys.hpp"
#include "actors/router.hpp"
#include "actors/router_io.hpp"

namespace hllm::router_internal {

using std::chrono::milliseconds;

// What the router counts (its status_reply lists them by these names).
enum class stat : std::size_t {
  requests,           // requests accepted from local actors
  oneway,             // one-way envelopes accepted from local actors
  delivered_local,    // envelopes handed to a local actor
  sent_remote,        // envelopes written to a remote router
  received_remote,    // envelopes read from the network that passed validation
  replies_matched,    // remote replies matched to a waiting request
  timeouts,
  orphan_replies,     // replies nobody waits for (late, or spoofed)
  malformed,
  version_mismatch,
  unknown_body,
  too_large,
  unknown_receiver,
  stale_epoch,
  overloaded,
  send_failed,        // ZeroMQ refused the bytes (high-water mark reached)
  receiver_failed,    // a local receiver died or did not answer
  count_,
};
constexpr std::array<const char*, static_cast<std::size_t>(stat::count_)> stat_names = {
    "requests",      "oneway",           "delivered_local", "sent_remote",      "received_remote",
    "replies_matched", "timeouts",       "orphan_replies",  "malformed",        "version_mismatch",
    "unknown_body",  "too_large",        "unknown_receiver", "stale_epoch",     "overloaded",
    "send_failed",   "receiver_failed"};

// The counter a failed read of an envelope is counted under.
stat stat_for(msg::error_code code);

// Wall clock, ns since the Unix epoch.
std::int64_t now_ns();

struct local_route {
  addressable_actor handle;
};
struct remote_route {
  std::string endpoint;
  std::string server_key;  // Z85 public key of the remote router (CURVE); empty when CURVE is off
};
using route = std::variant<local_route, remote_route>;

// Every request the router waits for has one deadline in router_state::deadlines; one timer message (the
// earliest deadline) serves them all. A CAF request timeout or delayed_send per request costs two wake-ups of
// CAF's clock thread per message, 16% of the CPU of the in-process benchmark.
using steady = std::chrono::steady_clock;
struct deadline_ref {
  bool remote;        // true: key is a correlation id in `pending`; false: a ticket in `local_waits`
  std::uint64_t key;
};
using deadline_map = std::multimap<steady::time_point, deadline_ref>;

struct pending_request {
  caf::typed_response_promise<msg::buffer> promise;
  msg::header head;
  deadline_map::iterator deadline;
};

// A request handed to a local actor (caf::infinite: the router's deadline answers for it).
struct local_wait {
  std::string dest;
  msg::header head;
  std::function<void(msg::buffer)> on_reply;
  deadline_map::iterator deadline;
};

struct router_state {
  static inline const char* name = "hllm.router";

  router_config cfg;
  std::shared_ptr<zmq::context_t> context;
  std::shared_ptr<detail::router_io> io;
  curve_keypair keys;  // empty when CURVE is off
  std::unordered_map<std::string, route> book;
  std::unordered_map<std::string, std::unique_ptr<zmq::socket_t>> dealers;  // by remote endpoint
  std::unordered_map<std::uint64_t, pending_request> pending;                // remote requests by correlation id
  std::unordered_map<std::uint64_t, local_wait> local_waits;                 // local requests by ticket
  std::unordered_map<std::string, std::uint32_t> abandoned;                  // timed out, the receiver still has it
  deadline_map deadlines;
  std::uint64_t next_ticket = 1;
  std::int64_t timer_at_ns = -1;  // the deadline the earliest timer message was sent for; -1: none
  std::unordered_map<std::string, std::uint32_t> in_flight;                  // by destination name
  std::unordered_map<std::string, std::uint32_t> windows;                    // granted credit by destination
  std::array<std::uint64_t, static_cast<std::size_t>(stat::count_)> stats{};
  detail::drop_log drops{"router"};
  std::string last_error;
  std::int64_t last_error_at_ns = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  ~router_state();

  void count(stat s) { ++stats[static_cast<std::size_t>(s)]; }

  void drop(stat s, const std::string& reason, const std::string& detail) {
    count(s);
    last_error = reason + ": " + detail;
    last_error_at_ns = now_ns();
    drops.note(reason, detail);
  }

  std::uint32_t window(const std::string& dest) const {
    auto it = windows.find(dest);
    return it == windows.end() ? cfg.default_window : it->second;
  }

  bool in_epoch(const msg::header& h) const { return h.job_id == cfg.job_id && h.job_epoch == cfg.job_epoch; }

  milliseconds timeout_of(const msg::header& h) const {
    return h.timeout_ms == 0 ? cfg.default_timeout : milliseconds(h.timeout_ms);
  }

  // The DEALER socket towards a remote router, created on first use. ZeroMQ connects in the background and
  // queues up to the high-water mark meanwhile, so a peer that starts later still gets its messages.
  zmq::socket_t& dealer(const remote_route& r);

  // Writes the envelope's bytes to the remote router; false when ZeroMQ refuses (high-water mark).
  bool send_remote(const remote_route& r, const msg::buffer& b);

  msg::status_reply status() const;
};

using router_pointer = router_actor::stateful_pointer<router_state>;

}  // namespace hllm::router_internal
