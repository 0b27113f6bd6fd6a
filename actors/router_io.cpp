#include "actors/router_io.hpp"

#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <algorithm>
#include <cstdio>

#include <pthread.h>

#include "storage/error.hpp"

namespace hllm::detail {
namespace {

// A received frame as an aligned buffer: large aligned frames are shared as they are (zero copy), everything
// else is copied into fresh aligned memory (ZeroMQ gives no alignment guarantee). libzmq 4.3 receives a frame
// larger than its 8 KiB read buffer into its own malloc'd block, 8-byte aligned: the kernel's copy into it is the
// only copy. Smaller frames sit at any offset of the read buffer and are copied (cheap at that size).
msg::buffer to_buffer(zmq::message_t&& frame, std::atomic<std::uint64_t>& shared) {
  constexpr std::size_t share_above = 4096;
  if (frame.size() >= share_above && msg::is_word_aligned(frame.data())) {
    shared.fetch_add(1, std::memory_order_relaxed);
    auto holder = std::make_shared<zmq::message_t>(std::move(frame));
    const void* data = holder->data();
    return msg::buffer::adopt(std::shared_ptr<const void>(holder, data), data, holder->size());
  }
  return msg::buffer::copy_of(frame.data(), frame.size());
}

std::string unique_inproc_name(const void* owner) {
  char name[64];
  std::snprintf(name, sizeof(name), "inproc://hllm-router-io-%p", owner);
  return name;
}

}  // namespace

void drop_log::note(const std::string& reason, const std::string& detail) {
  auto now = std::chrono::steady_clock::now();
  auto& e = entries_[reason];
  if (now - e.last < std::chrono::seconds(1)) {
    ++e.suppressed;
    return;
  }
  if (e.suppressed > 0) {
    spdlog::warn("{}: dropped a message ({}): {} [{} more of this kind suppressed]", owner_, reason, detail,
                 e.suppressed);
  } else {
    spdlog::warn("{}: dropped a message ({}): {}", owner_, reason, detail);
  }
  e.last = now;
  e.suppressed = 0;
}

router_io::router_io(std::shared_ptr<zmq::context_t> context, io_options options)
    : context_(std::move(context)), options_(std::move(options)) {
  bool curve = !options_.curve_secret_key.empty();
  if (curve) {
    // The ZAP handler must exist before the first client handshake; one per ZeroMQ context.
    zap_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::rep);
    zap_->set(zmq::sockopt::linger, 0);
    try {
      zap_->bind("inproc://zeromq.zap.01");
    } catch (const zmq::error_t& e) {
      throw error(errc::io, std::string("router: cannot bind the CURVE authentication handler (one CURVE "
                                        "router per ZeroMQ context): ") + e.what());
    }
  }
  inbound_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::router);
  inbound_->set(zmq::sockopt::linger, 0);
  inbound_->set(zmq::sockopt::rcvhwm, options_.receive_hwm);
  // Slightly above our own limit: libzmq disconnects a peer that sends more, before buffering it whole.
  inbound_->set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(options_.max_bytes + 4096));
  if (curve) {
    inbound_->set(zmq::sockopt::zap_domain, "hllm");
    inbound_->set(zmq::sockopt::curve_server, true);
    inbound_->set(zmq::sockopt::curve_secretkey, options_.curve_secret_key);
  }
  for (const auto& endpoint : options_.bind) {
    try {
      inbound_->bind(endpoint);
    } catch (const zmq::error_t& e) {
      throw error(errc::io, "router: cannot bind " + endpoint + ": " + e.what());
    }
    endpoints_.push_back(inbound_->get(zmq::sockopt::last_endpoint));
  }
  std::string control_name = unique_inproc_name(this);
  control_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::pair);
  control_->set(zmq::sockopt::linger, 0);
  control_->bind(control_name);
  stopper_ = std::make_unique<zmq::socket_t>(*context_, zmq::socket_type::pair);
  stopper_->set(zmq::sockopt::linger, 0);
  stopper_->connect(control_name);
}

router_io::~router_io() { stop(); }

void router_io::start(std::function<void(std::vector<msg::buffer>)> deliver) {
  deliver_ = std::move(deliver);
  thread_ = std::thread([this] { run(); });
}

void router_io::stop() {
  if (thread_.joinable()) {
    stopper_->send(zmq::str_buffer("stop"), zmq::send_flags::none);
    thread_.join();
  }
}

void router_io::run() {
  pthread_setname_np(pthread_self(), "hllm.router-io");  // names it in top and perf
  std::vector<zmq::pollitem_t> items;
  items.push_back({static_cast<void*>(*control_), 0, ZMQ_POLLIN, 0});
  if (zap_) {
    items.push_back({static_cast<void*>(*zap_), 0, ZMQ_POLLIN, 0});
  }
  items.push_back({static_cast<void*>(*inbound_), 0, ZMQ_POLLIN, 0});
  const std::size_t inbound_index = items.size() - 1;
  while (true) {
    // Backpressure: while the router actor is behind, leave frames in the socket (bounded by its HWM, then TCP).
    bool can_take = counters_.queued.load(std::memory_order_relaxed) < options_.max_queued;
    std::size_t polled = can_take ? items.size() : inbound_index;
    auto timeout = can_take ? std::chrono::milliseconds(-1) : std::chrono::milliseconds(1);
    try {
      zmq::poll(items.data(), polled, timeout);
    } catch (const zmq::error_t& e) {
      if (e.num() == ETERM) {
        return;
      }
      continue;  // EINTR
    }
    if (items[0].revents & ZMQ_POLLIN) {
      return;  // stop requested
    }
    if (zap_ && (items[1].revents & ZMQ_POLLIN)) {
      answer_zap();
    }
    if (can_take && (items[inbound_index].revents & ZMQ_POLLIN)) {
      drain_inbound();
    }
  }
}

void router_io::drain_inbound() {
  // What one wake-up reads goes to the router actor together, in batches of at most max_batch frames, as soon as
  // the socket has no more (no waiting for more). At most 256 frames per wake-up keep the stop and ZAP sockets
  // responsive under load.
  std::vector<msg::buffer> batch;
  auto hand_over = [&] {
    if (!batch.empty()) {
      counters_.inbound_batches.fetch_add(1, std::memory_order_relaxed);
      deliver_(std::move(batch));
      batch = {};
    }
  };
  for (int i = 0; i < 256 && counters_.queued.load(std::memory_order_relaxed) < options_.max_queued; ++i) {
    zmq::message_t identity;
    if (!inbound_->recv(identity, zmq::recv_flags::dontwait)) {
      break;
    }
    std::vector<zmq::message_t> parts;
    bool more = identity.more();
    while (more) {
      zmq::message_t part;
      (void)inbound_->recv(part, zmq::recv_flags::none);  // parts of one message arrive together
      more = part.more();
      parts.push_back(std::move(part));
    }
    if (parts.size() != 1) {
      counters_.bad_frames.fetch_add(1, std::memory_order_relaxed);
      drops_.note("bad framing", "expected 1 payload frame, got " + std::to_string(parts.size()));
      continue;
    }
    std::size_t size = parts[0].size();
    if (size > options_.max_bytes) {
      counters_.oversized_frames.fetch_add(1, std::memory_order_relaxed);
      drops_.note("too large", std::to_string(size) + " bytes");
      continue;
    }
    counters_.frames_in.fetch_add(1, std::memory_order_relaxed);
    counters_.bytes_in.fetch_add(size, std::memory_order_relaxed);
    counters_.queued.fetch_add(1, std::memory_order_relaxed);
    batch.push_back(to_buffer(std::move(parts[0]), counters_.frames_shared));
    if (batch.size() == max_batch) {
      hand_over();
    }
  }
  hand_over();
}

void router_io::answer_zap() {
  // ZAP (RFC 27): version, request id, domain, address, identity, mechanism, credentials...
  std::vector<zmq::message_t> request;
  bool more = true;
  while (more) {
    zmq::message_t part;
    if (!zap_->recv(part, zmq::recv_flags::none)) {
      return;
    }
    more = part.more();
    request.push_back(std::move(part));
  }
  bool granted = false;
  std::string who = request.size() > 3 ? request[3].to_string() : "?";
  if (request.size() >= 7 && request[5].to_string_view() == "CURVE" && request[6].size() == 32) {
    char z85[41];
    zmq_z85_encode(z85, static_cast<const std::uint8_t*>(request[6].data()), 32);
    granted = std::find(options_.authorized_keys.begin(), options_.authorized_keys.end(), std::string(z85)) !=
              options_.authorized_keys.end();
  }
  (granted ? counters_.auth_granted : counters_.auth_denied).fetch_add(1, std::memory_order_relaxed);
  if (!granted) {
    drops_.note("authentication", "peer " + who + " has no authorized CURVE key");
  }
  std::string version = request.empty() ? "1.0" : request[0].to_string();
  std::string request_id = request.size() > 1 ? request[1].to_string() : "";
  zap_->send(zmq::buffer(version), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(request_id), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(std::string(granted ? "200" : "400")), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(std::string(granted ? "OK" : "unauthorized key")), zmq::send_flags::sndmore);
  zap_->send(zmq::str_buffer(""), zmq::send_flags::sndmore);  // user id
  zap_->send(zmq::str_buffer(""), zmq::send_flags::none);     // metadata
}

}  // namespace hllm::detail
