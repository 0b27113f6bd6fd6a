#pragma once
// The router's I/O thread: the only thread that touches the bound (inbound) ZeroMQ ROUTER socket. It polls that
// socket, the CURVE authentication (ZAP) socket and a stop socket; each inbound frame becomes an aligned
// msg::buffer, and the frames read in one wake-up go to the router actor together, through a callback (one CAF
// message, one wake-up of a CAF worker, for a burst of small frames). It never decodes: the router actor does.
//
// Why a thread: a ZeroMQ socket must stay on one thread and a blocking poll cannot run inside a CAF actor.
// Outbound sockets (one DEALER per remote endpoint) need no polling, so the router actor owns them itself.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "messages/buffer.hpp"

namespace zmq {
class context_t;
class socket_t;
}  // namespace zmq

namespace hllm::detail {

// Counters the I/O thread updates and the router reads for its status.
struct io_counters {
  std::atomic<std::uint64_t> frames_in{0};
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> frames_shared{0};     // handed on without a copy (large and already aligned)
  std::atomic<std::uint64_t> inbound_batches{0};   // hand-overs to the router actor (frames_in / this: per wake-up)
  std::atomic<std::uint64_t> bad_frames{0};        // not exactly [identity][payload]
  std::atomic<std::uint64_t> oversized_frames{0};
  std::atomic<std::uint64_t> auth_granted{0};
  std::atomic<std::uint64_t> auth_denied{0};
  std::atomic<std::int64_t> queued{0};             // frames handed to the router actor, not yet handled
};

struct io_options {
  std::vector<std::string> bind;                  // ZeroMQ endpoints
  std::size_t max_bytes = 0;                      // larger frames are dropped (and libzmq drops the peer)
  int receive_hwm = 1000;                         // ZeroMQ's bound on frames waiting in the socket
  std::int64_t max_queued = 1024;                 // stop reading while this many frames wait for the router
  std::string curve_secret_key;                   // Z85; empty: CURVE off
  std::vector<std::string> authorized_keys;       // Z85 public keys a client must present
};

// Counts drops by reason and logs at most one line per reason per second, with the number suppressed.
class drop_log {
 public:
  explicit drop_log(std::string owner) : owner_(std::move(owner)) {}
  void note(const std::string& reason, const std::string& detail);

 private:
  struct entry {
    std::chrono::steady_clock::time_point last{};
    std::uint64_t suppressed = 0;
  };
  std::string owner_;
  std::map<std::string, entry> entries_;
};

class router_io {
 public:
  // Binds every endpoint (throws hllm::error naming the endpoint on failure); the thread starts with start().
  router_io(std::shared_ptr<zmq::context_t> context, io_options options);
  ~router_io();
  router_io(const router_io&) = delete;
  router_io& operator=(const router_io&) = delete;

  // The endpoints as bound, wildcards resolved (tcp://127.0.0.1:* -> tcp://127.0.0.1:41234).
  const std::vector<std::string>& endpoints() const { return endpoints_; }

  static constexpr std::size_t max_batch = 64;

  // Starts the thread; `deliver` runs on it once per wake-up with the frames accepted in it (at most
  // max_batch, never empty), after counters().queued was raised by their number.
  void start(std::function<void(std::vector<msg::buffer>)> deliver);
  void stop();

  io_counters& counters() { return counters_; }

 private:
  void run();
  void drain_inbound();
  void answer_zap();

  std::shared_ptr<zmq::context_t> context_;
  io_options options_;
  std::unique_ptr<zmq::socket_t> inbound_;
  std::unique_ptr<zmq::socket_t> zap_;
  std::unique_ptr<zmq::socket_t> control_;   // the thread's end of the stop channel
  std::unique_ptr<zmq::socket_t> stopper_;   // the owner's end
  std::vector<std::string> endpoints_;
  std::function<void(std::vector<msg::buffer>)> deliver_;
  io_counters counters_;
  drop_log drops_{"router-io"};
  std::thread thread_;
};

}  // namespace hllm::detail
