#include "actors/router.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>
#include <malloc.h>
#include <zmq.hpp>

#include <array>
#include <functional>
#include <map>
#include <unordered_map>
#include <variant>

#include "actors/router_state.hpp"
#include "messages/protocol.hpp"
#include "storage/error.hpp"

namespace hllm {

using namespace router_internal;

namespace {

using caf::timespan;

// ---- routing steps, each a short function over the router's state ----

void forward(router_pointer self, const msg::buffer& b, const msg::routing_info& info);

bool is_request(const msg::header& h) { return h.correlation_id != 0 && !h.is_reply; }

// Answers a request that cannot be served with an error envelope (nothing for one-way messages and replies).
void reply_error(router_pointer self, const msg::header& request, msg::error_code code, const std::string& text) {
  if (!is_request(request) || request.sender.empty()) {
    return;
  }
  auto reply = msg::make_error_reply(request, code, text);
  auto bytes = msg::encode(reply);
  auto info = msg::read_header(bytes);
  if (info.ok()) {
    forward(self, bytes, info.value());
  }
}

msg::buffer error_envelope(const msg::header& request, msg::error_code code, const std::string& text) {
  return msg::encode(msg::make_error_reply(request, code, text));
}

// The router's own address answers status requests.
msg::buffer own_reply(router_pointer self, const msg::routing_info& info) {
  if (info.kind != msg::body_kind::status_request) {
    return error_envelope(info.head, msg::error_code::rejected,
                          "router " + self->state.cfg.name + " answers status_request only, not " +
                              msg::to_string(info.kind));
  }
  return msg::encode(msg::make_reply(info.head, self->state.status()));
}

// A credit body is consumed by the router: the sender grants us a window of requests in flight towards it.
bool apply_credit(router_pointer self, const msg::buffer& b, const msg::routing_info& info) {
  if (info.kind != msg::body_kind::credit || info.head.is_reply) {
    return false;
  }
  auto decoded = msg::decode(b, self->state.cfg.limits);
  if (decoded.ok()) {
    self->state.windows[info.head.sender] = std::get<msg::credit>(decoded->content).window;
  }
  return true;
}

// Hands a one-way envelope to a local actor, within the destination's window.
void post_local(router_pointer self, const std::string& name, const addressable_actor& handle,
                const msg::buffer& b) {
  auto& st = self->state;
  if (st.in_flight[name] >= st.window(name)) {
    st.drop(stat::overloaded, "overloaded", "one-way message to " + name + " over its window");
    return;
  }
  ++st.in_flight[name];
  st.count(stat::delivered_local);
  // A request (not a send) so the router learns when the receiver is done and the window frees up.
  self->request(handle, caf::infinite, atom::post_v, b)
      .then([self, name] { --self->state.in_flight[name]; },
            [self, name](caf::error&) {
              --self->state.in_flight[name];
              self->state.count(stat::receiver_failed);
            });
}

// Routes a one-way envelope or a reply by its receiver address.
void forward(router_pointer self, const msg::buffer& b, const msg::routing_info& info) {
  auto& st = self->state;
  if (apply_credit(self, b, info) || info.head.receiver == st.cfg.name) {
    return;
  }
  auto it = st.book.find(info.head.receiver);
  if (it == st.book.end()) {
    st.drop(stat::unknown_receiver, "unknown receiver", "'" + info.head.receiver + "' from " + info.head.sender);
    return;
  }
  if (auto* local = std::get_if<local_route>(&it->second)) {
    post_local(self, info.head.receiver, local->handle, b);
  } else if (!st.send_remote(std::get<remote_route>(it->second), b)) {
    st.drop(stat::send_failed, "send failed", "to " + info.head.receiver + " (high-water mark)");
  }
}

// ---- deadlines: one timer message for all requests the router waits for ----

// Makes sure a timer message arrives by `when` (at most one more message per call, none when one is due earlier).
void arm_timer(router_pointer self, steady::time_point when) {
  auto& st = self->state;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
  if (st.timer_at_ns >= 0 && st.timer_at_ns <= ns) {
    return;
  }
  st.timer_at_ns = ns;
  auto delay = std::max(steady::duration::zero(), when - self->clock().now());
  self->delayed_send(self, std::chrono::duration_cast<timespan>(delay), atom::timeout_v,
                     static_cast<std::uint64_t>(ns));
}

deadline_map::iterator add_deadline(router_pointer self, milliseconds timeout, deadline_ref ref) {
  auto when = self->clock().now() + timeout;
  auto it = self->state.deadlines.emplace(when, ref);
  arm_timer(self, when);
  return it;
}

// A local receiver answered (reply) or failed (err) a request with this ticket.
void finish_local(router_pointer self, std::uint64_t ticket, const std::string& name, msg::buffer* reply,
                  const caf::error* err) {
  auto& st = self->state;
  auto it = st.local_waits.find(ticket);
  if (it == st.local_waits.end()) {
    // Answered after its deadline: the requester already has its timeout error.
    auto a = st.abandoned.find(name);
    if (a != st.abandoned.end() && a->second > 0) {
      --a->second;
    }
    if (reply != nullptr) {
      st.drop(stat::orphan_replies, "orphan reply", "from local " + name + " after its timeout");
    }
    return;
  }
  --st.in_flight[it->second.dest];
  st.deadlines.erase(it->second.deadline);
  auto on_reply = std::move(it->second.on_reply);
  auto head = std::move(it->second.head);
  st.local_waits.erase(it);
  if (reply != nullptr) {
    on_reply(std::move(*reply));
    return;
  }
  st.count(stat::receiver_failed);
  on_reply(error_envelope(head, msg::error_code::internal, name + " did not answer: " + self->system().render(*err)));
}

// The timer: every request past its deadline gets its timeout error.
void expire(router_pointer self, std::uint64_t timer_ns) {
  auto& st = self->state;
  if (static_cast<std::int64_t>(timer_ns) == st.timer_at_ns) {
    st.timer_at_ns = -1;
  }
  auto now = self->clock().now();
  while (!st.deadlines.empty() && st.deadlines.begin()->first <= now) {
    deadline_ref ref = st.deadlines.begin()->second;
    st.deadlines.erase(st.deadlines.begin());
    if (ref.remote) {
      auto it = st.pending.find(ref.key);
      if (it == st.pending.end()) {
        continue;
      }
      const auto& head = it->second.head;
      --st.in_flight[head.receiver];
      st.drop(stat::timeouts, "timeout", "request to " + head.receiver + " got no reply");
      it->second.promise.deliver(error_envelope(
          head, msg::error_code::timeout,
          head.receiver + " did not answer within " + std::to_string(st.timeout_of(head).count()) + " ms"));
      st.pending.erase(it);
    } else {
      auto it = st.local_waits.find(ref.key);
      if (it == st.local_waits.end()) {
        continue;
      }
      auto dest = std::move(it->second.dest);
      auto head = std::move(it->second.head);
      auto on_reply = std::move(it->second.on_reply);
      st.local_waits.erase(it);
      --st.in_flight[dest];
      ++st.abandoned[dest];
      st.count(stat::timeouts);
      on_reply(error_envelope(head, msg::error_code::timeout,
                              dest + " did not answer within " + std::to_string(st.timeout_of(head).count()) +
                                  " ms"));
    }
  }
  if (!st.deadlines.empty()) {
    arm_timer(self, st.deadlines.begin()->first);
  }
}

// A local receiver that let this many requests time out without answering them gets no more until it answers
// some (each holds a response handler in the router).
bool too_many_abandoned(router_pointer self, const std::string& dest) {
  auto& st = self->state;
  auto it = st.abandoned.find(dest);
  return it != st.abandoned.end() && it->second >= st.cfg.max_abandoned;
}

// Why a request to `dest` is refused with `overloaded` right now; empty when it may go.
std::string no_credit(router_pointer self, const std::string& dest) {
  auto& st = self->state;
  if (st.in_flight[dest] >= st.window(dest)) {
    return "no credit: " + std::to_string(st.window(dest)) + " requests to " + dest + " in flight";
  }
  if (too_many_abandoned(self, dest)) {
    return "no credit: " + dest + " still holds " + std::to_string(st.cfg.max_abandoned) +
           " requests that timed out unanswered";
  }
  return {};
}

// Delivers a request to a local actor; `on_reply` gets its reply envelope or an error envelope.
void request_local(router_pointer self, const std::string& name, const addressable_actor& handle,
                   const msg::buffer& b, const msg::header& head, std::function<void(msg::buffer)> on_reply) {
  auto& st = self->state;
  ++st.in_flight[name];
  st.count(stat::delivered_local);
  std::uint64_t ticket = st.next_ticket++;
  auto deadline = add_deadline(self, st.timeout_of(head), deadline_ref{false, ticket});
  st.local_waits.emplace(ticket, local_wait{name, head, std::move(on_reply), deadline});
  self->request(handle, caf::infinite, atom::deliver_v, b)
      .then([self, ticket, name](msg::buffer& reply) { finish_local(self, ticket, name, &reply, nullptr); },
            [self, ticket, name](caf::error& err) { finish_local(self, ticket, name, nullptr, &err); });
}

// Starts a request from a local actor; the promise gets the reply envelope, whatever happens.
void start_request(router_pointer self, const msg::buffer& b, const msg::routing_info& info,
                   caf::typed_response_promise<msg::buffer> rp) {
  auto& st = self->state;
  const auto& dest = info.head.receiver;
  if (dest == st.cfg.name) {
    rp.deliver(own_reply(self, info));
    return;
  }
  auto it = st.book.find(dest);
  if (it == st.book.end()) {
    st.drop(stat::unknown_receiver, "unknown receiver", "'" + dest + "' from " + info.head.sender);
    rp.deliver(error_envelope(info.head, msg::error_code::unknown_receiver, "no route to '" + dest + "'"));
    return;
  }
  if (auto why = no_credit(self, dest); !why.empty()) {
    st.count(stat::overloaded);
    rp.deliver(error_envelope(info.head, msg::error_code::overloaded, why));
    return;
  }
  if (auto* local = std::get_if<local_route>(&it->second)) {
    request_local(self, dest, local->handle, b, info.head, [rp](msg::buffer reply) mutable { rp.deliver(reply); });
    return;
  }
  if (st.pending.count(info.head.correlation_id) != 0) {
    rp.deliver(error_envelope(info.head, msg::error_code::rejected, "correlation id already in flight"));
    return;
  }
  if (!st.send_remote(std::get<remote_route>(it->second), b)) {
    st.count(stat::overloaded);
    rp.deliver(error_envelope(info.head, msg::error_code::overloaded, "socket to " + dest + " is full"));
    return;
  }
  ++st.in_flight[dest];
  auto deadline = add_deadline(self, st.timeout_of(info.head), deadline_ref{true, info.head.correlation_id});
  st.pending.emplace(info.head.correlation_id, pending_request{rp, info.head, deadline});
}

// A reply from the network: completes the request waiting for it.
void complete_remote(router_pointer self, const msg::buffer& b, const msg::routing_info& info) {
  auto& st = self->state;
  auto it = st.pending.find(info.head.correlation_id);
  if (it == st.pending.end() || it->second.head.receiver != info.head.sender) {
    st.drop(stat::orphan_replies, "orphan reply",
            "from " + info.head.sender + " (late after a timeout, or not ours)");
    return;
  }
  --st.in_flight[it->second.head.receiver];
  st.deadlines.erase(it->second.deadline);
  st.count(stat::replies_matched);
  it->second.promise.deliver(b);
  st.pending.erase(it);
}

// A request from the network: served by a local actor (or the router itself); the reply goes back by address.
void serve_remote(router_pointer self, const msg::buffer& b, const msg::routing_info& info) {
  auto& st = self->state;
  const auto& dest = info.head.receiver;
  if (dest == st.cfg.name) {
    auto reply = own_reply(self, info);
    forward(self, reply, msg::read_header(reply).value());
    return;
  }
  auto it = st.book.find(dest);
  if (it == st.book.end() || !std::holds_alternative<local_route>(it->second)) {
    // Never a second hop: a message that reached the wrong process is refused, not passed on.
    st.drop(stat::unknown_receiver, "unknown receiver", "'" + dest + "' from " + info.head.sender);
    reply_error(self, info.head, msg::error_code::unknown_receiver, "no actor '" + dest + "' in this process");
    return;
  }
  if (auto why = no_credit(self, dest); !why.empty()) {
    st.count(stat::overloaded);
    reply_error(self, info.head, msg::error_code::overloaded, why);
    return;
  }
  request_local(self, dest, std::get<local_route>(it->second).handle, b, info.head,
                [self](msg::buffer reply) {
                  auto rinfo = msg::read_header(reply);
                  if (rinfo.ok()) {
                    forward(self, reply, rinfo.value());
                  }
                });
}

// Every frame from the network passes here: validated, fenced, then routed.
void on_inbound(router_pointer self, const msg::buffer& b) {
  auto& st = self->state;
  auto info = msg::validate(b, st.cfg.limits);
  if (!info.ok()) {
    const auto& f = info.error();
    st.drop(stat_for(f.code), msg::to_string(f.code), f.what);
    reply_error(self, f.head, f.code, f.what);
    return;
  }
  st.count(stat::received_remote);
  const auto& head = info->head;
  if (!st.in_epoch(head)) {
    st.drop(stat::stale_epoch, "stale epoch",
            "job " + std::to_string(head.job_id) + " epoch " + std::to_string(head.job_epoch) + " from " +
                head.sender);
    reply_error(self, head, msg::error_code::stale_epoch,
                "receiver is at job " + std::to_string(st.cfg.job_id) + " epoch " +
                    std::to_string(st.cfg.job_epoch));
    return;
  }
  if (head.is_reply) {
    complete_remote(self, b, info.value());
  } else if (is_request(head)) {
    serve_remote(self, b, info.value());
  } else {
    auto it = st.book.find(head.receiver);
    bool local = it != st.book.end() && std::holds_alternative<local_route>(it->second);
    if (local || head.receiver == st.cfg.name || info->kind == msg::body_kind::credit) {
      forward(self, b, info.value());
    } else {
      st.drop(stat::unknown_receiver, "unknown receiver", "'" + head.receiver + "' from " + head.sender);
    }
  }
}

router_actor::behavior_type router_main(router_pointer self, router_config cfg,
                                        std::shared_ptr<zmq::context_t> context,
                                        std::shared_ptr<detail::router_io> io, curve_keypair keys) {
  self->state.cfg = std::move(cfg);
  self->state.context = std::move(context);
  self->state.io = std::move(io);
  self->state.keys = std::move(keys);
  self->set_down_handler([self](caf::down_msg& down) {
    // A local actor died: its name leaves the address book.
    auto& book = self->state.book;
    for (auto it = book.begin(); it != book.end();) {
      auto* local = std::get_if<local_route>(&it->second);
      bool dead = local && local->handle.address() == down.source;
      it = dead ? book.erase(it) : std::next(it);
    }
  });
  return {
      // Route a one-way envelope (or an asynchronous reply) from a local actor.
      [self](atom::send, const msg::buffer& b) {
        auto& st = self->state;
        auto info = msg::read_header(b, st.cfg.limits);
        if (!info.ok()) {
          st.drop(stat_for(info.error().code), "bad local envelope", info.error().what);
          return;
        }
        st.count(stat::oneway);
        if (!st.in_epoch(info->head)) {
          st.drop(stat::stale_epoch, "stale epoch", "local sender " + info->head.sender);
          return;
        }
        forward(self, b, info.value());
      },
      // Route a request from a local actor; the promise always gets an envelope (reply or error).
      [self](atom::request, const msg::buffer& b) -> caf::typed_response_promise<msg::buffer> {
        auto& st = self->state;
        auto rp = self->make_response_promise<msg::buffer>();
        auto info = msg::read_header(b, st.cfg.limits);
        if (!info.ok()) {
          st.drop(stat_for(info.error().code), "bad local envelope", info.error().what);
          rp.deliver(error_envelope(info.error().head, info.error().code, info.error().what));
          return rp;
        }
        st.count(stat::requests);
        if (!is_request(info->head)) {
          rp.deliver(error_envelope(info->head, msg::error_code::rejected, "a request needs a correlation id"));
        } else if (!st.in_epoch(info->head)) {
          st.count(stat::stale_epoch);
          rp.deliver(error_envelope(info->head, msg::error_code::stale_epoch, "sender is not in the job epoch"));
        } else {
          start_request(self, b, info.value(), rp);
        }
        return rp;
      },
      // Put a local actor into the address book.
      [self](atom::enroll, const std::string& name, addressable_actor handle) {
        self->monitor(handle);
        self->state.abandoned.erase(name);
        self->state.book[name] = local_route{std::move(handle)};
        return true;
      },
      // Put a remote actor into the address book: the endpoint of its process's router (and its CURVE key).
      [self](atom::route, const std::string& name, const std::string& endpoint, const std::string& key) {
        self->state.book[name] = remote_route{endpoint, key};
        return true;
      },
      [self](atom::forget, const std::string& name) { self->state.book.erase(name); },
      // A new job epoch: envelopes of the old one are fenced out from now on.
      [self](atom::epoch, std::uint32_t epoch) { self->state.cfg.job_epoch = epoch; },
      [self](atom::status) {
        msg::header h;
        h.sender = self->state.cfg.name;
        h.job_id = self->state.cfg.job_id;
        h.job_epoch = self->state.cfg.job_epoch;
        return msg::encode(msg::envelope{h, self->state.status()});
      },
      [self](atom::endpoints) { return self->state.io ? self->state.io->endpoints() : std::vector<std::string>{}; },
      // Frames from the I/O thread, in the order they arrived.
      [self](atom::inbound, const std::vector<msg::buffer>& frames) {
        self->state.io->counters().queued.fetch_sub(static_cast<std::int64_t>(frames.size()),
                                                    std::memory_order_relaxed);
        for (const auto& b : frames) {
          on_inbound(self, b);
        }
      },
      // The deadline timer (the argument: the deadline it was armed for): requests past their deadline get a
      // timeout error unless the reply came first.
      [self](atom::timeout, std::uint64_t timer_ns) { expire(self, timer_ns); },
  };
}

}  // namespace

void configure_actor_system(caf::actor_system_config& cfg, std::size_t max_threads) {
  cfg.add_message_types<caf::id_block::hllm>();
  cfg.set("scheduler.max-threads", max_threads);
  // An actor hands the CPU back after a few messages (CAF's default: only once its mailbox is empty). Otherwise an
  // actor that answers a burst of replies by encoding one new request each runs ahead of the receivers it feeds,
  // which sit in the same worker's queue: the encoded buffers pile up (7 of 16 in flight at 1 MiB) and every new
  // payload copy lands in cold memory (2x slower). With 4, a 1 MiB in-process request went from ~60 to ~30 us.
  cfg.set("scheduler.max-throughput", std::size_t{4});
  // Idle workers skip CAF's "moderate" polling phase (500 sleeps of 50 us, at least the timer slack each, after
  // every message) and block at once, woken when work arrives. The sleeps cost every process twice: a frame that
  // the router's I/O thread hands to a sleeping worker waits out the sleep (tcp 1 KiB: 40-45k msg/s with polling,
  // 58-62k without; tcp 1 MiB 70-76% of raw ZeroMQ with, 79-83% without), and the wake-ups take time slices from
  // torch's threads in a training process (stage-2 pipeline efficiency 0.86-0.96 with, 0.98-1.02 without).
  // docs/benchmarks.md has the measurements ("Router throughput", "Actor job pipeline").
  cfg.set("work-stealing.moderate-poll-attempts", std::size_t{0});
  // Envelopes of a MiB and more are allocated and freed at a high rate, often on different threads. glibc's
  // defaults mmap and unmap each such block (a page fault per 4 KiB): 1 MiB messages went 3-6x slower. Keep
  // blocks up to 32 MiB on the heap and trim it only above 128 MiB of free space.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

router_actor spawn_router(caf::actor_system& sys, router_config cfg) {
  auto context = cfg.context ? cfg.context : std::make_shared<zmq::context_t>(1);
  curve_keypair keys;
  detail::io_options io_opts;
  io_opts.bind = cfg.bind;
  io_opts.max_bytes = cfg.limits.max_bytes;
  io_opts.receive_hwm = cfg.socket_hwm;
  io_opts.max_queued = cfg.max_inbound_queue;
  if (!cfg.curve.key_file.empty()) {
    keys = read_curve_key_file(cfg.curve.key_file);
    if (keys.secret_key.empty()) {
      throw error(errc::invalid_input, "router: CURVE key file " + cfg.curve.key_file +
                                           " holds no secret key (use the <base>_secret file)");
    }
    io_opts.curve_secret_key = keys.secret_key;
    for (const auto& file : cfg.curve.authorized_key_files) {
      io_opts.authorized_keys.push_back(read_curve_key_file(file).public_key);
    }
    if (io_opts.authorized_keys.empty()) {
      io_opts.authorized_keys.push_back(keys.public_key);
    }
  }
  auto io = std::make_shared<detail::router_io>(context, io_opts);
  auto router = sys.spawn(router_main, std::move(cfg), context, io, keys);
  // The I/O thread holds the router weakly: a router nobody references can still terminate.
  caf::weak_actor_ptr weak = caf::actor_cast<caf::weak_actor_ptr>(router);
  detail::router_io* raw = io.get();
  io->start([weak, raw](std::vector<msg::buffer> frames) {
    if (auto strong = weak.lock()) {
      caf::anon_send(caf::actor_cast<router_actor>(strong), atom::inbound_v, std::move(frames));
    } else {
      raw->counters().queued.fetch_sub(static_cast<std::int64_t>(frames.size()), std::memory_order_relaxed);
    }
  });
  return router;
}

}  // namespace hllm
