#pragma once
// The per-process router: one CAF actor that owns this process's ZeroMQ sockets and the address book
// (actor name -> local CAF handle, or the endpoint of the remote process's router). Actor code sends an encoded
// envelope to the router and never learns whether the receiver is local: local delivery hands the same immutable
// buffer to the receiver's mailbox; remote delivery writes the same bytes to a ZeroMQ socket.
//
// Delivery rules (docs/protocol.md has the full text):
// - (atom::request, buffer) -> reply buffer. The envelope's correlation id (non-zero) matches the reply; its
//   timeout_ms (0: router_config::default_timeout) bounds the wait. Every failure (timeout, unknown receiver,
//   no credit, stale epoch, receiver error) comes back as a reply envelope whose body is msg::error.
// - (atom::send, buffer): one-way. Dropped, counted and logged when it cannot be delivered.
// - Credit: at most `window` requests per destination are in flight through this router (default_window, or
//   what the destination granted with a msg::credit body); over it a request fails at once with `overloaded`.
//   Nothing queues without bound: ZeroMQ high-water marks bound the sockets, the I/O thread stops reading when
//   the router actor is behind, local receivers get at most `window` messages in flight.
// - Fencing: an envelope whose job id or job epoch differs from the router's is dropped (error reply to requests).
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "messages/codec.hpp"

namespace caf {
class actor_system;
class actor_system_config;
}  // namespace caf

namespace zmq {
class context_t;
}

namespace hllm {

struct curve_options {
  // This process's key pair: the `<base>_secret` file written by `hllm keygen`. Empty: CURVE off.
  std::string key_file;
  // Public key files (either file of a pair) of the peers allowed to connect. Empty: only holders of this
  // process's own key pair (the simple setup: one key pair per job, copied to every host).
  std::vector<std::string> authorized_key_files;
};

struct router_config {
  std::string name = "router";                           // the router's own address: it answers status_request
  std::uint64_t job_id = 0;                              // envelopes of another job are fenced out
  std::uint32_t job_epoch = 0;                           // ... and of another epoch (atom::epoch moves it)
  std::vector<std::string> bind = {"tcp://127.0.0.1:*"};  // ZeroMQ endpoints (tcp, ipc, inproc); none: local only
  msg::limits limits;                                    // max message size, nesting limit for network input
  std::uint32_t default_window = 64;                     // requests in flight per destination
  std::int64_t max_inbound_queue = 1024;                 // network frames waiting for the router actor
  int socket_hwm = 1000;                                 // ZeroMQ high-water mark of every socket
  std::chrono::milliseconds default_timeout{30000};      // for requests whose envelope says timeout_ms = 0
  std::uint32_t max_abandoned = 1024;                    // timed-out requests a local receiver may still hold
  curve_options curve;
  // Share one context between routers of a process to use inproc:// endpoints between them; null: own context.
  std::shared_ptr<zmq::context_t> context;
};

// Registers the hllm type-id block and caps CAF's scheduler threads (STACK.md pitfalls 2 and 5). Call it on
// every actor_system_config before creating the system. It also keeps glibc from mmapping every large message
// buffer (mallopt; process-wide, see router.cpp).
void configure_actor_system(caf::actor_system_config& cfg, std::size_t max_threads = 2);

// Binds the sockets, then spawns the router. Throws hllm::error when an endpoint cannot be bound or a key file
// is unreadable.
router_actor spawn_router(caf::actor_system& sys, router_config cfg);

// Routes `name` to the remote router at `endpoint` (atom::route; `key`: the peer's CURVE public key, "" for the
// router's own) and waits until it is in the address book. Throws hllm::error naming `name` on failure.
void add_route(caf::actor_system& sys, const router_actor& router, const std::string& name,
               const std::string& endpoint, const std::string& key = "");

// ---- helpers for actor code ----

// The job an actor belongs to: stamped on every envelope it sends.
struct job_ref {
  std::uint64_t id = 0;
  std::uint32_t epoch = 0;
};

// A request envelope with a fresh correlation id.
msg::buffer make_request(const std::string& from, const std::string& to, msg::body content, job_ref job,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// A one-way envelope (correlation id 0).
msg::buffer make_oneway(const std::string& from, const std::string& to, msg::body content, job_ref job);

// Why a reply envelope is not a success: empty when it decodes and its body is not an error, else the reason.
std::string reply_failure(const msg::buffer& reply);

// The encoded reply to a request this actor received. Call it qualified (hllm::make_reply): unqualified, argument-
// dependent lookup also finds msg::make_reply, which returns the unencoded envelope.
msg::buffer make_reply(const msg::header& request, msg::body content);

}  // namespace hllm
