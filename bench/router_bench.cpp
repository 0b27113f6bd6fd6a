// Router throughput: requests/s and MB/s through the router for 1 KiB and 1 MiB payloads, in-process, over ipc
// and over tcp loopback, each next to raw ZeroMQ moving the same payload the same way in the same run.
//
// Both sides run the same exchange: a client keeps `window` requests in flight, each carrying the payload; the
// server answers each with a small acknowledgement. Router path: a client actor sends cache_put envelopes
// (payload = tensor rows) to a sink actor that decodes each envelope and answers with an ack envelope; over
// ipc/tcp the two actors sit behind two routers (one per simulated process, each with its own ZeroMQ context).
// Raw path: a DEALER thread and a ROUTER thread exchanging [payload] / [ack] frames.
//
// Usage: router_bench [--quick] [--repeat N] [--decode] [--size 1k|1m] [--only router|raw] [inproc|ipc|tcp ...]
// (prints a markdown table; docs/benchmarks.md keeps one)
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <unistd.h>
#include <zmq.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "actors/router.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace hllm;

struct plan {
  std::size_t payload = 1024;
  std::uint32_t count = 1000;
  std::uint32_t window = 16;
};

// ---- router path ----

// --decode: the sink copies the whole envelope out (msg::decode); default: it reads the header and body kind, as
// the raw ZeroMQ server reads its frames without touching the payload.
bool sink_decodes = false;

addressable_actor::behavior_type sink(addressable_actor::pointer) {
  return {
      [](atom::deliver, const msg::buffer& b) -> msg::buffer {
        if (sink_decodes) {
          auto request = msg::decode(b);
          if (!request.ok()) {
            return msg::encode(
                msg::make_error_reply(request.error().head, request.error().code, request.error().what));
          }
          return hllm::make_reply(request->head, msg::ack{});
        }
        auto info = msg::read_header(b);
        if (!info.ok() || info->kind != msg::body_kind::cache_put) {
          msg::header h = info.ok() ? info->head : info.error().head;
          return msg::encode(msg::make_error_reply(h, msg::error_code::rejected, "not a cache_put"));
        }
        return hllm::make_reply(info->head, msg::ack{});
      },
      [](atom::post, const msg::buffer&) {},
  };
}

struct client_state {
  std::uint32_t sent = 0;
  std::uint32_t answered = 0;
  std::uint32_t errors = 0;
  caf::response_promise done;
  clock_type::time_point start;
  msg::envelope request;  // the body holds the payload; encode() copies it into each request, once
};

// The body is built once; each request's encode() copies the payload from it into a fresh envelope, as the raw
// path copies the prepared payload into a fresh ZeroMQ message.
msg::body payload_body(const std::vector<std::byte>& payload) {
  msg::cache_put put;
  put.model_version = "bench";
  put.rows.type = msg::dtype::u8;
  put.rows.shape = {static_cast<std::int64_t>(payload.size())};
  put.rows.data = payload;
  return put;
}

const std::vector<std::byte>& prepared_payload(std::size_t bytes) {
  static std::vector<std::byte> payload;
  payload.assign(bytes, std::byte{0x5a});
  return payload;
}

void ask_next(caf::event_based_actor* self, router_actor router, plan p, std::shared_ptr<client_state> st) {
  ++st->sent;
  st->request.head.correlation_id = msg::next_correlation_id();
  auto bytes = msg::encode(st->request);
  self->request(router, caf::infinite, atom::request_v, bytes).then([self, router, p, st](msg::buffer& reply) {
    ++st->answered;
    auto info = msg::read_header(reply);
    if (!info.ok() || info->kind != msg::body_kind::ack) {
      ++st->errors;
    }
    if (st->sent < p.count) {
      ask_next(self, router, p, st);
    } else if (st->answered == p.count) {
      double seconds = std::chrono::duration<double>(clock_type::now() - st->start).count();
      st->done.deliver(st->errors == 0 ? seconds : -1.0);
    }
  });
}

caf::behavior client(caf::event_based_actor* self, router_actor router, plan p) {
  auto st = std::make_shared<client_state>();
  return {[self, router, p, st](const std::string&) {
    st->done = self->make_response_promise();
    st->request.head.sender = "client";
    st->request.head.receiver = "sink";
    st->request.head.timeout_ms = 60000;
    st->request.content = payload_body(prepared_payload(p.payload));
    st->start = clock_type::now();
    for (std::uint32_t i = 0; i < p.window; ++i) {
      ask_next(self, router, p, st);
    }
  }};
}

// Seconds for p.count requests through routers; `transport` is "inproc" (one router, no sockets), "ipc" or "tcp".
double through_router(caf::actor_system& sys, const std::string& transport, plan p) {
  std::vector<caf::actor> spawned;
  router_config a;
  a.name = "router/a";
  a.bind = {};
  a.default_window = p.window;
  router_actor front;
  router_actor back;
  std::string pid = std::to_string(::getpid());
  if (transport == "inproc") {
    front = spawn_router(sys, a);
    back = front;
  } else {
    router_config b = a;
    b.name = "router/b";
    a.bind = {transport == "ipc" ? "ipc:///tmp/hllm-bench-" + pid + "-a" : "tcp://127.0.0.1:*"};
    b.bind = {transport == "ipc" ? "ipc:///tmp/hllm-bench-" + pid + "-b" : "tcp://127.0.0.1:*"};
    front = spawn_router(sys, a);
    back = spawn_router(sys, b);
  }
  caf::scoped_actor self{sys};
  auto sink_actor = sys.spawn(sink);
  auto endpoints = [&](const router_actor& r) {
    std::vector<std::string> out;
    self->request(r, caf::infinite, atom::endpoints_v).receive([&](std::vector<std::string>& e) { out = e; },
                                                               [](caf::error&) {});
    return out;
  };
  self->request(back, caf::infinite, atom::enroll_v, std::string("sink"), sink_actor)
      .receive([](bool) {}, [](caf::error&) {});
  if (transport != "inproc") {
    self->request(front, caf::infinite, atom::route_v, std::string("sink"), endpoints(back).at(0), std::string())
        .receive([](bool) {}, [](caf::error&) {});
    self->request(back, caf::infinite, atom::route_v, std::string("client"), endpoints(front).at(0), std::string())
        .receive([](bool) {}, [](caf::error&) {});
  }
  auto c = sys.spawn(client, front, p);
  double seconds = -1;
  self->request(c, std::chrono::minutes(5), std::string("run")).receive([&](double s) { seconds = s; },
                                                                        [](caf::error&) {});
  for (auto h : {caf::actor_cast<caf::actor>(front), caf::actor_cast<caf::actor>(back),
                 caf::actor_cast<caf::actor>(sink_actor), c}) {
    self->send_exit(h, caf::exit_reason::user_shutdown);
  }
  return seconds;
}

// ---- raw ZeroMQ path ----

// For ipc/tcp the two ends get a context each (two I/O threads), as the two routers do: two simulated processes.
double raw_zeromq(const std::string& transport, plan p) {
  zmq::context_t server_ctx;
  zmq::context_t client_ctx_own;
  zmq::context_t& client_ctx = transport == "inproc" ? server_ctx : client_ctx_own;
  zmq::socket_t server(server_ctx, zmq::socket_type::router);
  std::string pid = std::to_string(::getpid());
  std::string bind = transport == "inproc" ? "inproc://raw"
                     : transport == "ipc"  ? "ipc:///tmp/hllm-bench-" + pid + "-raw"
                                           : "tcp://127.0.0.1:*";
  server.set(zmq::sockopt::rcvhwm, 1000);  // the router's socket_hwm, on the same sockets
  server.set(zmq::sockopt::sndhwm, 1000);
  server.bind(bind);
  std::string endpoint = server.get(zmq::sockopt::last_endpoint);
  std::thread serving([&] {
    for (std::uint32_t i = 0; i < p.count; ++i) {
      zmq::message_t id;
      zmq::message_t payload;
      (void)server.recv(id);
      (void)server.recv(payload);
      server.send(id, zmq::send_flags::sndmore);
      server.send(zmq::str_buffer("ack"), zmq::send_flags::none);
    }
  });
  zmq::socket_t dealer(client_ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::sndhwm, 1000);
  dealer.set(zmq::sockopt::rcvhwm, 1000);
  dealer.connect(endpoint);
  std::vector<std::byte> payload(p.payload, std::byte{0x5a});
  auto start = clock_type::now();
  std::uint32_t sent = 0;
  for (; sent < p.window; ++sent) {
    dealer.send(zmq::message_t(payload.data(), payload.size()), zmq::send_flags::none);
  }
  for (std::uint32_t answered = 0; answered < p.count; ++answered) {
    zmq::message_t ack;
    (void)dealer.recv(ack);
    if (sent < p.count) {
      dealer.send(zmq::message_t(payload.data(), payload.size()), zmq::send_flags::none);
      ++sent;
    }
  }
  double seconds = std::chrono::duration<double>(clock_type::now() - start).count();
  serving.join();
  return seconds;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct row {
  std::string transport;
  std::size_t payload;
  std::uint32_t count;
  std::vector<double> router_s;  // one per repeat
  std::vector<double> raw_s;
  std::vector<double> ratio;     // raw_s / router_s of the same repeat
};

void print(const std::vector<row>& rows) {
  std::printf("| transport | payload | messages | router msg/s | router MB/s | raw ZeroMQ msg/s | raw ZeroMQ MB/s "
              "| router / raw (min-max) |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    double mb = static_cast<double>(r.payload) * r.count / 1e6;
    double router_s = median(r.router_s);
    double raw_s = median(r.raw_s);
    std::printf("| %s | %s | %u | %.0f | %.1f | %.0f | %.1f | %.0f%% (%.0f-%.0f%%) |\n", r.transport.c_str(),
                r.payload >= (1u << 20) ? "1 MiB" : "1 KiB", r.count, r.count / router_s, mb / router_s,
                r.count / raw_s, mb / raw_s, 100.0 * median(r.ratio),
                100.0 * *std::min_element(r.ratio.begin(), r.ratio.end()),
                100.0 * *std::max_element(r.ratio.begin(), r.ratio.end()));
  }
}

}  // namespace

// Usage: router_bench [--quick] [--repeat N] [--decode] [--size 1k|1m] [--only router|raw] [inproc|ipc|tcp ...]
// Every case runs a warm-up of each path, then N repeats of (router, raw), alternating which goes first; the
// table shows medians, the ratio column the median and range of the per-repeat ratios.
int main(int argc, char** argv) {
  bool quick = false;
  int repeats = 5;
  std::string only;  // "router" or "raw": run one path alone (for a profiler), print msg/s per repeat, no table
  std::vector<std::size_t> sizes = {1024, std::size_t{1} << 20};
  std::vector<std::string> transports;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else if (std::strcmp(argv[i], "--decode") == 0) {
      sink_decodes = true;
    } else if (std::strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
      ++i;
      sizes = {std::strcmp(argv[i], "1m") == 0 ? std::size_t{1} << 20 : std::size_t{1024}};
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else if (std::strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else {
      transports.push_back(argv[i]);
    }
  }
  if (transports.empty()) {
    transports = {"inproc", "ipc", "tcp"};
  }
  if (quick) {
    repeats = std::min(repeats, 3);
  }
  caf::actor_system_config cfg;
  configure_actor_system(cfg);
  if (const char* policy = std::getenv("HLLM_CAF_POLICY")) {
    cfg.set("scheduler.policy", caf::atom_from_string(policy));
  }
  // Scheduler experiments: HLLM_CAF_SET="work-stealing.moderate-poll-attempts=0;..." (integers; a value ending in
  // "us" is a duration, e.g. work-stealing.moderate-sleep-duration=200us).
  if (const char* sets = std::getenv("HLLM_CAF_SET")) {
    std::string all = sets;
    std::size_t pos = 0;
    while (pos < all.size()) {
      auto end = all.find(';', pos);
      if (end == std::string::npos) end = all.size();
      auto kv = all.substr(pos, end - pos);
      auto eq = kv.find('=');
      auto value = kv.substr(eq + 1);
      if (value.size() > 2 && value.compare(value.size() - 2, 2, "us") == 0) {
        cfg.set(kv.substr(0, eq), caf::timespan{std::chrono::microseconds(std::stol(value))});
      } else {
        cfg.set(kv.substr(0, eq), static_cast<std::size_t>(std::stoul(value)));
      }
      pos = end + 1;
    }
  }
  caf::actor_system sys{cfg};
  std::vector<row> rows;
  for (const auto& transport : transports) {
    for (std::size_t payload : sizes) {
      plan p;
      p.payload = payload;
      p.count = payload == 1024 ? (quick ? 5000 : 60000) : (quick ? 200 : 2000);
      plan warm{payload, std::min<std::uint32_t>(p.count, 500), p.window};
      if (through_router(sys, transport, warm) <= 0 || raw_zeromq(transport, warm) <= 0) {
        std::fprintf(stderr, "%s %zu: warm-up failed\n", transport.c_str(), payload);
        return 1;
      }
      if (!only.empty()) {
        for (int i = 0; i < repeats; ++i) {
          double s = only == "raw" ? raw_zeromq(transport, p) : through_router(sys, transport, p);
          std::printf("%s %s %zu bytes: %.0f msg/s\n", only.c_str(), transport.c_str(), payload,
                      s > 0 ? p.count / s : 0.0);
        }
        continue;
      }
      row r{transport == "inproc" ? "in-process (raw: inproc)" : transport, payload, p.count, {}, {}, {}};
      for (int i = 0; i < repeats; ++i) {
        double router_s = 0;
        double raw_s = 0;
        if (i % 2 == 0) {
          router_s = through_router(sys, transport, p);
          raw_s = raw_zeromq(transport, p);
        } else {
          raw_s = raw_zeromq(transport, p);
          router_s = through_router(sys, transport, p);
        }
        if (router_s <= 0 || raw_s <= 0) {
          std::fprintf(stderr, "%s %zu: a run failed\n", transport.c_str(), payload);
          return 1;
        }
        r.router_s.push_back(router_s);
        r.raw_s.push_back(raw_s);
        r.ratio.push_back(raw_s / router_s);
        std::fprintf(stderr, "%s %zu bytes: router %.3f s, raw %.3f s\n", transport.c_str(), payload, router_s,
                     raw_s);
      }
      rows.push_back(std::move(r));
    }
  }
  if (!rows.empty()) {
    print(rows);
  }
  if (rows.size() == 6) {
    std::vector<double> x;
    for (std::size_t i = 0; i < rows[0].router_s.size(); ++i) {
      x.push_back((rows[4].router_s[i] / rows[4].count) / (rows[0].router_s[i] / rows[0].count));
    }
    std::printf("\nin-process / tcp loopback, 1 KiB through the router: %.1fx (%.1f-%.1fx over %zu repeats)\n",
                median(x), *std::min_element(x.begin(), x.end()), *std::max_element(x.begin(), x.end()),
                x.size());
  }
  return 0;
}
