// The router's state: its counters, the sockets towards remote routers and its status reply (router_state.hpp).
#include "actors/router_state.hpp"

#include <zmq.hpp>

#include <algorithm>

#include "messages/protocol.hpp"

namespace hllm::router_internal {

stat stat_for(msg::error_code code) {
  switch (code) {
    case msg::error_code::version_mismatch: return stat::version_mismatch;
    case msg::error_code::unknown_body: return stat::unknown_body;
    case msg::error_code::too_large: return stat::too_large;
    case msg::error_code::unknown_receiver: return stat::unknown_receiver;
    case msg::error_code::stale_epoch: return stat::stale_epoch;
    case msg::error_code::overloaded: return stat::overloaded;
    case msg::error_code::timeout: return stat::timeouts;
    default: return stat::malformed;
  }
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

router_state::~router_state() {
  if (io) {
    io->stop();  // joins the I/O thread before its sockets and the context go away
  }
  dealers.clear();
}

zmq::socket_t& router_state::dealer(const remote_route& r) {
  auto& socket = dealers[r.endpoint];
  if (!socket) {
    socket = std::make_unique<zmq::socket_t>(*context, zmq::socket_type::dealer);
    socket->set(zmq::sockopt::linger, 200);
    socket->set(zmq::sockopt::sndhwm, cfg.socket_hwm);
    if (!keys.secret_key.empty()) {
      socket->set(zmq::sockopt::curve_serverkey, r.server_key.empty() ? keys.public_key : r.server_key);
      socket->set(zmq::sockopt::curve_publickey, keys.public_key);
      socket->set(zmq::sockopt::curve_secretkey, keys.secret_key);
    }
    socket->connect(r.endpoint);
  }
  return *socket;
}

bool router_state::send_remote(const remote_route& r, const msg::buffer& b) {
  constexpr std::size_t share_above = 4096;
  zmq::message_t frame;
  if (b.size() >= share_above) {
    // Zero copy: ZeroMQ keeps the buffer alive until its I/O thread has written it.
    auto* keep = new std::shared_ptr<const void>(b.owner());
    frame = zmq::message_t(
        const_cast<std::byte*>(b.data()), b.size(),
        [](void*, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); }, keep);
  } else {
    frame = zmq::message_t(b.data(), b.size());
  }
  try {
    if (!dealer(r).send(frame, zmq::send_flags::dontwait)) {
      return false;
    }
  } catch (const zmq::error_t& e) {
    drop(stat::send_failed, "send failed", r.endpoint + ": " + e.what());
    return false;
  }
  count(stat::sent_remote);
  return true;
}

msg::status_reply router_state::status() const {
  auto s = msg::protocol::running_status<msg::protocol::router>(cfg.name);
  for (std::size_t i = 0; i < stats.size(); ++i) {
    s.counters.push_back({stat_names[i], static_cast<std::int64_t>(stats[i])});
  }
  if (io) {
    auto& c = io->counters();
    s.counters.push_back({"frames_in", static_cast<std::int64_t>(c.frames_in.load())});
    s.counters.push_back({"bytes_in", static_cast<std::int64_t>(c.bytes_in.load())});
    s.counters.push_back({"frames_shared", static_cast<std::int64_t>(c.frames_shared.load())});
    s.counters.push_back({"inbound_batches", static_cast<std::int64_t>(c.inbound_batches.load())});
    s.counters.push_back({"bad_frames", static_cast<std::int64_t>(c.bad_frames.load())});
    s.counters.push_back({"oversized_frames", static_cast<std::int64_t>(c.oversized_frames.load())});
    s.counters.push_back({"auth_granted", static_cast<std::int64_t>(c.auth_granted.load())});
    s.counters.push_back({"auth_denied", static_cast<std::int64_t>(c.auth_denied.load())});
    s.queue_depth = static_cast<std::uint32_t>(std::max<std::int64_t>(0, c.queued.load()));
  }
  std::uint32_t flying = 0;
  for (const auto& [dest, n] : in_flight) {
    flying += n;
  }
  s.in_flight = flying;
  s.last_error = last_error;
  s.last_error_at_ns = last_error_at_ns;
  s.uptime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started)
                    .count();
  return s;
}

}  // namespace hllm::router_internal
