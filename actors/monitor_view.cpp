#include "actors/monitor_view.hpp"

#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "storage/error.hpp"

namespace hllm {
namespace {

using json = nlohmann::json;

std::string cell(std::string s, std::size_t width) {
  for (auto& c : s) {
    if (c == '\n' || c == '\t' || c == '\r') c = ' ';
  }
  if (s.size() > width) s = s.substr(0, width - 1) + "~";
  s.resize(width, ' ');
  return s;
}

std::string text_of(const json& e, const char* key) {
  auto it = e.find(key);
  if (it == e.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", it->get<double>());
    return buf;
  }
  return it->dump();
}

std::string counters_of(const json& e) {
  auto it = e.find("counters");
  if (it == e.end() || !it->is_object()) return "";
  std::string out;
  for (const auto& [k, v] : it->items()) {
    if (!out.empty()) out += ' ';
    out += k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return out;
}

// ---- Prometheus text ----

std::string escape_label(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

using labels = std::vector<std::pair<std::string, std::string>>;

struct family {
  std::string name, help, type;
  std::vector<std::pair<labels, double>> samples;
};

class exposition {
 public:
  family& get(const std::string& name, const std::string& type, const std::string& help) {
    auto it = index_.find(name);
    if (it != index_.end()) return families_[it->second];
    index_[name] = families_.size();
    families_.push_back(family{name, help, type, {}});
    return families_.back();
  }
  void add(const std::string& name, const std::string& type, const std::string& help, labels l, double v) {
    get(name, type, help).samples.emplace_back(std::move(l), v);
  }
  std::string text() const {
    std::string out;
    for (const auto& f : families_) {
      if (f.samples.empty()) continue;
      out += "# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n";
      for (const auto& [l, v] : f.samples) {
        out += f.name;
        if (!l.empty()) {
          out += '{';
          for (std::size_t i = 0; i < l.size(); ++i) {
            if (i > 0) out += ',';
            out += l[i].first + "=\"" + escape_label(l[i].second) + "\"";
          }
          out += '}';
        }
        out += ' ' + number(v) + '\n';
      }
    }
    return out;
  }

 private:
  std::vector<family> families_;
  std::map<std::string, std::size_t> index_;
};

bool is_number(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number();
}

double num(const json& j, const char* key, double fallback = 0) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// "trainer-3" -> "3"; anything else -> "".
std::string rank_of(const std::string& actor) {
  const std::string prefix = "trainer-";
  return actor.rfind(prefix, 0) == 0 ? actor.substr(prefix.size()) : std::string();
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "-";
  auto s = static_cast<long long>(seconds + 0.5);
  char buf[48];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

std::string render_status_table(const json& status) {
  if (!status.is_object()) throw error(errc::format, "status document: not a JSON object");
  struct column {
    const char* title;
    std::size_t width;
  };
  static const column cols[] = {{"NAME", 18}, {"KIND", 22}, {"STATE", 11}, {"AGE", 7},
                                {"RESTARTS", 8}, {"STEP", 8}, {"COUNTERS", 60}, {"LAST_ERROR", 48}};
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) out += ' ';
      out += cell(cells[i], cols[i].width);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::vector<std::string> header;
  for (const auto& c : cols) header.push_back(c.title);
  std::string out = line(header);
  auto row = [&](const json& e) {
    bool reachable = e.value("reachable", false);
    std::string err = reachable ? text_of(e, "last_error") : text_of(e, "poll_error");
    if (err == "-" || err.empty()) err = reachable ? "" : "-";
    out += line({text_of(e, "name"), text_of(e, "kind"), text_of(e, "state"), text_of(e, "age_s"),
                 text_of(e, "restarts"), text_of(e, "step"), counters_of(e), err});
  };
  auto actors = status.find("actors");
  if (actors != status.end() && actors->is_array()) {
    for (const auto& e : *actors) {
      if (e.is_object()) row(e);
    }
  }
  auto self = status.find("monitor");
  if (self != status.end() && self->is_object()) row(*self);
  return out;
}

std::string prometheus_text(const json& doc) {
  if (!doc.is_object()) throw error(errc::format, "console document: not a JSON object");
  exposition x;
  x.add("hllm_job_info", "gauge", "The job this monitor watches: its id (config hash) and epoch (incarnation).",
        {{"job_id", str(doc, "job_id")}, {"job_epoch", std::to_string(doc.value("job_epoch", 0))}}, 1);
  auto actor_labels = [](const json& e) {
    labels l{{"actor", str(e, "name")}, {"kind", str(e, "kind")}, {"process", str(e, "where")}};
    std::string rank = rank_of(str(e, "name"));
    if (!rank.empty()) l.emplace_back("rank", rank);
    return l;
  };
  std::vector<json> entries;
  if (doc.contains("actors") && doc["actors"].is_array()) {
    for (const auto& e : doc["actors"]) {
      if (e.is_object()) entries.push_back(e);
    }
  }
  if (doc.contains("monitor") && doc["monitor"].is_object()) entries.push_back(doc["monitor"]);
  for (const auto& e : entries) {
    auto l = actor_labels(e);
    bool up = e.value("reachable", false);
    x.add("hllm_actor_up", "gauge", "1 when the actor answered the monitor's last status request, else 0.", l,
          up ? 1 : 0);
    if (!up) continue;  // what an unreachable actor last said is history, not a current value
    x.add("hllm_actor_queue_depth", "gauge", "Messages waiting in the actor's mailbox or queue.", l,
          num(e, "queue_depth"));
    x.add("hllm_actor_in_flight", "gauge", "Requests the actor has sent and not yet seen answered.", l,
          num(e, "in_flight"));
    x.add("hllm_actor_restarts_total", "counter", "Times the actor was restarted.", l, num(e, "restarts"));
    x.add("hllm_actor_uptime_seconds", "gauge", "Seconds since the actor started.", l, num(e, "uptime_s"));
    if (is_number(e, "messages_total")) {
      x.add("hllm_actor_messages_total", "counter", "Work messages the actor handled or sent (its request counters).",
            l, num(e, "messages_total"));
    }
    if (e.contains("counters") && e["counters"].is_object()) {
      for (const auto& [k, v] : e["counters"].items()) {
        if (!v.is_number()) continue;
        auto cl = l;
        cl.emplace_back("counter", k);
        x.add("hllm_actor_status_value", "gauge",
              "A named value of the actor's status reply (counters and sizes, as the actor reports them).", cl,
              v.get<double>());
      }
    }
  }
  if (doc.contains("job") && doc["job"].is_object()) {
    const json& j = doc["job"];
    labels r0{{"rank", "0"}};
    std::string stage = str(j, "stage");
    labels rs{{"rank", "0"}, {"stage", stage}};
    // The job's gauges, one row each: status.json field, metric, type, help; all but the respawn counter carry the
    // stage label.
    struct job_metric {
      const char* field;
      const char* name;
      const char* type;
      const char* help;
      bool per_stage;
    };
    static const job_metric job_metrics[] = {
        {"step", "hllm_job_step", "gauge", "Steps done in the current stage (rank 0).", true},
        {"steps_total", "hllm_job_stage_steps", "gauge", "Steps the current stage runs in all (rank 0).", true},
        {"epoch", "hllm_job_epoch", "gauge", "Epoch of the current stage, from 0.", true},
        {"steps_per_s", "hllm_job_steps_per_second", "gauge", "Optimizer steps per second of the current stage.", true},
        {"samples_per_s", "hllm_job_samples_per_second", "gauge",
         "Training samples per second of the current stage (all ranks).", true},
        {"eta_s", "hllm_job_eta_seconds", "gauge", "Estimated seconds until the current stage ends.", true},
        {"loss", "hllm_job_loss", "gauge", "Loss of the last logged step.", true},
        {"top10", "hllm_job_top10_accuracy", "gauge", "In-batch top-10 accuracy of the last logged step.", true},
        {"respawns", "hllm_job_worker_respawns_total", "counter",
         "Worker processes started again after dying or hanging.", false},
    };
    for (const auto& m : job_metrics) {
      if (is_number(j, m.field)) x.add(m.name, m.type, m.help, m.per_stage ? rs : r0, num(j, m.field));
    }
    if (j.contains("best") && j["best"].is_object()) {
      for (const auto& [s, b] : j["best"].items()) {
        if (!b.is_object()) continue;
        x.add("hllm_job_best_validation_ndcg200", "gauge", "Best validation NDCG@200 (x100) of a trained stage.",
              {{"stage", s}}, num(b, "ndcg200"));
      }
    }
  }
  if (doc.contains("cache") && doc["cache"].is_array()) {
    for (const auto& c : doc["cache"]) {
      labels l{{"shard", std::to_string(c.value("shard", 0))}, {"actor", str(c, "actor")}};
      x.add("hllm_cache_rows_present", "gauge", "Embedding rows the cache shard holds for the current version.", l,
            num(c, "rows_present"));
      x.add("hllm_cache_rows_expected", "gauge", "Embedding rows the cache shard owns.", l, num(c, "rows_expected"));
    }
  }
  if (doc.contains("checkpoints") && doc["checkpoints"].is_array()) {
    for (const auto& c : doc["checkpoints"]) {
      labels l{{"checkpoint", str(c, "name")}, {"kind", str(c, "kind")}};
      x.add("hllm_checkpoint_bytes", "gauge", "Size of a checkpoint on disk.", l, num(c, "bytes"));
      x.add("hllm_checkpoint_timestamp_seconds", "gauge", "When a checkpoint was written (Unix time).", l,
            num(c, "mtime_unix_ms") / 1000.0);
    }
  }
  if (doc.contains("monitor") && doc["monitor"].is_object() && doc["monitor"].contains("counters")) {
    const json& c = doc["monitor"]["counters"];
    x.add("hllm_monitor_rounds_total", "counter", "Poll rounds of the monitor.", {}, num(c, "rounds"));
    x.add("hllm_monitor_polls_total", "counter", "Status requests the monitor sent.", {}, num(c, "polls"));
    x.add("hllm_monitor_unreachable_polls_total", "counter", "Status requests that failed or timed out.", {},
          num(c, "unreachable_polls"));
  }
  if (doc.contains("dead") && doc["dead"].is_array()) {
    x.add("hllm_monitor_dead_actors", "gauge", "Dead or retired actors the monitor keeps (bounded).", {},
          static_cast<double>(doc["dead"].size()));
  }
  return x.text();
}

// ---- hllm top ----

namespace {

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string field(const json& j, const char* key, int digits) {
  return is_number(j, key) ? fixed(num(j, key), digits) : "-";
}

std::string bytes_text(double b) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    ++u;
  }
  return fixed(b, u == 0 ? 0 : 1) + " " + units[u];
}

// The last WIDTH values as one line of block characters, scaled between their minimum and maximum.
std::string sparkline(const std::vector<double>& v, std::size_t width) {
  static const char* blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584", "\u2585", "\u2586", "\u2587", "\u2588"};
  std::size_t from = v.size() > width ? v.size() - width : 0;
  double lo = INFINITY, hi = -INFINITY;
  for (std::size_t i = from; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) continue;
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  std::string out;
  for (std::size_t i = from; i < v.size(); ++i) {
    if (!std::isfinite(v[i])) {
      out += ' ';
      continue;
    }
    int k = hi > lo ? static_cast<int>((v[i] - lo) / (hi - lo) * 7.0 + 0.5) : 3;
    out += blocks[std::max(0, std::min(7, k))];
  }
  return out;
}

std::string cut_lines(const std::string& text, std::size_t width) {
  if (width == 0) return text;
  std::string out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    // Count code points, not bytes (the sparkline is UTF-8).
    std::size_t cols = 0, cut = line.size();
    for (std::size_t i = 0; i < line.size(); ++i) {
      if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;
      if (cols == width) {
        cut = i;
        break;
      }
      ++cols;
    }
    out += line.substr(0, cut) + "\n";
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return out;
}

}  // namespace

std::string render_top(const json& doc, std::size_t width) {
  if (!doc.is_object()) throw error(errc::format, "console document: not a JSON object");
  std::string out;
  const json job = doc.contains("job") && doc["job"].is_object() ? doc["job"] : json::object();
  out += "hllm top  job " + str(doc, "job_id") + " epoch " + std::to_string(doc.value("job_epoch", 0)) +
         "  phase " + (str(job, "phase").empty() ? "-" : str(job, "phase")) + "\n";
  std::string stage = str(job, "stage");
  out += "stage " + (stage.empty() ? "-" : stage) + "  epoch " +
         (is_number(job, "epoch") ? std::to_string(static_cast<long long>(num(job, "epoch")) + 1) : "-") +
         "  step " + field(job, "step", 0) + "/" + field(job, "steps_total", 0) + "  " + field(job, "steps_per_s", 2) +
         " steps/s  " + field(job, "samples_per_s", 0) + " samples/s  ETA " +
         (is_number(job, "eta_s") ? format_duration(num(job, "eta_s")) : "-") + "  loss " + field(job, "loss", 4) +
         "  top10 " + field(job, "top10", 3) + "\n";
  std::string best;
  if (job.contains("best") && job["best"].is_object()) {
    for (const auto& [s, b] : job["best"].items()) {
      best += "  " + s + " " + fixed(num(b, "ndcg200"), 2) + " (epoch " +
              std::to_string(static_cast<long long>(num(b, "epoch")) + 1) + ")";
    }
  }
  out += "best validation N@200:" + (best.empty() ? std::string("  -") : best) + "\n";
  if (doc.contains("curves") && doc["curves"].is_object() && !stage.empty() && doc["curves"].contains(stage)) {
    const json& c = doc["curves"][stage];
    if (c.contains("loss") && c["loss"].is_array()) {
      std::vector<double> loss;
      for (const auto& v : c["loss"]) loss.push_back(v.is_number() ? v.get<double>() : NAN);
      out += "loss " + sparkline(loss, 60) + "\n";
    }
  }
  out += "\n" + render_status_table(doc);
  if (doc.contains("cache") && doc["cache"].is_array() && !doc["cache"].empty()) {
    out += "\ncache coverage:";
    for (const auto& c : doc["cache"]) {
      out += "  shard " + std::to_string(c.value("shard", 0)) + " " + fixed(100.0 * num(c, "coverage"), 1) + "% (" +
             fixed(num(c, "rows_present"), 0) + "/" + fixed(num(c, "rows_expected"), 0) + ")";
    }
    out += "\n";
  }
  if (doc.contains("checkpoints") && doc["checkpoints"].is_array() && !doc["checkpoints"].empty()) {
    out += "\ncheckpoints:\n";
    std::size_t shown = 0;
    for (const auto& c : doc["checkpoints"]) {
      if (shown++ == 6) break;
      out += "  " + cell(str(c, "name"), 28) + " " + cell(bytes_text(num(c, "bytes")), 9) + " " +
             cell(format_duration(num(c, "age_s", -1)) + " ago", 12) + (c.value("latest", false) ? " latest" : "") +
             "\n";
    }
  }
  if (doc.contains("dead") && doc["dead"].is_array() && !doc["dead"].empty()) {
    out += "\ndead or retired actors (newest first):\n";
    const json& d = doc["dead"];
    std::size_t shown = 0;
    for (auto it = d.rbegin(); it != d.rend() && shown < 5; ++it, ++shown) {
      out += "  " + cell(str(*it, "name"), 20) + " " + str(*it, "cause") + "\n";
    }
  }
  return cut_lines(out, width);
}

}  // namespace hllm
