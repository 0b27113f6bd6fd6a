// What crosses the wire: plain Cap'n Proto (the official capnp tool decodes a captured frame), and CURVE
// authentication (a peer without an authorized key delivers nothing).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>
#include <zmq.hpp>

#include "actors/curve_keys.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "actors/status_board.hpp"
#include "messages/protocol.hpp"
#include "tests/actors/router_fixture.hpp"

namespace hllm::testing {
namespace {

using std::chrono::milliseconds;
using wire_test = router_fixture;
namespace fs = std::filesystem;

struct temp_dir {
  fs::path path;
  temp_dir() {
    path = fs::temp_directory_path() / ("hllm-wire-test-" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
};

std::string run_command(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) {
    return out;
  }
  char chunk[4096];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof(chunk), p)) > 0) {
    out.append(chunk, n);
  }
  ::pclose(p);
  return out;
}

TEST_F(wire_test, capnp_tool_decodes_a_frame_captured_from_the_wire) {
  router_config rc;
  rc.name = "router/test";
  auto r = router(rc);
  zmq::context_t ctx;
  zmq::socket_t sink(ctx, zmq::socket_type::router);
  sink.set(zmq::sockopt::linger, 0);
  sink.set(zmq::sockopt::rcvtimeo, 5000);
  sink.bind("tcp://127.0.0.1:*");
  route(r, "sink", sink.get(zmq::sockopt::last_endpoint));

  msg::batch b;
  b.at = {1, 2, 345, 0};
  b.user_ids = {77};
  b.item_ids = {11, 12, 13};
  tell(r, make_oneway("loader/0", "sink", b, {}));
  zmq::message_t id;
  zmq::message_t frame;
  ASSERT_TRUE(sink.recv(id));
  ASSERT_TRUE(id.more()) << "a ROUTER socket sees [identity][payload]";
  ASSERT_TRUE(sink.recv(frame));
  ASSERT_FALSE(frame.more());

  temp_dir dir;
  auto file = dir.path / "captured.bin";
  std::ofstream(file, std::ios::binary).write(static_cast<const char*>(frame.data()),
                                               static_cast<std::streamsize>(frame.size()));
  std::string text = run_command("capnp decode " + std::string(HLLM_ENVELOPE_SCHEMA_FILE) + " Envelope < " +
                                 file.string() + " 2>&1");
  EXPECT_NE(text.find("sender = \"loader/0\""), std::string::npos) << text;
  EXPECT_NE(text.find("receiver = \"sink\""), std::string::npos) << text;
  EXPECT_NE(text.find("itemIds = [11, 12, 13]"), std::string::npos) << text;
  EXPECT_NE(text.find("step = 345"), std::string::npos) << text;

  // A large tensor is encoded by reference into a multi-segment message (codec.cpp): still plain Cap'n Proto.
  msg::cache_put put;
  put.shard = 3;
  put.model_version = "ckpt-7";
  put.item_ids = {5};
  put.rows.type = msg::dtype::u8;
  put.rows.shape = {4100};
  put.rows.data.assign(4100, std::byte{'A'});
  tell(r, make_oneway("cache/3", "sink", put, {}));
  ASSERT_TRUE(sink.recv(id));
  ASSERT_TRUE(sink.recv(frame));
  ASSERT_GT(reinterpret_cast<const std::uint32_t*>(frame.data())[0], 0u) << "expected more than one segment";
  std::ofstream(file, std::ios::binary | std::ios::trunc)
      .write(static_cast<const char*>(frame.data()), static_cast<std::streamsize>(frame.size()));
  text = run_command("capnp decode " + std::string(HLLM_ENVELOPE_SCHEMA_FILE) + " Envelope < " + file.string() +
                     " 2>&1");
  EXPECT_NE(text.find("modelVersion = \"ckpt-7\""), std::string::npos) << text.substr(0, 2000);
  EXPECT_NE(text.find("shape = [4100]"), std::string::npos) << text.substr(0, 2000);
  EXPECT_NE(text.find("data = \"" + std::string(4100, 'A') + "\""), std::string::npos) << text.substr(0, 2000);
}

class curve_test : public router_fixture {
 protected:
  void SetUp() override {
    write_curve_keypair((dir_.path / "job").string(), generate_curve_keypair());
    write_curve_keypair((dir_.path / "intruder").string(), generate_curve_keypair());
  }
  router_config with_key(std::string name, const std::string& key) {
    router_config rc;
    rc.name = std::move(name);
    rc.curve.key_file = (dir_.path / (key + "_secret")).string();
    return rc;
  }
  std::string public_key(const std::string& key) {
    return read_curve_key_file((dir_.path / key).string()).public_key;
  }
  temp_dir dir_;
};

TEST_F(curve_test, authorized_peer_gets_through_and_others_deliver_nothing) {
  auto server = router(with_key("router/server", "job"));
  auto server_ep = endpoints(server).at(0);

  // A peer holding the job's key pair: its request is served.
  auto friendly = router(with_key("router/friend", "job"));
  route(friendly, "router/server", server_ep);
  route(server, "probe", endpoints(friendly).at(0));
  auto s = status_of(friendly, "router/server");
  EXPECT_EQ(s.name, "router/server");
  auto frames_before = counter(local_status(server), "frames_in");
  EXPECT_GE(frames_before, 1);

  // A peer with another key pair (it knows the server's public key, but is not authorized): nothing arrives.
  auto intruder = router(with_key("router/intruder", "intruder"));
  route(intruder, "router/server", server_ep, public_key("job"));
  auto reply = ask(intruder, make_request("probe", "router/server", msg::status_request{}, {}, milliseconds(500)));
  EXPECT_EQ(error_of(reply), msg::error_code::timeout);

  // A peer without CURVE at all: the handshake fails, nothing arrives.
  zmq::context_t ctx;
  zmq::socket_t plain(ctx, zmq::socket_type::dealer);
  plain.set(zmq::sockopt::linger, 0);
  plain.connect(server_ep);
  auto bytes = make_request("probe", "router/server", msg::status_request{}, {});
  plain.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
  std::this_thread::sleep_for(milliseconds(300));

  auto after = local_status(server);
  EXPECT_EQ(counter(after, "frames_in"), frames_before) << "an unauthenticated peer delivered a frame";
  EXPECT_GE(counter(after, "auth_denied"), 1);
  EXPECT_GE(counter(after, "auth_granted"), 1);
}

TEST_F(curve_test, key_files_round_trip_and_bad_files_are_refused) {
  auto pair = read_curve_key_file((dir_.path / "job_secret").string());
  EXPECT_EQ(pair.public_key, public_key("job"));
  EXPECT_EQ(pair.secret_key.size(), 40u);
  EXPECT_TRUE(read_curve_key_file((dir_.path / "job").string()).secret_key.empty()) << "public file has no secret";
  EXPECT_EQ(fs::status(dir_.path / "job_secret").permissions() & fs::perms::group_read, fs::perms::none);
  std::ofstream(dir_.path / "broken") << "public-key = \"short\"\n";
  EXPECT_THROW(read_curve_key_file((dir_.path / "broken").string()), hllm::error);
  router_config rc;
  rc.curve.key_file = (dir_.path / "job").string();  // the public file: no secret to serve with
  EXPECT_THROW(spawn_router(sys(), rc), hllm::error);
}

TEST_F(curve_test, hllm_keygen_writes_a_pair_the_router_serves_with) {
  auto base = (dir_.path / "made-by-keygen").string();
  ASSERT_EQ(std::system((std::string(HLLM_KEYGEN) + " --out " + base + " > /dev/null").c_str()), 0);
  EXPECT_NE(std::system((std::string(HLLM_KEYGEN) + " --out " + base + " > /dev/null 2>&1").c_str()), 0)
      << "keygen must not overwrite a key pair without --force";
  auto server = router(with_key("router/server", "made-by-keygen"));
  auto client = router(with_key("router/client", "made-by-keygen"));
  route(client, "router/server", endpoints(server).at(0));
  route(server, "probe", endpoints(client).at(0));
  EXPECT_EQ(status_of(client, "router/server").name, "router/server");
}

// The protocol table (messages/protocol.hpp) is what the actors do: each answers the requests its row lists with
// the declared reply body and refuses every other body with `rejected`.
template <std::size_t... I>
msg::body default_body(std::size_t k, std::index_sequence<I...>) {
  msg::body out;
  ((k == I ? (void)(out = std::variant_alternative_t<I, msg::body>{}) : void()), ...);
  return out;
}

template <class Core>
void expect_answers_as_the_table_says(Core& core, std::string_view kind,
                                      const std::map<msg::body_kind, msg::body>& requests) {
  for (std::size_t k = 0; k < msg::body_kind_count; ++k) {
    auto request_kind = static_cast<msg::body_kind>(k);
    auto it = requests.find(request_kind);
    msg::body request =
        it != requests.end() ? it->second : default_body(k, std::make_index_sequence<msg::body_kind_count>{});
    msg::body reply = core.handle(request);
    if (msg::accepts(kind, request_kind)) {
      ASSERT_NE(it, requests.end()) << "give the test a valid " << msg::to_string(request_kind);
      EXPECT_EQ(msg::kind_of(reply), *msg::reply_kind_of(request_kind))
          << kind << " answers " << msg::to_string(request_kind) << " with " << msg::to_string(msg::kind_of(reply));
    } else {
      ASSERT_EQ(msg::kind_of(reply), msg::body_kind::error) << kind << " accepted " << msg::to_string(request_kind);
      EXPECT_EQ(std::get<msg::error>(reply).code, msg::error_code::rejected);
    }
  }
}

TEST(protocol_table, the_cache_shard_answers_what_its_row_lists_and_refuses_the_rest) {
  embedding_cache_shard shard({"cache-shard-1", 1, 2, 10, ""});
  msg::tensor rows;
  rows.type = msg::dtype::f32;
  rows.shape = {2, 3};
  rows.data.resize(6 * sizeof(float));
  const std::string v = "0000000000000001";
  expect_answers_as_the_table_says(shard, msg::protocol::embedding_cache_shard::name,
                                   {{msg::body_kind::cache_put, msg::cache_put{1, v, {1, 3}, rows}},
                                    {msg::body_kind::cache_lookup, msg::cache_lookup{1, v, {1, 3}}},
                                    {msg::body_kind::coverage_request, msg::coverage_request{v}},
                                    {msg::body_kind::checkpoint_request, msg::checkpoint_request{}},
                                    {msg::body_kind::status_request, msg::status_request{}}});
  EXPECT_EQ(std::get<msg::status_reply>(shard.handle(msg::status_request{})).kind, "embedding_cache_shard");
}

TEST(protocol_table, a_status_board_answers_status_only) {
  status_board board("coordinator", std::string(msg::protocol::coordinator::name));
  expect_answers_as_the_table_says(board, msg::protocol::coordinator::name,
                                   {{msg::body_kind::status_request, msg::status_request{}}});
}

}  // namespace
}  // namespace hllm::testing
