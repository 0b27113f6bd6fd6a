#include "actors/monitor.hpp"

#include <caf/all.hpp>
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <fstream>
#include <spdlog/spdlog.h>
#include <sstream>
#include <thread>

#include "actors/addressable.hpp"
#include "actors/ask.hpp"
#include "actors/monitor_console.hpp"
#include "actors/monitor_util.hpp"
#include "messages/codec.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"

// The core (targets, rings, the status document and file) and the poller (monitor_service). The console's sources
// and documents (metrics.jsonl, checkpoints, console_json, publish) are in monitor_sources.cpp.

namespace hllm {
namespace {

using json = nlohmann::json;
using namespace monitor_detail;

// The fields every actor entry of the status document shares, from what the actor reported.
json entry_of(const msg::status_reply& r) {
  json counters = json::object();
  for (const auto& c : r.counters) counters[c.name] = c.value;
  return json{{"kind", r.kind},
              {"state", msg::to_string(r.state)},
              {"counters", counters},
              {"last_error", r.last_error},
              {"restarts", r.restarts},
              {"step", r.step},
              {"uptime_s", static_cast<double>(r.uptime_ns) / 1e9},
              {"queue_depth", r.queue_depth},
              {"in_flight", r.in_flight}};
}

// The counters of a status reply that count messages an actor handled or sent (for messages/s); null when it has
// none of them.
const char* const message_counters[] = {"requests", "oneway", "batches_served", "requests_served", "puts",
                                        "lookups", "units", "polls"};

std::optional<std::int64_t> messages_of(const msg::status_reply& r) {
  std::optional<std::int64_t> sum;
  for (const auto& c : r.counters) {
    for (const char* m : message_counters) {
      if (c.name == m) sum = sum.value_or(0) + c.value;
    }
  }
  return sum;
}

// The core behind the router: spawn_addressable owns its core, the poller needs the same one, so it shares it.
struct monitor_endpoint {
  std::shared_ptr<monitor> core;
  msg::body handle(const msg::body& request) { return core->handle(request); }
};

}  // namespace

// ---- monitor (the core) ----

monitor::monitor(monitor_options o) : opt_(std::move(o)), started_(clock_type::now()) {
  if (opt_.history == 0) opt_.history = 1;  // a ring of nothing would show nothing
  if (opt_.curve_points == 0) opt_.curve_points = 1;
  for (const auto& t : opt_.targets) {
    if (std::find(targets_.begin(), targets_.end(), t) == targets_.end()) targets_.push_back(t);
  }
  where_ = opt_.locations;
  publish();
}

void monitor::add_target(const std::string& address, const std::string& where) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(targets_.begin(), targets_.end(), address) == targets_.end()) targets_.push_back(address);
  if (!where.empty()) where_[address] = where;
}

void monitor::remove_target(const std::string& address, const std::string& cause) {
  std::lock_guard<std::mutex> lock(mu_);
  if (std::find(targets_.begin(), targets_.end(), address) == targets_.end()) return;
  targets_.erase(std::remove(targets_.begin(), targets_.end(), address), targets_.end());
  auto it = rings_.find(address);
  bury(address, cause, it != rings_.end() ? &it->second : nullptr);
  if (it != rings_.end()) rings_.erase(it);
}

void monitor::bury(const std::string& name, const std::string& cause, const ring* r) {
  dead_actor d;
  d.name = name;
  d.cause = cause;
  d.at_unix_ms = unix_ms_now();
  auto w = where_.find(name);
  if (w != where_.end()) d.where = w->second;
  if (r != nullptr) {
    for (auto s = r->snapshots.rbegin(); s != r->snapshots.rend(); ++s) {
      if (s->reachable) {
        d.kind = s->reply.kind;
        d.last_state = msg::to_string(s->reply.state);
        d.last_error = s->reply.last_error;
        break;
      }
    }
  }
  dead_.push_back(std::move(d));
  keep_last(dead_, opt_.dead_kept);
}

std::vector<std::string> monitor::targets() const {
  std::lock_guard<std::mutex> lock(mu_);
  return targets_;
}

void monitor::record(const std::string& address, status_snapshot s) {
  std::lock_guard<std::mutex> lock(mu_);
  // A reply that arrives for an address removed meanwhile must not bring its ring back.
  if (std::find(targets_.begin(), targets_.end(), address) == targets_.end()) return;
  auto& r = rings_[address];
  ++polls_;
  if (s.reachable) {
    r.failed_in_a_row = 0;
  } else {
    // Reachable until now: the console lists it among the dead with the poll error as the cause (it may come back,
    // e.g. after a respawn; the entry stays as history).
    if (!r.snapshots.empty() && r.snapshots.back().reachable) bury(address, "stopped answering: " + s.error, &r);
    ++r.failed_in_a_row;
    ++unreachable_;
  }
  r.snapshots.push_back(std::move(s));
  while (r.snapshots.size() > opt_.history) r.snapshots.pop_front();
}

void monitor::round_done() {
  std::lock_guard<std::mutex> lock(mu_);
  ++rounds_;
}

void monitor::set_state(msg::actor_state s) {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = s;
}

std::vector<status_snapshot> monitor::history(const std::string& address) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rings_.find(address);
  if (it == rings_.end()) return {};
  return {it->second.snapshots.begin(), it->second.snapshots.end()};
}

msg::status_reply monitor::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  msg::status_reply s;
  s.name = opt_.name;
  s.kind = "monitor";
  s.state = state_;
  std::int64_t held = 0, unreachable_now = 0;
  for (const auto& [name, r] : rings_) {
    held += static_cast<std::int64_t>(r.snapshots.size());
    if (!r.snapshots.empty() && !r.snapshots.back().reachable) ++unreachable_now;
  }
  s.counters = {{"rounds", static_cast<std::int64_t>(rounds_)},
                {"polls", static_cast<std::int64_t>(polls_)},
                {"unreachable_polls", static_cast<std::int64_t>(unreachable_)},
                {"targets", static_cast<std::int64_t>(targets_.size())},
                {"unreachable_now", unreachable_now},
                {"snapshots_held", held},
                {"files_written", static_cast<std::int64_t>(files_written_)},
                {"write_failures", static_cast<std::int64_t>(write_failures_)}};
  s.last_error = last_error_;
  s.uptime_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - started_).count();
  s.step = rounds_;
  return s;
}

msg::body monitor::handle(const msg::body& request) {
  if (std::holds_alternative<msg::status_request>(request)) return status();
  return refuse_unexpected(opt_.name, request);
}

json monitor::snapshot_json() const {
  auto own = status();
  auto now = clock_type::now();
  std::lock_guard<std::mutex> lock(mu_);
  json actors = json::array();
  for (const auto& name : targets_) {
    json e;
    auto it = rings_.find(name);
    const status_snapshot* latest = nullptr;
    const status_snapshot* last_good = nullptr;
    std::uint64_t failed = 0;
    if (it != rings_.end() && !it->second.snapshots.empty()) {
      latest = &it->second.snapshots.back();
      failed = it->second.failed_in_a_row;
      for (auto s = it->second.snapshots.rbegin(); s != it->second.snapshots.rend(); ++s) {
        if (s->reachable) {
          last_good = &*s;
          break;
        }
      }
    }
    // An unreachable actor keeps showing what it last reported (within the ring), marked by state and ages.
    e = last_good != nullptr ? entry_of(last_good->reply) : entry_of(msg::status_reply{});
    if (last_good == nullptr) e["kind"] = "";
    e["name"] = name;
    e["reachable"] = latest != nullptr && latest->reachable;
    if (latest == nullptr) e["state"] = "unpolled";
    else if (!latest->reachable) e["state"] = "unreachable";
    e["age_s"] = latest != nullptr ? json(seconds_between(latest->taken, now)) : json(nullptr);
    e["last_seen_age_s"] = last_good != nullptr ? json(seconds_between(last_good->taken, now)) : json(nullptr);
    e["poll_error"] = latest != nullptr && !latest->reachable ? latest->error : std::string();
    e["failed_polls"] = failed;
    auto w = where_.find(name);
    e["where"] = w != where_.end() ? w->second : std::string();
    // messages/s over the newest good snapshot and the oldest good one at most 10 s before it.
    e["messages_total"] = nullptr;
    e["messages_per_s"] = nullptr;
    if (last_good != nullptr) {
      auto total = messages_of(last_good->reply);
      if (total) {
        e["messages_total"] = *total;
        const status_snapshot* from = nullptr;
        for (const auto& s : it->second.snapshots) {
          if (s.reachable && &s != last_good && last_good->taken - s.taken <= std::chrono::seconds(10)) {
            from = &s;
            break;
          }
        }
        if (from != nullptr) {
          auto before = messages_of(from->reply);
          double dt = seconds_between(from->taken, last_good->taken);
          if (before && *before <= *total && dt > 0) e["messages_per_s"] = static_cast<double>(*total - *before) / dt;
        }
      }
    }
    actors.push_back(std::move(e));
  }
  json self = entry_of(own);
  self["name"] = own.name;
  self["reachable"] = true;
  self["age_s"] = 0.0;
  self["interval_ms"] = opt_.interval.count();
  self["timeout_ms"] = opt_.timeout.count();
  self["history"] = opt_.history;
  {
    auto w = where_.find(opt_.name);
    self["where"] = w != where_.end() ? w->second : std::string();
  }
  // The job id (config hash) and epoch (incarnation of the job directory) every polled actor was asked under.
  return json{{"written_at_unix_ms", unix_ms_now()}, {"job_id", storage::hash_hex(opt_.job.id)},
              {"job_epoch", opt_.job.epoch}, {"monitor", self}, {"actors", actors}};
}

void monitor::write_status_file() {
  if (opt_.status_file.empty()) return;
  std::string text = snapshot_json().dump(2) + "\n";
  // A rename over the old file: readers see the old document or the new one, never half of one. No fsync: the
  // file is a view of live state, rewritten every interval, and worthless after a crash. A unique temporary name
  // (storage::temporary_path_beside), so two monitors writing one path never share it.
  std::string tmp = storage::temporary_path_beside(opt_.status_file);
  std::string failure;
  try {
    auto parent = std::filesystem::path(opt_.status_file).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << text;
      out.flush();
      if (!out) failure = "cannot write '" + tmp + "'";
    }
    if (failure.empty()) std::filesystem::rename(tmp, opt_.status_file);
  } catch (const std::exception& e) {
    failure = e.what();
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure.empty()) {
    ++write_failures_;
    last_error_ = "status file: " + failure;
    throw error(errc::io, opt_.name + ": " + last_error_);
  }
  ++files_written_;
}

// ---- monitor_service (the poller) ----

struct monitor_service::thread_state {
  std::mutex mu;
  std::condition_variable wake;
  bool stopping = false;
  bool stopped = false;
  std::mutex round_mu;  // one round at a time (thread and poll_once callers)
  std::thread worker;
};

monitor_service::monitor_service(caf::actor_system& sys, router_actor router, monitor_options o,
                                 console_options console)
    : sys_(sys), router_(std::move(router)), core_(std::make_shared<monitor>(std::move(o))) {
  // First, so that a bad console setting fails before anything runs. A port that cannot be bound (taken by
  // another process) does not stop the job: it runs without its console, and says so.
  if (console.port >= 0) {
    try {
      console_ = std::make_unique<monitor_console>(core_, std::move(console));
    } catch (const error& e) {
      if (e.code() == errc::invalid_input) throw;
      spdlog::error("{}; the job runs without its console", e.what());
    }
  }
  actor_ = spawn_addressable(sys_, router_, core_->options().name,
                             std::make_unique<monitor_endpoint>(monitor_endpoint{core_}));
  core_->set_state(msg::actor_state::running);
  thread_ = std::make_unique<thread_state>();
  thread_->worker = std::thread([this] { loop(); });
}

monitor_service::~monitor_service() {
  try {
    stop();
  } catch (const std::exception& e) {
    spdlog::warn("{}: stopping: {}", core_->options().name, e.what());
  }
}

void monitor_service::poll_once() {
  std::lock_guard<std::mutex> round(thread_->round_mu);
  const auto& o = core_->options();
  auto targets = core_->targets();
  caf::scoped_actor self{sys_};
  // The router answers every request (a timeout becomes an error reply after o.timeout); the CAF deadline, a bit
  // later, only guards against a router that does not answer at all.
  const caf::duration backstop{o.timeout + std::chrono::seconds(1)};
  std::vector<std::pair<std::string, pending<msg::status_request>>> asked;
  asked.reserve(targets.size());
  for (const auto& t : targets) {
    asked.emplace_back(t, send_request(self, router_, o.name, o.job, t, msg::status_request{}, o.timeout, backstop));
  }
  for (auto& [target, reply] : asked) {
    status_snapshot s;
    auto r = reply.receive();
    if (r.ok()) {
      s.reply = std::move(r.value());
      s.reachable = true;
    } else {
      s.error = describe(r.failure());
    }
    s.taken = clock_type::now();
    s.taken_unix_ms = unix_ms_now();
    core_->record(target, std::move(s));
  }
  core_->round_done();
  // The console's sources, then its documents: a failure here must not cost the status file.
  try {
    core_->tail_metrics();
    core_->scan_checkpoints();
    core_->publish();
  } catch (const std::exception& e) {
    spdlog::warn("{}: console: {}", o.name, e.what());
  }
  core_->write_status_file();
}

std::string monitor_service::console_url() const { return console_ ? console_->url() : std::string(); }

int monitor_service::console_port() const { return console_ ? console_->port() : -1; }

void monitor_service::loop() {
  auto& t = *thread_;
  const auto interval = std::max(core_->options().interval, std::chrono::milliseconds(1));
  auto next = clock_type::now();
  std::unique_lock<std::mutex> lock(t.mu);
  while (!t.stopping) {
    lock.unlock();
    try {
      poll_once();
    } catch (const std::exception& e) {
      // A failed file write must not end monitoring: the next round tries again.
      spdlog::warn("{}", e.what());
    }
    lock.lock();
    // Fixed rate, but no burst of catch-up rounds after a slow one.
    next = std::max(next + interval, clock_type::now());
    t.wake.wait_until(lock, next, [&] { return t.stopping; });
  }
}

void monitor_service::stop() {
  {
    std::lock_guard<std::mutex> lock(thread_->mu);
    if (thread_->stopped) return;
    thread_->stopping = true;
    thread_->stopped = true;
  }
  thread_->wake.notify_all();
  if (thread_->worker.joinable()) thread_->worker.join();
  core_->set_state(msg::actor_state::stopped);
  if (console_) console_->stop();
  try {
    core_->write_status_file();
  } catch (const std::exception& e) {
    spdlog::warn("{}", e.what());
  }
  caf::anon_send(router_, atom::forget_v, core_->options().name);
  caf::anon_send_exit(actor_, caf::exit_reason::user_shutdown);
}

}  // namespace hllm
