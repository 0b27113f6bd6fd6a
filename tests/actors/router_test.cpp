// The router: the same actor code in one process and across two, request/response, credit, fencing, timeouts,
// and resistance to bad frames. Wire-level checks (CURVE, capnp decode) are in wire_test.cpp.
#include <caf/typed_event_based_actor.hpp>

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <zmq.hpp>

#include "actors/ask.hpp"
#include "actors/router_io.hpp"

#include "tests/actors/child_process.hpp"
#include "tests/actors/router_fixture.hpp"
#include "tests/actors/test_actors.hpp"

namespace hllm::testing {
namespace {

using std::chrono::milliseconds;
using router_test = router_fixture;

router_config local_only(std::string name = "router") {
  router_config rc;
  rc.name = std::move(name);
  rc.bind = {};
  return rc;
}

router_config on_tcp(std::string name, std::uint64_t job = 0, std::uint32_t epoch = 0) {
  router_config rc;
  rc.name = std::move(name);
  rc.bind = {"tcp://127.0.0.1:*"};
  rc.job_id = job;
  rc.job_epoch = epoch;
  return rc;
}

// Answers nothing: holds every request's promise, so requests stay in flight.
addressable_actor::behavior_type silent_service(addressable_actor::pointer self) {
  auto held = std::make_shared<std::vector<caf::typed_response_promise<msg::buffer>>>();
  return {
      [self, held](atom::deliver, const msg::buffer&) {
        held->push_back(self->make_response_promise<msg::buffer>());
        return held->back();
      },
      [](atom::post, const msg::buffer&) {},
  };
}

// Holds every request unanswered until it gets a one-way message, then answers all it holds with an ack.
addressable_actor::behavior_type holding_service(addressable_actor::pointer self) {
  struct held {
    caf::typed_response_promise<msg::buffer> promise;
    msg::header head;
  };
  auto holding = std::make_shared<std::vector<held>>();
  return {
      [self, holding](atom::deliver, const msg::buffer& b) {
        holding->push_back({self->make_response_promise<msg::buffer>(), msg::read_header(b)->head});
        return holding->back().promise;
      },
      [holding](atom::post, const msg::buffer&) {
        for (auto& h : *holding) {
          h.promise.deliver(hllm::make_reply(h.head, msg::ack{"late"}));
        }
        holding->clear();
      },
  };
}

std::string run_client(router_fixture& f, const router_actor& r, client_plan plan) {
  auto client = f.keep(f.sys().spawn(batch_client, r, plan));
  std::string result = "client did not finish";
  f.self()->request(client, std::chrono::seconds(30), std::string("run")).receive(
      [&](std::string& s) { result = s; }, [&](caf::error& e) { result = f.sys().render(e); });
  return result;
}

TEST_F(router_test, same_actor_code_talks_in_process) {
  auto r = router(local_only());
  enroll(r, "service", keep(sys().spawn(batch_service, std::string("service"))));
  EXPECT_EQ(run_client(*this, r, {"client", "service", 300, 8, {}}), "");
  auto s = local_status(r);
  EXPECT_EQ(counter(s, "requests"), 300);
  EXPECT_EQ(counter(s, "sent_remote"), 0);
}

TEST_F(router_test, same_actor_code_talks_between_two_processes) {
  auto r = router(on_tcp("router/test", 7, 1));
  auto here = endpoints(r).at(0);
  child_process peer({HLLM_ROUTER_PEER, "router/peer", "service", "tcp://127.0.0.1:*", "7", "1", "client=" + here,
                      "probe=" + here});
  ASSERT_TRUE(peer.started());
  std::string line = peer.read_line();
  ASSERT_EQ(line.rfind("endpoint tcp://127.0.0.1:", 0), 0u) << line;
  std::string there = line.substr(9);
  route(r, "service", there);
  route(r, "router/peer", there);

  EXPECT_EQ(run_client(*this, r, {"client", "service", 300, 8, {7, 1}}), "");

  // One-way messages arrive too, in order with the request that follows them on the same path.
  for (int i = 0; i < 5; ++i) {
    tell(r, make_oneway("client", "service", msg::ack{"one-way " + std::to_string(i)}, {7, 1}));
  }
  EXPECT_EQ(counter(status_of(r, "service", {7, 1}), "posts"), 5);

  // The remote router answers status by its address, and saw every request.
  auto remote = status_of(r, "router/peer", {7, 1});
  EXPECT_EQ(remote.name, "router/peer");
  EXPECT_GE(counter(remote, "received_remote"), 300);
  EXPECT_EQ(counter(remote, "malformed"), 0);
  EXPECT_EQ(peer.finish(), 0);
}

TEST_F(router_test, unknown_receiver_gets_an_error_reply) {
  auto r = router(local_only());
  auto reply = ask(r, make_request("client", "nobody", msg::status_request{}, {}));
  EXPECT_EQ(error_of(reply), msg::error_code::unknown_receiver);
  EXPECT_EQ(reply.head.receiver, "client");
  EXPECT_TRUE(reply.head.is_reply);
  EXPECT_EQ(counter(local_status(r), "unknown_receiver"), 1);
}

TEST_F(router_test, reply_carries_the_request_correlation_id) {
  auto r = router(local_only());
  enroll(r, "service", keep(sys().spawn(batch_service, std::string("service"))));
  auto request = make_request("client", "service", msg::batch_request{{1, 0, 4, 0}, 1, 2, 10}, {});
  auto sent = msg::read_header(request);
  auto reply = ask(r, request);
  ASSERT_TRUE(std::holds_alternative<msg::batch>(reply.content));
  EXPECT_EQ(reply.head.correlation_id, sent->head.correlation_id);
  EXPECT_EQ(reply.head.sender, "service");
}

TEST_F(router_test, remote_request_without_an_answer_times_out) {
  auto r = router(on_tcp("router/test"));
  route(r, "ghost", "tcp://127.0.0.1:9");  // nothing listens there: ZeroMQ keeps retrying in the background
  auto t0 = std::chrono::steady_clock::now();
  auto reply = ask(r, make_request("client", "ghost", msg::status_request{}, {}, milliseconds(200)));
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(error_of(reply), msg::error_code::timeout);
  EXPECT_GE(waited, milliseconds(190));
  EXPECT_LT(waited, milliseconds(5000));
  EXPECT_EQ(counter(local_status(r), "timeouts"), 1);
}

TEST_F(router_test, credit_window_refuses_requests_beyond_it_until_granted) {
  auto rc = local_only();
  rc.default_window = 2;
  auto r = router(rc);
  enroll(r, "silent", keep(sys().spawn(silent_service)));
  auto req = [&] { return make_request("client", "silent", msg::status_request{}, {}, milliseconds(300)); };
  // Two requests fill the window; they stay unanswered.
  self()->request(r, caf::infinite, atom::request_v, req());
  self()->request(r, caf::infinite, atom::request_v, req());
  auto third = ask(r, req());
  EXPECT_EQ(error_of(third), msg::error_code::overloaded) << "refused at once, not queued";

  // The receiver grants a larger window: the next request is accepted (and then times out, silent as it is).
  tell(r, make_oneway("silent", "client", msg::credit{5}, {}));
  auto fourth = ask(r, req());
  EXPECT_EQ(error_of(fourth), msg::error_code::timeout);
  EXPECT_GE(counter(local_status(r), "overloaded"), 1);
}

TEST_F(router_test, receiver_holding_max_abandoned_timed_out_requests_gets_no_more_until_it_answers) {
  auto rc = local_only();
  rc.max_abandoned = 2;
  rc.default_window = 64;  // far from full: the refusal below is the abandoned limit's
  auto r = router(rc);
  auto holder = keep(sys().spawn(holding_service));
  enroll(r, "holder", holder);
  enroll(r, "service", keep(sys().spawn(batch_service, std::string("service"))));
  auto req = [&] { return make_request("client", "holder", msg::status_request{}, {}, milliseconds(100)); };

  // Two requests time out; the receiver still holds both (the router keeps a handler for each).
  EXPECT_EQ(error_of(ask(r, req())), msg::error_code::timeout);
  EXPECT_EQ(error_of(ask(r, req())), msg::error_code::timeout);
  auto before = local_status(r);
  EXPECT_EQ(before.in_flight, 0u) << "timed-out requests gave their credit back";
  EXPECT_EQ(counter(before, "delivered_local"), 2);

  // The third is refused at once and never delivered.
  auto third = ask(r, req());
  ASSERT_EQ(error_of(third), msg::error_code::overloaded);
  EXPECT_EQ(third.head.receiver, "client");
  EXPECT_NE(std::get<msg::error>(third.content).message.find("timed out"), std::string::npos)
      << std::get<msg::error>(third.content).message;

  // Per receiver: another actor is still served, and the router answers status by its address.
  EXPECT_FALSE(is_error(ask(r, make_request("client", "service", msg::status_request{}, {}))));
  auto s = status_of(r, "router");
  EXPECT_EQ(s.name, "router");
  EXPECT_EQ(counter(s, "timeouts"), 2);
  EXPECT_EQ(counter(s, "overloaded"), 1);
  EXPECT_EQ(counter(s, "delivered_local"), 3);  // two to the holder, one to the service

  // The receiver answers what it held (late: orphan replies); from then on it gets requests again.
  self()->send(holder, atom::post_v, msg::buffer{});
  for (int i = 0; i < 500 && counter(local_status(r), "orphan_replies") < 2; ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(counter(local_status(r), "orphan_replies"), 2);
  EXPECT_EQ(error_of(ask(r, req())), msg::error_code::timeout) << "delivered again (and held), not refused";
  EXPECT_EQ(counter(local_status(r), "overloaded"), 1);
}

// Answers every request with an ack.
addressable_actor::behavior_type ack_service(addressable_actor::pointer) {
  return {
      [](atom::deliver, const msg::buffer& b) { return hllm::make_reply(msg::read_header(b)->head, msg::ack{"ok"}); },
      [](atom::post, const msg::buffer&) {},
  };
}

TEST_F(router_test, large_frame_from_the_network_reaches_the_receiver_without_a_copy) {
  // The receiving side's only copy of a large message is the kernel's, into ZeroMQ's block: the router shares
  // that block (status counter frames_shared) instead of copying it into aligned memory.
  auto a = router(on_tcp("router/a"));
  auto b = router(on_tcp("router/b"));
  route(a, "sink", endpoints(b).at(0));
  route(b, "client", endpoints(a).at(0));
  enroll(b, "sink", keep(sys().spawn(ack_service)));
  msg::cache_put put;
  put.rows.type = msg::dtype::u8;
  put.rows.shape = {1 << 20};
  put.rows.data.assign(std::size_t{1} << 20, std::byte{7});
  auto reply = ask(a, make_request("client", "sink", put, {}, milliseconds(10000)));
  ASSERT_TRUE(std::holds_alternative<msg::ack>(reply.content)) << msg::to_string(msg::kind_of(reply.content));
  auto at_b = local_status(b);
  EXPECT_EQ(counter(at_b, "frames_in"), 1);
  EXPECT_GT(counter(at_b, "bytes_in"), 1 << 20);
  EXPECT_EQ(counter(at_b, "frames_shared"), 1);
  auto at_a = local_status(a);
  EXPECT_EQ(counter(at_a, "frames_in"), 1);
  EXPECT_EQ(counter(at_a, "frames_shared"), 0) << "the small ack is copied into aligned memory";
}

TEST_F(router_test, envelopes_of_another_job_epoch_are_fenced_out) {
  auto rc = local_only();
  rc.job_id = 9;
  rc.job_epoch = 2;
  auto r = router(rc);
  enroll(r, "service", keep(sys().spawn(batch_service, std::string("service"))));
  auto batch_req = msg::batch_request{{1, 0, 1, 0}, 1, 1, 5};
  EXPECT_EQ(error_of(ask(r, make_request("client", "service", batch_req, {9, 1}))), msg::error_code::stale_epoch);
  EXPECT_EQ(error_of(ask(r, make_request("client", "service", batch_req, {8, 2}))), msg::error_code::stale_epoch);
  EXPECT_FALSE(is_error(ask(r, make_request("client", "service", batch_req, {9, 2}))));

  // The job moves to epoch 3: epoch 2 is now the stale one.
  self()->send(r, atom::epoch_v, std::uint32_t{3});
  EXPECT_EQ(error_of(ask(r, make_request("client", "service", batch_req, {9, 2}))), msg::error_code::stale_epoch);
  EXPECT_FALSE(is_error(ask(r, make_request("client", "service", batch_req, {9, 3}))));
}

TEST_F(router_test, dead_local_actor_leaves_the_address_book) {
  auto r = router(local_only());
  auto service = sys().spawn(batch_service, std::string("service"));
  enroll(r, "service", service);
  caf::anon_send_exit(service, caf::exit_reason::kill);
  msg::error_code code = msg::error_code::unknown;
  for (int i = 0; i < 100 && code != msg::error_code::unknown_receiver; ++i) {
    code = error_of(ask(r, make_request("client", "service", msg::status_request{}, {})));
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(code, msg::error_code::unknown_receiver);
}

// ---- the I/O thread hands frames over in batches ----

TEST(router_io_test, frames_read_in_one_wake_up_reach_the_router_together_and_in_order) {
  // Frames already waiting when the thread starts are read in one wake-up: they must arrive complete, in the order
  // sent, in hand-overs of at most max_batch frames, and together (not one CAF message per frame).
  auto ctx = std::make_shared<zmq::context_t>(1);
  detail::io_options options;
  options.bind = {"tcp://127.0.0.1:*"};
  options.max_bytes = 1 << 20;
  detail::router_io io(ctx, options);
  zmq::socket_t peer(*ctx, zmq::socket_type::dealer);
  peer.set(zmq::sockopt::linger, 0);
  peer.connect(io.endpoints().at(0));
  constexpr std::uint64_t frames = 300;
  for (std::uint64_t i = 0; i < frames; ++i) {
    std::uint64_t words[2] = {i, 0};
    peer.send(zmq::buffer(words, sizeof(words)), zmq::send_flags::none);
  }
  std::this_thread::sleep_for(milliseconds(300));  // ZeroMQ moves them to the bound socket meanwhile

  std::mutex m;
  std::condition_variable cv;
  std::vector<std::vector<std::uint64_t>> batches;
  std::uint64_t received = 0;
  io.start([&](std::vector<msg::buffer> batch) {
    std::vector<std::uint64_t> ids;
    for (const auto& b : batch) {
      ids.push_back(b.size() == 16 ? *reinterpret_cast<const std::uint64_t*>(b.data()) : ~std::uint64_t{0});
    }
    io.counters().queued.fetch_sub(static_cast<std::int64_t>(batch.size()));  // handled, as the router actor does
    std::lock_guard<std::mutex> lock(m);
    received += ids.size();
    batches.push_back(std::move(ids));
    cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lock(m);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return received >= frames; });
  }
  io.stop();

  std::vector<std::uint64_t> order;
  std::size_t largest = 0;
  for (const auto& b : batches) {
    EXPECT_FALSE(b.empty());
    EXPECT_LE(b.size(), detail::router_io::max_batch);
    largest = std::max(largest, b.size());
    order.insert(order.end(), b.begin(), b.end());
  }
  ASSERT_EQ(order.size(), frames);
  for (std::uint64_t i = 0; i < frames; ++i) {
    ASSERT_EQ(order[i], i) << "frame " << i << " out of order";
  }
  EXPECT_GT(largest, 1u) << "every frame came alone: " << batches.size() << " hand-overs";
  EXPECT_LT(batches.size(), frames);
  EXPECT_EQ(io.counters().inbound_batches.load(), batches.size());
  EXPECT_EQ(io.counters().frames_in.load(), frames);
  EXPECT_EQ(io.counters().queued.load(), 0);
}

// ---- bad bytes at a live router socket ----

std::string encode_bytes(const msg::buffer& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

TEST_F(router_test, garbage_truncated_and_oversized_frames_leave_the_router_answering_status) {
  auto victim_cfg = on_tcp("router/victim", 3, 1);
  victim_cfg.limits.max_bytes = 64 * 1024;
  auto victim = router(victim_cfg);
  auto victim_ep = endpoints(victim).at(0);
  auto r = router(on_tcp("router/test", 3, 1));
  route(r, "router/victim", victim_ep);
  route(victim, "probe", endpoints(r).at(0));

  // A sink socket stands for a known sender, to receive the error replies the victim sends back.
  zmq::context_t ctx;
  zmq::socket_t sink(ctx, zmq::socket_type::router);
  sink.set(zmq::sockopt::linger, 0);
  sink.bind("tcp://127.0.0.1:*");
  route(victim, "attacker", sink.get(zmq::sockopt::last_endpoint));

  zmq::socket_t attacker(ctx, zmq::socket_type::dealer);
  attacker.set(zmq::sockopt::linger, 0);
  attacker.connect(victim_ep);
  std::mt19937 rng(11);
  int garbage = 0;
  for (int i = 0; i < 200; ++i, ++garbage) {
    std::string junk(8 * (1 + rng() % 40), '\0');
    for (auto& c : junk) {
      c = static_cast<char>(rng());
    }
    attacker.send(zmq::buffer(junk), zmq::send_flags::none);
  }
  std::string valid = encode_bytes(make_request("attacker", "router/victim", msg::status_request{}, {3, 1}));
  for (std::size_t n = 0; n < valid.size(); n += 8, ++garbage) {
    attacker.send(zmq::buffer(valid.substr(0, n)), zmq::send_flags::none);  // truncated
  }
  attacker.send(zmq::buffer(valid + "1234567"), zmq::send_flags::none);  // not a whole number of words
  ++garbage;
  attacker.send(zmq::buffer(std::string(64 * 1024 + 1000, 'x')), zmq::send_flags::none);  // over the limit
  attacker.send(zmq::buffer(valid), zmq::send_flags::sndmore);                            // two payload frames
  attacker.send(zmq::buffer(valid), zmq::send_flags::none);
  // A wrong schema version and a stale epoch from a known sender: dropped, and answered with an error.
  msg::envelope stale;
  stale.head = {0, "attacker", "router/victim", 41, false, 3, 0, 0};
  stale.content = msg::status_request{};
  attacker.send(zmq::buffer(encode_bytes(msg::encode(stale))), zmq::send_flags::none);
  std::string wrong_version = encode_bytes(make_request("attacker", "router/victim", msg::status_request{}, {3, 1}));
  wrong_version[16] = 99;  // `version` opens the root struct (segment table 8 bytes, root pointer 8 bytes)
  attacker.send(zmq::buffer(wrong_version), zmq::send_flags::none);

  std::vector<msg::error_code> replies;
  sink.set(zmq::sockopt::rcvtimeo, 5000);
  for (int i = 0; i < 2; ++i) {
    zmq::message_t id;
    zmq::message_t payload;
    if (!sink.recv(id) || !sink.recv(payload)) {
      break;
    }
    auto d = msg::decode(msg::buffer::copy_of(payload.data(), payload.size()));
    ASSERT_TRUE(d.ok()) << d.error().what;
    replies.push_back(error_of(d.value()));
  }
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0], msg::error_code::stale_epoch);
  EXPECT_EQ(replies[1], msg::error_code::version_mismatch);

  // Still alive and answering, with every drop counted.
  auto s = status_of(r, "router/victim", {3, 1});
  EXPECT_EQ(s.name, "router/victim");
  EXPECT_GE(counter(s, "malformed"), garbage);
  EXPECT_EQ(counter(s, "oversized_frames"), 1);
  EXPECT_EQ(counter(s, "bad_frames"), 1);
  EXPECT_EQ(counter(s, "stale_epoch"), 1);
  EXPECT_EQ(counter(s, "version_mismatch"), 1);
  EXPECT_EQ(counter(s, "received_remote"), 2);  // the stale one and this status request
}

// ---- ask<Request> (actors/ask.hpp): the typed client call and its retry policy ----

TEST_F(router_test, ask_returns_the_typed_reply_the_protocol_declares) {
  auto r = router(local_only());
  enroll(r, "service", keep(sys().spawn(batch_service, std::string("service"))));
  msg::batch_request req{{1, 0, 4, 0}, 1, 3, 5};
  auto got = hllm::ask(self(), r, "client", {}, "service", req);
  ASSERT_TRUE(got.ok()) << got.failure().message;
  static_assert(std::is_same_v<std::decay_t<decltype(got.value())>, msg::batch>);
  EXPECT_EQ(got.value(), expected_batch(req));
}

TEST_F(router_test, ask_returns_a_refusal_at_once_and_does_not_retry_it) {
  auto r = router(local_only());
  enroll(r, "service", keep(sys().spawn(batch_service, std::string("service"))));
  retry_policy policy;
  policy.retry_for = milliseconds(5000);
  auto start = std::chrono::steady_clock::now();
  // The service does not accept coverage_request (test_actors.hpp).
  auto got = hllm::ask(self(), r, "client", {}, "service", msg::coverage_request{"v"}, policy);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.failure().code, msg::error_code::rejected) << got.failure().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(2000)) << "a refusal is not transient";
}

TEST_F(router_test, ask_retries_a_receiver_that_is_not_there_yet_until_it_answers_or_gives_up) {
  auto r = router(local_only());
  auto gone = hllm::ask(self(), r, "client", {}, "late", msg::status_request{});
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.failure().code, msg::error_code::unknown_receiver) << "one attempt by default";

  retry_policy policy;
  policy.retry_for = milliseconds(10000);
  policy.pause = milliseconds(50);
  auto service = keep(sys().spawn(batch_service, std::string("late")));
  std::thread late([&] {  // enrolls `late` while ask() is retrying (its own scoped actor: self() is busy)
    std::this_thread::sleep_for(milliseconds(300));
    caf::scoped_actor other{sys()};
    other->request(r, caf::infinite, atom::enroll_v, std::string("late"), service)
        .receive([](bool) {}, [](caf::error&) {});
  });
  auto got = hllm::ask(self(), r, "client", {}, "late", msg::status_request{}, policy);
  late.join();
  ASSERT_TRUE(got.ok()) << got.failure().message;
  EXPECT_EQ(got.value().name, "late");
}

}  // namespace
}  // namespace hllm::testing
