// The monitor's console sources and documents (monitor.hpp): the metrics.jsonl tail, the checkpoint scan, the job
// panel, console_json and the published copies the console serves. The core and the poller are in monitor.cpp.
#include <charconv>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>

#include "actors/monitor.hpp"
#include "actors/monitor_util.hpp"
#include "actors/monitor_view.hpp"

namespace hllm {
namespace {

using json = nlohmann::json;
using namespace monitor_detail;

std::int64_t counter_of(const msg::status_reply& r, const std::string& name, std::int64_t fallback = -1) {
  for (const auto& c : r.counters) {
    if (c.name == name) return c.value;
  }
  return fallback;
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

}  // namespace

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

}  // namespace hllm
