#include "actors/monitor.hpp"

#include <charconv>

#include <caf/all.hpp>
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <fstream>
#include <spdlog/spdlog.h>
#include <sstream>
#include <sys/stat.h>
#include <thread>

#include "actors/addressable.hpp"
#include "actors/monitor_console.hpp"
#include "messages/codec.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

std::int64_t counter_of(const msg::status_reply& r, const std::string& name, std::int64_t fallback = -1) {
  for (const auto& c : r.counters) {
    if (c.name == name) return c.value;
  }
  return fallback;
}

template <class T>
void keep_last(std::deque<T>& d, std::size_t n) {
  while (d.size() > n) d.pop_front();
}

// Bytes of every regular file under a directory (a checkpoint); 0 when it is gone meanwhile.
std::uint64_t bytes_under(const std::filesystem::path& dir) {
  std::uint64_t total = 0;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code fe;
    if (it->is_regular_file(fe)) total += it->file_size(fe);
  }
  return total;
}

std::int64_t mtime_unix_ms(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
}

constexpr std::size_t kept_validations = 256, kept_phases = 64, kept_respawns = 64, kept_curves = 16,
                      kept_checkpoints = 64, kept_write_times = 256;
constexpr std::uint64_t tail_chunk = 4u << 20;  // bytes of metrics.jsonl read per round at most

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
  return msg::error{msg::error_code::rejected, opt_.name + ": unexpected " + msg::to_string(msg::kind_of(request))};
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

// ---- the console's sources and documents ----

void monitor::ingest_metrics_line(const json& j) {
  if (!j.is_object()) return;
  const std::string event = j.value("event", "");
  std::lock_guard<std::mutex> lock(mu_);
  ++metrics_lines_;
  if (event == "step") {
    auto model = j.find("model");
    auto step = j.find("step");
    if (model == j.end() || !model->is_string() || step == j.end() || !step->is_number_integer()) return;
    const std::string m = model->get<std::string>();
    if (curves_.find(m) == curves_.end()) {
      curve_order_.push_back(m);
      while (curve_order_.size() > kept_curves) {
        curves_.erase(curve_order_.front());
        curve_order_.erase(curve_order_.begin());
      }
    }
    auto& c = curves_[m];
    const std::int64_t at = step->get<std::int64_t>();
    // A step at or before the last one: a resumed run superseding the lines of the killed one (docs/operations.md,
    // "Metrics of a resumed job"), so the curve rolls back to it.
    while (!c.step.empty() && c.step.back() >= at) {
      c.step.pop_back();
      c.loss.pop_back();
      c.top10.pop_back();
    }
    c.step.push_back(at);
    c.loss.push_back(j.value("loss", std::nan("")));
    c.top10.push_back(j.value("nce_top10_acc", std::nan("")));
    keep_last(c.step, opt_.curve_points);
    keep_last(c.loss, opt_.curve_points);
    keep_last(c.top10, opt_.curve_points);
    last_stage_ = m;
    last_step_ = json{{"stage", m},
                      {"epoch", j.value("epoch", std::int64_t{0})},
                      {"step", at},
                      {"loss", j.value("loss", std::nan(""))},
                      {"top10", j.value("nce_top10_acc", std::nan(""))},
                      {"lr", j.value("lr", std::nan(""))}};
  } else if (event == "validation") {
    validations_.push_back(json{{"stage", j.value("model", "")},
                                {"epoch", j.value("epoch", std::int64_t{0})},
                                {"ndcg200", j.value("N@200", std::nan(""))},
                                {"ndcg10", j.value("N@10", std::nan(""))},
                                {"recall10", j.value("R@10", std::nan(""))},
                                {"recall200", j.value("R@200", std::nan(""))},
                                {"at_unix_ms", unix_ms_now()}});
    keep_last(validations_, kept_validations);
  } else if (event == "phase") {
    phases_.push_back(json{{"phase", j.value("phase", "")}, {"seconds", j.value("seconds", 0.0)}});
    keep_last(phases_, kept_phases);
  } else if (event == "checkpoint") {
    checkpoint_write_s_[j.value("checkpoint", "")] = j.value("seconds", 0.0);
    while (checkpoint_write_s_.size() > kept_write_times) checkpoint_write_s_.erase(checkpoint_write_s_.begin());
  } else if (event == "respawn") {
    std::string worker = j.value("worker", "");
    std::string actors;
    if (j.contains("actors") && j["actors"].is_array()) {
      for (const auto& a : j["actors"]) actors += (actors.empty() ? "" : ", ") + (a.is_string() ? a.get<std::string>() : a.dump());
    }
    respawns_.push_back(j);
    keep_last(respawns_, kept_respawns);
    dead_actor d;
    d.name = worker;
    d.kind = "worker process";
    d.where = actors.empty() ? worker : worker + " (" + actors + ")";
    d.cause = "respawned (" + std::to_string(j.value("respawns", 0)) + "): " + j.value("reason", "");
    d.at_unix_ms = unix_ms_now();
    dead_.push_back(std::move(d));
    keep_last(dead_, opt_.dead_kept);
  } else if (event == "resume") {
    // The resumed stage continues from steps_done: its later points belong to the killed run.
    auto it = curves_.find(j.value("model", ""));
    const std::int64_t done = j.value("steps_done", std::int64_t{0});
    if (it != curves_.end()) {
      auto& c = it->second;
      while (!c.step.empty() && c.step.back() >= done) {
        c.step.pop_back();
        c.loss.pop_back();
        c.top10.pop_back();
      }
    }
  }
}

void monitor::tail_metrics() {
  if (opt_.job_dir.empty()) return;
  const std::string path = opt_.job_dir + "/metrics.jsonl";
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return;  // not written yet
  bool skip_partial_first = false;
  if (!metrics_started_) {
    metrics_started_ = true;
    // A long job's file: its last chunk is enough for bounded curves (the first line read may be cut: skip it).
    if (size > tail_chunk) {
      metrics_offset_ = size - tail_chunk;
      skip_partial_first = true;
    }
  }
  if (size < metrics_offset_) {  // replaced or truncated: start over
    metrics_offset_ = 0;
    metrics_partial_.clear();
  }
  if (size == metrics_offset_) return;
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  in.seekg(static_cast<std::streamoff>(metrics_offset_));
  std::string chunk(static_cast<std::size_t>(std::min<std::uint64_t>(size - metrics_offset_, tail_chunk)), '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<std::size_t>(in.gcount()));
  {
    std::lock_guard<std::mutex> lock(mu_);  // console_json reports it
    metrics_offset_ += chunk.size();
  }
  std::string text = std::move(metrics_partial_);
  text += chunk;
  metrics_partial_.clear();
  std::size_t start = 0;
  if (skip_partial_first) {
    auto nl = text.find('\n');
    start = nl == std::string::npos ? text.size() : nl + 1;
  }
  std::uint64_t bad = 0;
  for (;;) {
    auto nl = text.find('\n', start);
    if (nl == std::string::npos) break;
    auto line = json::parse(text.begin() + static_cast<std::ptrdiff_t>(start),
                            text.begin() + static_cast<std::ptrdiff_t>(nl), nullptr, false);
    if (line.is_discarded()) ++bad;  // a line torn by a kill, then appended to by the next run
    else ingest_metrics_line(line);
    start = nl + 1;
  }
  metrics_partial_ = text.substr(start);
  if (metrics_partial_.size() > tail_chunk) {  // no newline in 4 MiB: not a metrics file
    metrics_partial_.clear();
    ++bad;
  }
  if (bad > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_bad_lines_ += bad;
  }
}

void monitor::scan_checkpoints() {
  if (opt_.job_dir.empty()) return;
  namespace fs = std::filesystem;
  std::vector<checkpoint_info> found;
  const fs::path root = fs::path(opt_.job_dir) / "checkpoints";
  std::string latest;
  {
    std::ifstream in(root / "latest");
    std::getline(in, latest);
  }
  std::error_code ec;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::string n = it->path().filename().string();
    std::error_code de;
    if (n.empty() || n[0] == '.' || !it->is_directory(de)) continue;
    checkpoint_info c;
    c.name = n;
    c.kind = "checkpoint";
    c.bytes = bytes_under(it->path());
    c.mtime_unix_ms = mtime_unix_ms(it->path().string());
    c.latest = n == latest;
    found.push_back(std::move(c));
  }
  for (const char* stage : {"baseline", "stage1", "stage2"}) {
    fs::path best = fs::path(opt_.job_dir) / stage / "best";
    std::error_code de;
    if (!fs::is_directory(best, de)) continue;
    checkpoint_info c;
    c.name = std::string(stage) + "/best";
    c.kind = "best";
    c.bytes = bytes_under(best);
    c.mtime_unix_ms = mtime_unix_ms(best.string());
    found.push_back(std::move(c));
  }
  std::sort(found.begin(), found.end(),
            [](const checkpoint_info& a, const checkpoint_info& b) { return a.mtime_unix_ms > b.mtime_unix_ms; });
  if (found.size() > kept_checkpoints) found.resize(kept_checkpoints);
  std::lock_guard<std::mutex> lock(mu_);
  checkpoints_ = std::move(found);
}

json monitor::job_panel(const json& actors) const {
  json j = json::object();
  j["stage"] = last_stage_.empty() ? json(nullptr) : json(last_stage_);
  for (const char* k : {"epoch", "loss", "top10", "lr"}) {
    j[k] = last_step_.is_object() && last_step_.contains(k) ? last_step_[k] : json(nullptr);
  }
  j["phase"] = nullptr;
  j["respawns"] = nullptr;
  auto good_of = [&](const std::string& name) -> const std::deque<status_snapshot>* {
    auto it = rings_.find(name);
    return it == rings_.end() ? nullptr : &it->second.snapshots;
  };
  if (const auto* c = good_of("coordinator")) {
    for (auto s = c->rbegin(); s != c->rend(); ++s) {
      if (!s->reachable) continue;
      // The phase that has started and not finished.
      for (const auto& x : s->reply.counters) {
        const std::string suffix = ".started";
        if (x.name.rfind("phase.", 0) != 0 || x.name.size() <= suffix.size() + 6 ||
            x.name.compare(x.name.size() - suffix.size(), suffix.size(), suffix) != 0) {
          continue;
        }
        std::string phase = x.name.substr(6, x.name.size() - 6 - suffix.size());
        if (counter_of(s->reply, "phase." + phase + ".ms") < 0) j["phase"] = phase;
      }
      auto r = counter_of(s->reply, "workers.respawns");
      if (r >= 0) j["respawns"] = r;
      break;
    }
  }
  j["step"] = nullptr;
  j["steps_total"] = nullptr;
  j["steps_per_s"] = nullptr;
  j["samples_per_s"] = nullptr;
  j["eta_s"] = nullptr;
  if (const auto* t = good_of("trainer-0")) {
    const status_snapshot* latest = nullptr;
    for (auto s = t->rbegin(); s != t->rend(); ++s) {
      if (s->reachable) {
        latest = &*s;
        break;
      }
    }
    if (latest != nullptr) {
      const auto total = counter_of(latest->reply, "steps_total");
      j["step"] = latest->reply.step;
      if (total >= 0) j["steps_total"] = total;
      if (!j["epoch"].is_number()) {
        auto e = counter_of(latest->reply, "epoch");
        if (e >= 0) j["epoch"] = e;
      }
      // Steps per second over the last 30 s of this stage (same total, steps not going back).
      const status_snapshot* from = latest;
      for (auto s = t->rbegin(); s != t->rend(); ++s) {
        if (!s->reachable) continue;
        if (latest->taken - s->taken > std::chrono::seconds(30)) break;
        if (counter_of(s->reply, "steps_total") != total || s->reply.step > from->reply.step) break;
        from = &*s;
      }
      double dt = seconds_between(from->taken, latest->taken);
      const bool training = latest->reply.state == msg::actor_state::running;
      if (training && dt >= 0.5 && latest->reply.step > from->reply.step) {
        double rate = static_cast<double>(latest->reply.step - from->reply.step) / dt;
        j["steps_per_s"] = rate;
        auto per = opt_.samples_per_step.find(last_stage_);
        if (per != opt_.samples_per_step.end()) j["samples_per_s"] = rate * static_cast<double>(per->second);
        if (total >= 0) {
          j["eta_s"] = std::max(0.0, static_cast<double>(total - static_cast<std::int64_t>(latest->reply.step)) / rate);
        }
      }
    }
  }
  json best = json::object();
  for (const auto& v : validations_) {
    const std::string st = v.value("stage", "");
    double n = v.value("ndcg200", -1.0);
    if (!best.contains(st) || n > best[st].value("ndcg200", -1.0)) {
      best[st] = json{{"ndcg200", n}, {"epoch", v.value("epoch", 0)}};
    }
  }
  j["best"] = best;
  (void)actors;
  return j;
}

json monitor::console_json() const {
  json doc = snapshot_json();
  const std::int64_t now_ms = unix_ms_now();
  std::lock_guard<std::mutex> lock(mu_);
  doc["job"] = job_panel(doc["actors"]);
  json curves = json::object();
  for (const auto& name : curve_order_) {
    const auto& c = curves_.at(name);
    curves[name] = json{{"step", json(c.step)}, {"loss", json(c.loss)}, {"top10", json(c.top10)}};
  }
  doc["curves"] = std::move(curves);
  doc["curve_order"] = curve_order_;
  doc["validation"] = json(validations_);
  json cache = json::array();
  for (const auto& e : doc["actors"]) {
    const std::string name = e.value("name", "");
    if (name.rfind("cache-shard-", 0) != 0) continue;
    const json& c = e["counters"];
    double present = c.value("rows_present", 0.0), expected = c.value("rows_expected", 0.0);
    int shard = -1;  // internal actor names (cache-shard-N): tolerant, -1 when there is no number
    std::from_chars(name.data() + 12, name.data() + name.size(), shard);
    cache.push_back(json{{"shard", shard},
                         {"actor", name},
                         {"reachable", e.value("reachable", false)},
                         {"rows_present", c.value("rows_present", std::int64_t{0})},
                         {"rows_expected", c.value("rows_expected", std::int64_t{0})},
                         {"coverage", expected > 0 ? present / expected : 0.0}});
  }
  doc["cache"] = std::move(cache);
  json ckpts = json::array();
  for (const auto& c : checkpoints_) {
    auto w = checkpoint_write_s_.find(c.name);
    ckpts.push_back(json{{"name", c.name},
                         {"kind", c.kind},
                         {"bytes", c.bytes},
                         {"mtime_unix_ms", c.mtime_unix_ms},
                         {"age_s", static_cast<double>(now_ms - c.mtime_unix_ms) / 1000.0},
                         {"latest", c.latest},
                         {"write_s", w != checkpoint_write_s_.end() ? json(w->second) : json(nullptr)}});
  }
  doc["checkpoints"] = std::move(ckpts);
  json dead = json::array();
  for (const auto& d : dead_) {
    dead.push_back(json{{"name", d.name},
                        {"kind", d.kind},
                        {"where", d.where},
                        {"cause", d.cause},
                        {"last_state", d.last_state},
                        {"last_error", d.last_error},
                        {"at_unix_ms", d.at_unix_ms}});
  }
  doc["dead"] = std::move(dead);
  doc["phases"] = json(phases_);
  doc["respawns"] = json(respawns_);
  doc["limits"] = json{{"history", opt_.history},
                       {"curve_points", opt_.curve_points},
                       {"dead_kept", opt_.dead_kept},
                       {"interval_ms", opt_.interval.count()}};
  doc["metrics_file"] = json{{"path", opt_.job_dir.empty() ? std::string() : opt_.job_dir + "/metrics.jsonl"},
                             {"lines", metrics_lines_},
                             {"bad_lines", metrics_bad_lines_},
                             {"offset", metrics_offset_}};
  return doc;
}

void monitor::publish() {
  auto doc = console_json();
  auto status = std::make_shared<const std::string>(doc.dump(-1, ' ', false, json::error_handler_t::replace));
  auto metrics = std::make_shared<const std::string>(prometheus_text(doc));
  std::lock_guard<std::mutex> lock(published_mu_);
  published_status_ = std::move(status);
  published_metrics_ = std::move(metrics);
}

std::shared_ptr<const std::string> monitor::published_status() const {
  std::lock_guard<std::mutex> lock(published_mu_);
  return published_status_;
}

std::shared_ptr<const std::string> monitor::published_metrics() const {
  std::lock_guard<std::mutex> lock(published_mu_);
  return published_metrics_;
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
  auto backstop = o.timeout + std::chrono::seconds(1);
  using handle_type = decltype(self->request(router_, backstop, atom::request_v, msg::buffer{}));
  std::vector<std::pair<std::string, handle_type>> asked;
  asked.reserve(targets.size());
  for (const auto& t : targets) {
    asked.emplace_back(t, self->request(router_, backstop, atom::request_v,
                                        make_request(o.name, t, msg::status_request{}, o.job, o.timeout)));
  }
  for (auto& [target, handle] : asked) {
    status_snapshot s;
    handle.receive(
        [&](const msg::buffer& b) {
          auto env = msg::decode(b);
          if (!env) {
            s.error = env.error().what;
          } else if (auto* r = std::get_if<msg::status_reply>(&env->content)) {
            s.reply = std::move(*r);
            s.reachable = true;
          } else if (auto* e = std::get_if<msg::error>(&env->content)) {
            s.error = std::string(msg::to_string(e->code)) + ": " + e->message;
          } else {
            s.error = std::string("unexpected reply ") + msg::to_string(msg::kind_of(env->content));
          }
        },
        [&](const caf::error& e) { s.error = caf::to_string(e); });
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
