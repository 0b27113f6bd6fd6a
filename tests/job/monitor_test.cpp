// The monitor: real actors (a data loader, a cache shard) behind an in-process router, polled through it; its
// console served over real HTTP on 127.0.0.1 (issue 11).
#include <gtest/gtest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <caf/all.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "actors/addressable.hpp"
#include "actors/data_loader.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "actors/monitor.hpp"
#include "actors/monitor_console.hpp"
#include "job_test_util.hpp"
#include "storage/error.hpp"

using namespace hllm;
using nlohmann::json;

namespace {

std::string tiny() { return test::tiny_dataset(); }

struct actor_env : test::local_actor_env {
  // The actors the monitor watches in these tests: embedding cache shard "cache-shard-0" (shard 0 of `shard_count`,
  // 10 items), and with it data loader "loader-0" over the tiny dataset.
  void spawn_cache_shard(uint32_t shard_count = 1) {
    embedding_cache_shard_options so;
    so.name = "cache-shard-0";
    so.shard = 0;
    so.shard_count = shard_count;
    so.num_items = 10;
    spawn_embedding_cache_shard(*sys, router, so);
  }
  void spawn_loader_and_cache_shard(uint32_t shard_count) {
    spawn_data_loader(*sys, router, {"loader-0", tiny(), 2020});
    spawn_cache_shard(shard_count);
  }

  msg::body ask(const std::string& to, msg::body body) {
    caf::scoped_actor self{*sys};
    msg::body out = msg::error{msg::error_code::unknown, "no reply"};
    self->request(router, caf::infinite, atom::request_v,
                  make_request("test", to, std::move(body), {}, std::chrono::milliseconds(5000)))
        .receive(
            [&](const msg::buffer& b) {
              auto env = msg::decode(b);
              if (env) out = env->content;
            },
            [&](const caf::error& e) { out = msg::error{msg::error_code::unknown, caf::to_string(e)}; });
    return out;
  }
};

// A fresh directory per test, removed afterwards.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    path = std::filesystem::temp_directory_path() /
           ("hllm-monitor-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return json::parse(s.str());
}

const json& actor_entry(const json& doc, const std::string& name) {
  for (const auto& e : doc.at("actors")) {
    if (e.at("name") == name) return e;
  }
  throw std::runtime_error("no entry for " + name + " in " + doc.dump());
}

// An actor that answers status only after `delay`: slower than the monitor's timeout.
struct slow_actor {
  std::chrono::milliseconds delay;
  msg::body handle(const msg::body&) {
    std::this_thread::sleep_for(delay);
    msg::status_reply s;
    s.name = "slow";
    s.kind = "slow";
    return s;
  }
};

msg::cache_put three_rows() {
  msg::cache_put p;
  p.model_version = "abc";
  p.item_ids = {2, 4, 6};
  p.rows.type = msg::dtype::f32;
  p.rows.shape = {3, 4};
  std::vector<float> v(12, 0.5f);
  p.rows.data.resize(v.size() * sizeof(float));
  std::memcpy(p.rows.data.data(), v.data(), p.rows.data.size());
  return p;
}

status_snapshot good(std::uint64_t step, std::int64_t counter) {
  status_snapshot s;
  s.reachable = true;
  s.reply.name = "a";
  s.reply.kind = "data_loader";
  s.reply.state = msg::actor_state::running;
  s.reply.step = step;
  s.reply.counters = {{"batches_served", counter}};
  s.taken = std::chrono::steady_clock::now();
  return s;
}

status_snapshot bad(std::string why) {
  status_snapshot s;
  s.error = std::move(why);
  s.taken = std::chrono::steady_clock::now();
  return s;
}

}  // namespace

TEST(monitor, status_file_holds_the_counters_of_real_actors_after_traffic) {
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  temp_dir tmp;
  actor_env env;
  env.spawn_loader_and_cache_shard(2);

  monitor_options mo;
  mo.targets = {"loader-0", "cache-shard-0", "nobody-here", "router"};
  mo.interval = std::chrono::hours(1);  // the thread's first round only; this test polls by hand
  mo.timeout = std::chrono::milliseconds(3000);
  mo.status_file = (tmp.path / "status.json").string();
  monitor_service mon(*env.sys, env.router, mo);

  // Traffic: two batches, one put of three rows, one lookup of all three plus a missing one.
  for (std::uint64_t step : {0u, 1u}) {
    msg::batch_request r;
    r.at = {1, 0, step, 0};
    r.world_size = 1;
    r.batch_size = 4;
    r.max_length = 3;
    ASSERT_TRUE(std::holds_alternative<msg::batch>(env.ask("loader-0", r)));
  }
  ASSERT_TRUE(std::holds_alternative<msg::ack>(env.ask("cache-shard-0", three_rows())));
  msg::cache_lookup l;
  l.model_version = "abc";
  l.item_ids = {2, 4, 6, 8};
  ASSERT_TRUE(std::holds_alternative<msg::cache_rows>(env.ask("cache-shard-0", l)));

  mon.poll_once();
  auto doc = read_json(tmp.path / "status.json");
  const auto& loader = actor_entry(doc, "loader-0");
  EXPECT_EQ(loader.at("kind"), "data_loader");
  EXPECT_EQ(loader.at("state"), "running");
  EXPECT_TRUE(loader.at("reachable").get<bool>());
  EXPECT_EQ(loader.at("counters").at("batches_served"), 2);
  EXPECT_GE(loader.at("age_s").get<double>(), 0.0);
  const auto& shard = actor_entry(doc, "cache-shard-0");
  EXPECT_EQ(shard.at("kind"), "embedding_cache_shard");
  EXPECT_EQ(shard.at("counters").at("puts"), 1);
  EXPECT_EQ(shard.at("counters").at("lookups"), 1);
  EXPECT_EQ(shard.at("counters").at("rows_served"), 3);
  EXPECT_EQ(shard.at("counters").at("rows_present"), 3);
  const auto& ghost = actor_entry(doc, "nobody-here");
  EXPECT_FALSE(ghost.at("reachable").get<bool>());
  EXPECT_EQ(ghost.at("state"), "unreachable");
  EXPECT_NE(ghost.at("poll_error").get<std::string>().find("unknown_receiver"), std::string::npos)
      << ghost.dump();
  EXPECT_TRUE(ghost.at("last_seen_age_s").is_null());
  EXPECT_GE(ghost.at("failed_polls").get<int>(), 1);
  // The router answers status_request under its own name: the job can watch it too.
  EXPECT_TRUE(actor_entry(doc, "router").at("reachable").get<bool>()) << actor_entry(doc, "router").dump();
  // The monitor's own block: at least the hand round (the thread's first round may have run too).
  const auto& self = doc.at("monitor");
  EXPECT_EQ(self.at("kind"), "monitor");
  EXPECT_EQ(self.at("state"), "running");
  EXPECT_GE(self.at("counters").at("rounds"), 1);
  EXPECT_EQ(self.at("counters").at("targets"), 4);
  EXPECT_EQ(self.at("counters").at("unreachable_now"), 1);
  // No temporary file left next to it.
  EXPECT_FALSE(std::filesystem::exists(tmp.path / "status.json.tmp"));

  // It answers status_request through the router like every actor.
  auto own = env.ask("monitor", msg::status_request{});
  ASSERT_TRUE(std::holds_alternative<msg::status_reply>(own));
  EXPECT_EQ(std::get<msg::status_reply>(own).kind, "monitor");
  EXPECT_EQ(std::get<msg::status_reply>(own).state, msg::actor_state::running);

  // The table for `hllm top`: a header, one line per actor, the monitor last.
  auto table = render_status_table(doc);
  std::istringstream lines(table);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 6u) << table;
  EXPECT_EQ(rows[0].rfind("NAME", 0), 0u);
  EXPECT_EQ(rows[1].rfind("loader-0", 0), 0u);
  EXPECT_NE(rows[1].find("batches_served=2"), std::string::npos) << table;
  EXPECT_NE(rows[3].find("unreachable"), std::string::npos) << table;
  EXPECT_EQ(rows[4].rfind("router", 0), 0u);
  EXPECT_EQ(rows[5].rfind("monitor", 0), 0u);
  mon.stop();
}

TEST(monitor, a_slow_actor_is_unreachable_and_the_ring_stays_bounded) {
  temp_dir tmp;
  actor_env env;
  env.spawn_cache_shard();
  // Detached: its sleep must not hold one of CAF's two scheduler threads.
  auto slow_handle = spawn_addressable<slow_actor, caf::detached>(
      *env.sys, env.router, "slow", std::make_unique<slow_actor>(slow_actor{std::chrono::milliseconds(300)}));
  monitor_options mo;
  mo.targets = {"cache-shard-0", "slow"};
  mo.interval = std::chrono::hours(1);
  mo.timeout = std::chrono::milliseconds(100);
  mo.history = 3;
  mo.status_file = (tmp.path / "status.json").string();
  monitor_service mon(*env.sys, env.router, mo);
  for (int i = 0; i < 5; ++i) mon.poll_once();

  auto shard = mon.core().history("cache-shard-0");
  ASSERT_EQ(shard.size(), 3u);
  for (const auto& s : shard) EXPECT_TRUE(s.reachable);
  auto slow = mon.core().history("slow");
  ASSERT_EQ(slow.size(), 3u);
  for (const auto& s : slow) {
    EXPECT_FALSE(s.reachable);
    EXPECT_NE(s.error.find("timeout"), std::string::npos) << s.error;
  }
  auto own = mon.core().status();
  std::map<std::string, std::int64_t> c;
  for (const auto& x : own.counters) c[x.name] = x.value;
  EXPECT_EQ(c["snapshots_held"], 6);  // 2 targets x history 3, whatever the number of rounds
  EXPECT_GE(c["rounds"], 5);
  EXPECT_GE(c["unreachable_polls"], 5);
  auto doc = read_json(tmp.path / "status.json");
  EXPECT_EQ(actor_entry(doc, "slow").at("state"), "unreachable");
  EXPECT_GE(actor_entry(doc, "slow").at("failed_polls").get<int>(), 5);
  mon.stop();
  caf::anon_send_exit(slow_handle, caf::exit_reason::user_shutdown);
}

TEST(monitor, the_ring_keeps_the_newest_snapshots_and_an_unreachable_actor_its_last_report) {
  monitor_options mo;
  mo.targets = {"a"};
  mo.history = 4;
  monitor core(mo);
  for (std::uint64_t i = 0; i < 10; ++i) core.record("a", good(i, static_cast<std::int64_t>(i * 10)));
  auto h = core.history("a");
  ASSERT_EQ(h.size(), 4u);
  for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(h[k].reply.step, 6 + k);

  core.record("a", bad("timeout: a did not answer"));
  auto doc = core.snapshot_json();
  const auto& a = actor_entry(doc, "a");
  EXPECT_EQ(a.at("state"), "unreachable");
  EXPECT_FALSE(a.at("reachable").get<bool>());
  EXPECT_EQ(a.at("kind"), "data_loader");                     // from its last report
  EXPECT_EQ(a.at("counters").at("batches_served"), 90);        // ditto
  EXPECT_FALSE(a.at("last_seen_age_s").is_null());
  EXPECT_EQ(a.at("poll_error"), "timeout: a did not answer");
  EXPECT_EQ(a.at("failed_polls"), 1);

  // Once the ring holds only failures, nothing stale is shown.
  for (int i = 0; i < 4; ++i) core.record("a", bad("gone"));
  doc = core.snapshot_json();
  EXPECT_TRUE(actor_entry(doc, "a").at("counters").empty());
  EXPECT_TRUE(actor_entry(doc, "a").at("last_seen_age_s").is_null());
  EXPECT_EQ(actor_entry(doc, "a").at("failed_polls"), 5);

  // Removing a target drops its ring; a late result for it does not bring it back.
  core.remove_target("a");
  core.record("a", good(1, 1));
  EXPECT_TRUE(core.history("a").empty());
  EXPECT_TRUE(core.snapshot_json().at("actors").empty());
  // Anything but status_request is refused with an error body.
  EXPECT_TRUE(std::holds_alternative<msg::error>(core.handle(msg::batch_request{})));
}

TEST(monitor, the_table_has_fixed_columns_and_cuts_long_cells) {
  monitor_options mo;
  mo.targets = {"loader-0", "x"};
  monitor core(mo);
  auto s = good(7, 3);
  s.reply.last_error = std::string(200, 'e');
  core.record("loader-0", s);
  core.record("x", bad("unknown_receiver: no actor 'x' in this process"));
  auto table = render_status_table(core.snapshot_json());
  std::istringstream lines(table);
  std::vector<std::string> rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  ASSERT_EQ(rows.size(), 4u) << table;
  // Every column starts at the same offset on every line.
  auto kind_at = rows[0].find("KIND");
  auto state_at = rows[0].find("STATE");
  ASSERT_NE(kind_at, std::string::npos);
  EXPECT_EQ(rows[1].find("data_loader"), kind_at) << table;
  EXPECT_EQ(rows[1].find("running"), state_at) << table;
  EXPECT_EQ(rows[2].find("unreachable"), state_at) << table;
  EXPECT_EQ(rows[3].find("monitor"), 0u);
  EXPECT_NE(rows[1].find("e~"), std::string::npos) << "a long last_error is cut";
  EXPECT_LT(rows[1].size(), 200u + kind_at);
  EXPECT_THROW(render_status_table(json::array()), hllm::error);
}

TEST(monitor, the_thread_polls_on_its_own_and_stop_joins_it) {
  temp_dir tmp;
  actor_env env;
  env.spawn_cache_shard();
  monitor_options mo;
  mo.targets = {"cache-shard-0"};
  mo.interval = std::chrono::milliseconds(5);
  mo.history = 2;
  mo.status_file = (tmp.path / "status.json").string();
  monitor_service mon(*env.sys, env.router, mo);
  auto rounds = [&] {
    for (const auto& c : mon.core().status().counters) {
      if (c.name == "rounds") return c.value;
    }
    return std::int64_t{-1};
  };
  // Liveness only (no speed claim): the thread must get to three rounds at some point.
  for (int i = 0; i < 6000 && rounds() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(rounds(), 3);
  mon.stop();
  auto after = rounds();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(rounds(), after) << "no round after stop()";
  EXPECT_EQ(mon.core().history("cache-shard-0").size(), 2u);
  auto doc = read_json(tmp.path / "status.json");
  EXPECT_EQ(doc.at("monitor").at("state"), "stopped");
  EXPECT_EQ(actor_entry(doc, "cache-shard-0").at("state"), "running");
  // It left the router's address book.
  auto gone = env.ask("monitor", msg::status_request{});
  ASSERT_TRUE(std::holds_alternative<msg::error>(gone));
  EXPECT_EQ(std::get<msg::error>(gone).code, msg::error_code::unknown_receiver);
  mon.stop();  // idempotent
}

// ---- the console (issue 11): the monitor's HTTP server with real actors behind a real router ----

namespace {

// GET through a fresh connection; status -1 when the request failed.
struct http_result {
  int status = -1;
  std::string body;
  httplib::Headers headers;
};

http_result http_get(int port, const std::string& path, const httplib::Headers& h = {}) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(10, 0);
  auto r = cli.Get(path, h);
  if (!r) return {};
  return {r->status, r->body, r->headers};
}

// Sends raw bytes on a new connection and returns the response's status line ("" when the server closed without
// one).
std::string raw_request(int port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "connect failed";
  }
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    auto n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may close early on an oversized request
    sent += static_cast<std::size_t>(n);
  }
  std::string got;
  char buf[4096];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
    if (got.find("\r\n") != std::string::npos) break;
  }
  ::close(fd);
  return got.substr(0, got.find("\r\n"));
}

// A job directory as a job leaves it: metrics lines (steps of two stages, validations, a checkpoint, a respawn) and
// checkpoint directories.
void write_job_dir(const std::filesystem::path& dir, int steps) {
  std::filesystem::create_directories(dir / "checkpoints" / "stage1-e0-s10" / "trainer");
  std::filesystem::create_directories(dir / "stage1" / "best");
  std::ofstream(dir / "checkpoints" / "stage1-e0-s10" / "trainer" / "model.safetensors") << std::string(1000, 'x');
  std::ofstream(dir / "checkpoints" / "stage1-e0-s10" / "state.json") << "{}";
  std::ofstream(dir / "checkpoints" / "latest") << "stage1-e0-s10\n";
  std::ofstream(dir / "stage1" / "best" / "model.safetensors") << std::string(500, 'y');
  std::ofstream m(dir / "metrics.jsonl");
  for (int i = 0; i < steps; ++i) {
    m << json{{"event", "step"}, {"model", "stage1"}, {"epoch", i / 10}, {"epoch_step", i % 10}, {"rank", 0},
              {"step", i}, {"loss", 5.0 - i * 0.01}, {"nce_top10_acc", 0.1 + i * 0.001}, {"lr", 1e-3}}
             .dump()
      << "\n";
  }
  m << json{{"event", "validation"}, {"model", "stage1"}, {"epoch", 0}, {"N@200", 21.5}, {"N@10", 5.0},
            {"R@10", 9.0}, {"R@200", 80.0}}.dump() << "\n";
  m << json{{"event", "checkpoint"}, {"checkpoint", "stage1-e0-s10"}, {"bytes", 1002}, {"seconds", 0.25}}.dump()
    << "\n";
  m << json{{"event", "respawn"}, {"worker", "worker-1"}, {"actors", {"loader-1"}}, {"respawns", 1},
            {"reason", "exited with signal 9"}}.dump() << "\n";
  m << R"({"event":"step","model":"sta)";  // a line still being written: not read until it is complete
}

bool have(const char* program) {
  return std::system((std::string("command -v ") + program + " >/dev/null 2>&1").c_str()) == 0;
}

// `promtool check metrics` on TEXT: its exit status and output.
std::pair<int, std::string> promtool_check(const std::string& text, const std::filesystem::path& dir) {
  auto in = dir / "metrics.txt";
  std::ofstream(in) << text;
  std::string cmd = "promtool check metrics < '" + in.string() + "' 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = ::pclose(p);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
}

struct console_fixture {
  temp_dir tmp;
  actor_env env;
  std::unique_ptr<monitor_service> mon;

  explicit console_fixture(console_options co = {}, int steps = 30) {
    env.spawn_loader_and_cache_shard(1);
    write_job_dir(tmp.path / "job", steps);
    monitor_options mo;
    mo.targets = {"loader-0", "cache-shard-0", "router"};
    mo.interval = std::chrono::hours(1);  // the thread's first round only; the tests poll by hand
    mo.job_dir = (tmp.path / "job").string();
    mo.locations = {{"loader-0", "rank 0 @ here"}};
    mo.samples_per_step = {{"stage1", 32}};
    if (co.port < 0) co.port = 0;
    mon = std::make_unique<monitor_service>(*env.sys, env.router, mo, co);
    mon->poll_once();
  }
  int port() const { return mon->console_port(); }
};

}  // namespace

TEST(monitor, console_serves_the_page_the_status_document_and_prometheus_metrics) {
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  console_fixture f;
  ASSERT_GT(f.port(), 0);
  EXPECT_EQ(f.mon->console_url(), "http://127.0.0.1:" + std::to_string(f.port()) + "/");

  auto page = http_get(f.port(), "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("<title>hllm console</title>"), std::string::npos);
  EXPECT_NE(page.body.find("id=\"actors\""), std::string::npos);
  EXPECT_NE(page.body.find("api/status"), std::string::npos) << "the script is inlined";
  // Offline: nothing is loaded from anywhere else.
  for (const char* external : {"src=\"http", "href=\"http", "@import", "cdn"}) {
    EXPECT_EQ(page.body.find(external), std::string::npos) << external;
  }

  auto st = http_get(f.port(), "/api/status");
  ASSERT_EQ(st.status, 200);
  auto doc = json::parse(st.body);
  const auto& loader = actor_entry(doc, "loader-0");
  EXPECT_EQ(loader.at("kind"), "data_loader");
  EXPECT_EQ(loader.at("where"), "rank 0 @ here");
  EXPECT_EQ(loader.at("state"), "running");
  EXPECT_TRUE(loader.at("messages_total").is_number());
  // The curves and panels come from metrics.jsonl; the half-written last line is not read.
  ASSERT_TRUE(doc.at("curves").contains("stage1"));
  EXPECT_EQ(doc.at("curves").at("stage1").at("loss").size(), 30u);
  EXPECT_EQ(doc.at("metrics_file").at("bad_lines"), 0);
  EXPECT_EQ(doc.at("job").at("stage"), "stage1");
  EXPECT_DOUBLE_EQ(doc.at("job").at("best").at("stage1").at("ndcg200").get<double>(), 21.5);
  ASSERT_EQ(doc.at("checkpoints").size(), 2u);
  bool latest_seen = false;
  for (const auto& c : doc.at("checkpoints")) {
    if (c.at("name") == "stage1-e0-s10") {
      latest_seen = c.at("latest").get<bool>();
      EXPECT_EQ(c.at("bytes"), 1002);
      EXPECT_DOUBLE_EQ(c.at("write_s").get<double>(), 0.25);
    }
  }
  EXPECT_TRUE(latest_seen);
  ASSERT_EQ(doc.at("cache").size(), 1u);
  EXPECT_EQ(doc.at("cache")[0].at("rows_expected"), 10);
  // The respawn line names the dead worker and why it died.
  ASSERT_EQ(doc.at("dead").size(), 1u);
  EXPECT_EQ(doc.at("dead")[0].at("name"), "worker-1");
  EXPECT_NE(doc.at("dead")[0].at("cause").get<std::string>().find("signal 9"), std::string::npos);

  auto m = http_get(f.port(), "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_NE(m.body.find("# TYPE hllm_actor_up gauge"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("hllm_actor_up{actor=\"loader-0\",kind=\"data_loader\",process=\"rank 0 @ here\"} 1"),
            std::string::npos)
      << m.body;
  EXPECT_NE(m.body.find("hllm_cache_rows_expected{shard=\"0\",actor=\"cache-shard-0\"} 10"), std::string::npos);
  EXPECT_NE(m.body.find("hllm_job_best_validation_ndcg200{stage=\"stage1\"} 21.5"), std::string::npos);

  // More lines appended: the next round reads only those, and the half line once it is complete.
  {
    std::ofstream more(f.tmp.path / "job" / "metrics.jsonl", std::ios::app);
    more << R"(ge1","epoch":3,"step":30,"loss":4.0,"nce_top10_acc":0.5})" << "\n";
  }
  f.mon->poll_once();
  doc = json::parse(http_get(f.port(), "/api/status").body);
  EXPECT_EQ(doc.at("curves").at("stage1").at("loss").size(), 31u);
  EXPECT_DOUBLE_EQ(doc.at("job").at("loss").get<double>(), 4.0);
  f.mon->stop();
  EXPECT_EQ(http_get(f.port(), "/api/status").status, -1) << "the console stops with the monitor";
}

TEST(monitor, console_metrics_pass_promtool) {
  if (!have("promtool")) GTEST_SKIP() << "promtool not installed (Debian package prometheus; launch/lib.sh installs it)";
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  console_fixture f;
  auto m = http_get(f.port(), "/metrics");
  ASSERT_EQ(m.status, 200);
  auto [rc, out] = promtool_check(m.body, f.tmp.path);
  EXPECT_EQ(rc, 0) << out << "\n" << m.body;
  // And a document with every kind of awkward label value.
  monitor_options mo;
  mo.targets = {"a\"b\\c\nd"};
  monitor core(mo);
  core.record("a\"b\\c\nd", good(1, 2));
  auto [rc2, out2] = promtool_check(prometheus_text(core.console_json()), f.tmp.path);
  EXPECT_EQ(rc2, 0) << out2;
}

TEST(monitor, console_rejects_unknown_paths_other_methods_and_oversized_or_malformed_requests) {
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  console_fixture f;
  const int port = f.port();
  EXPECT_EQ(http_get(port, "/nope").status, 404);
  EXPECT_EQ(http_get(port, "/api/status/../../etc/passwd").status, 404);
  EXPECT_EQ(http_get(port, "/api").status, 404);
  {
    httplib::Client cli("127.0.0.1", port);
    auto r = cli.Post("/api/status", "x", "text/plain");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    auto d = cli.Delete("/metrics");
    ASSERT_TRUE(d);
    EXPECT_EQ(d->status, 405);
  }
  EXPECT_EQ(raw_request(port, "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n"), "HTTP/1.1 414 URI Too Long");
  EXPECT_EQ(raw_request(port, "GET /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" +
                                  std::string(1000, 'z')),
            "HTTP/1.1 413 Payload Too Large");
  EXPECT_EQ(raw_request(port, "GET /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"),
            "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(raw_request(port, "GARBAGE\r\n\r\n"), "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(raw_request(port, "GET /api/status HTTP/1.1\r\nX-Big: " + std::string(20000, 'h') + "\r\n\r\n"),
            "HTTP/1.1 400 Bad Request");
  // After all that it still serves, and the monitor still polls.
  EXPECT_EQ(http_get(port, "/api/status").status, 200);
  f.mon->poll_once();
  EXPECT_EQ(actor_entry(json::parse(http_get(port, "/api/status").body), "loader-0").at("state"), "running");
}

TEST(monitor, console_with_a_token_answers_401_and_nothing_else_without_it) {
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  console_options co;
  co.token = "s3cret-token";
  console_fixture f(co);
  const int port = f.port();
  for (const std::string& path : {"/", "/api/status", "/metrics", "/nope"}) {
    auto none = http_get(port, path);
    EXPECT_EQ(none.status, 401) << path;
    EXPECT_TRUE(none.body.empty()) << path << ": " << none.body;
    auto wrong = http_get(port, path, {{"Authorization", "Bearer s3cret-tokem"}});
    EXPECT_EQ(wrong.status, 401) << path;
    EXPECT_TRUE(wrong.body.empty()) << path;
    EXPECT_EQ(http_get(port, path + "?token=s3cret-toke").status, 401) << path;
  }
  EXPECT_EQ(http_get(port, "/api/status", {{"Authorization", "Bearer s3cret-token"}}).status, 200);
  // A right ?token= is exchanged for a session cookie: 303 to the clean URL (tests/job/console_hardening_test.cpp).
  EXPECT_EQ(http_get(port, "/?token=s3cret-token").status, 303);
  EXPECT_EQ(http_get(port, "/nope", {{"Authorization", "Bearer s3cret-token"}}).status, 404);
  // Without a token only loopback: anything else is refused at start.
  console_options open;
  open.port = 0;
  open.host = "0.0.0.0";
  EXPECT_THROW(monitor_console(f.mon->shared_core(), open), hllm::error);
  open.host = "127.0.0.2";
  EXPECT_NO_THROW(monitor_console(f.mon->shared_core(), open));
  // A port in use is a clear error, not a second server on the same port.
  console_options taken;
  taken.port = port;
  try {
    monitor_console again(f.mon->shared_core(), taken);
    ADD_FAILURE() << "bound a port that is in use";
  } catch (const hllm::error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
        << e.what();
  }
}

TEST(monitor, console_history_is_bounded_and_a_resume_rolls_the_curve_back) {
  monitor_options mo;
  mo.curve_points = 100;
  mo.dead_kept = 7;
  for (int i = 0; i < 50; ++i) mo.targets.push_back("encoder-" + std::to_string(i));
  monitor core(mo);
  for (int i = 0; i < 10000; ++i) {
    core.ingest_metrics_line(json{{"event", "step"}, {"model", "stage1"}, {"step", i}, {"loss", 1.0}});
  }
  for (int i = 0; i < 50; ++i) core.remove_target("encoder-" + std::to_string(i));
  for (int i = 0; i < 1000; ++i) core.ingest_metrics_line(json{{"event", "validation"}, {"model", "stage1"}, {"epoch", i}});
  for (int i = 0; i < 40; ++i) core.ingest_metrics_line(json{{"event", "step"}, {"model", "s" + std::to_string(i)}, {"step", 0}});
  auto doc = core.console_json();
  EXPECT_EQ(doc.at("dead").size(), 7u);
  EXPECT_EQ(doc.at("dead").back().at("name"), "encoder-49");
  EXPECT_EQ(doc.at("dead").back().at("cause"), "retired by the job");
  EXPECT_LE(doc.at("validation").size(), 256u);
  EXPECT_LE(doc.at("curves").size(), 16u);
  // stage1 was the first curve: with 41 stages only the newest 16 are kept.
  EXPECT_FALSE(doc.at("curves").contains("stage1"));

  monitor again(mo);
  for (int i = 0; i < 500; ++i) again.ingest_metrics_line(json{{"event", "step"}, {"model", "stage1"}, {"step", i}});
  auto steps = again.console_json().at("curves").at("stage1").at("step");
  ASSERT_EQ(steps.size(), 100u);
  EXPECT_EQ(steps.front(), 400);
  EXPECT_EQ(steps.back(), 499);
  // A resume from steps_done 450: the killed run's later points go; the resumed run's steps follow.
  again.ingest_metrics_line(json{{"event", "resume"}, {"model", "stage1"}, {"steps_done", 450}});
  again.ingest_metrics_line(json{{"event", "step"}, {"model", "stage1"}, {"step", 450}});
  steps = again.console_json().at("curves").at("stage1").at("step");
  EXPECT_EQ(steps.back(), 450);
  EXPECT_EQ(steps.size(), 51u);
}

TEST(monitor, a_console_port_in_use_leaves_the_monitor_running_without_a_console) {
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  console_fixture f;  // holds a port
  monitor_options mo;
  mo.name = "monitor-2";
  mo.targets = {"loader-0"};
  mo.interval = std::chrono::hours(1);
  console_options taken;
  taken.port = f.port();
  monitor_service second(*f.env.sys, f.env.router, mo, taken);
  EXPECT_EQ(second.console_url(), "");
  EXPECT_EQ(second.console_port(), -1);
  second.poll_once();
  ASSERT_FALSE(second.core().history("loader-0").empty()) << "it polls on";
  EXPECT_TRUE(second.core().history("loader-0").back().reachable);
  second.stop();
  // A setting that would expose the job without a token stops it at start instead.
  console_options open;
  open.port = 0;
  open.host = "0.0.0.0";
  mo.name = "monitor-3";
  EXPECT_THROW(monitor_service(*f.env.sys, f.env.router, mo, open), hllm::error);
  EXPECT_EQ(http_get(f.port(), "/api/status").status, 200) << "the first console is untouched";
}
