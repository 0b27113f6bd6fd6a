// The monitor: real actors (a data loader, a cache shard) behind an in-process router, polled through it.
#include <gtest/gtest.h>

#include <caf/all.hpp>
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
#include "job_test_util.hpp"
#include "storage/error.hpp"

using namespace hllm;
using nlohmann::json;

namespace {

std::string tiny() { return test::tiny_dataset(); }

struct actor_env : test::local_actor_env {

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
  spawn_data_loader(*env.sys, env.router, {"loader-0", tiny(), 2020});
  embedding_cache_shard_options so;
  so.name = "cache-shard-0";
  so.shard = 0;
  so.shard_count = 2;
  so.num_items = 10;
  spawn_embedding_cache_shard(*env.sys, env.router, so);

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
  embedding_cache_shard_options so;
  so.name = "cache-shard-0";
  so.num_items = 10;
  spawn_embedding_cache_shard(*env.sys, env.router, so);
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
  embedding_cache_shard_options so;
  so.name = "cache-shard-0";
  so.num_items = 10;
  spawn_embedding_cache_shard(*env.sys, env.router, so);
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
