#include "launch/job_config.hpp"

#include <toml++/toml.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm::launch {
namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot == std::string::npos ? std::string::npos : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  for (const auto& p : parts) {
    if (p.empty()) throw error(errc::invalid_input, "config key '" + path + "' has an empty part");
  }
  return parts;
}

nlohmann::json to_json(const toml::node& n);

nlohmann::json to_json(const toml::table& t) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : t) j[std::string(k.str())] = to_json(v);
  return j;
}

nlohmann::json to_json(const toml::node& n) {
  if (const auto* t = n.as_table()) return to_json(*t);
  if (const auto* a = n.as_array()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& e : *a) j.push_back(to_json(e));
    return j;
  }
  if (const auto* s = n.as_string()) return s->get();
  if (const auto* i = n.as_integer()) return i->get();
  if (const auto* f = n.as_floating_point()) return f->get();
  if (const auto* b = n.as_boolean()) return b->get();
  throw error(errc::invalid_input, "config: dates and times are not used in job configs");
}

// The numeric keys of a job and their ranges. Upper bounds are generous (far beyond any job this code can run) but
// finite, so a typo of a few extra digits is refused instead of allocating or overflowing. `dot` keys name one value;
// a key ending in "[]" is an array whose every element has that range.
struct numeric_key {
  const char* key;
  bool integer;
  double min, max;
  bool min_exclusive;  // "> min" (learning rates, epsilons)
};

constexpr double big = 9007199254740992.0;  // 2^53: every integer up to here is exact in a double

// clang-format off
constexpr numeric_key numeric_keys[] = {
    {"job.seed", true, 0, big, false},
    {"job.threads", true, 0, 4096, false},
    {"model.hidden_size", true, 1, 65536, false},
    {"model.intermediate_size", true, 1, 1048576, false},
    {"model.item_layers", true, 1, 1024, false},
    {"model.user_layers", true, 1, 1024, false},
    {"model.heads", true, 1, 1024, false},
    {"model.kv_heads", true, 1, 1024, false},
    {"model.rms_norm_eps", false, 0, 1, true},
    {"model.rope_theta", false, 0, 1e12, true},
    {"model.false_negative_cosine", false, -1, 1, false},
    {"model.cls_lambda", false, 0, 1e6, false},
    {"model.time_buckets", true, 0, 1024, false},
#define HLLM_STAGE_KEYS(s)                                                                                      \
    {s ".epochs", true, 1, 1000000, false}, {s ".batch_size", true, 1, 1048576, false},                        \
    {s ".seq_len", true, 1, 1048576, false}, {s ".negatives", true, 1, 16777216, false},                       \
    {s ".lr", false, 0, 10, true}, {s ".weight_decay", false, 0, 10, false},                                    \
    {s ".warmup_share", false, 0, 1, false}, {s ".clip_norm", false, 0, 1e9, false}
    HLLM_STAGE_KEYS("baseline"), HLLM_STAGE_KEYS("stage1"), HLLM_STAGE_KEYS("stage2"),
#undef HLLM_STAGE_KEYS
    {"cache.unit_items", true, 1, 16777216, false},
    {"cache.persist_every_units", true, 1, 1e9, false},
    {"cache.unit_timeout_s", true, 1, 31536000, false},
    {"eval.max_history", true, 1, 1048576, false},
    {"train.window", true, 1, 1024, false},
    {"train.request_timeout_ms", true, 1, 86400000, false},
    {"train.collective_timeout_s", true, 1, 604800, false},
    {"train.checkpoint_every_steps", true, 0, 1e12, false},
    {"train.keep_checkpoints", true, 1, 1000000, false},
    {"placement.loaders", true, 1, 1024, false},
    {"placement.samplers", true, 1, 1024, false},
    {"placement.encoders", true, 1, 1024, false},
    {"placement.cache_shards", true, 1, 4096, false},
    {"placement.workers", true, 0, 1024, false},
    {"placement.encoder_ranks[]", true, 0, 65535, false},
    {"placement.heartbeat_ms", true, 1, 3600000, false},
    {"placement.heartbeat_timeout_ms", true, 1, 86400000, false},
    {"placement.start_timeout_ms", true, 1, 86400000, false},
    {"placement.max_respawns", true, 0, 1000000, false},
    {"monitor.port", true, -1, 65535, false},
    {"monitor.curve_points", true, 1, 10000000, false},
    {"monitor.dead_kept", true, 0, 1000000, false},
};
// clang-format on

std::string number_text(double v, bool integer) {
  if (integer) return std::to_string(static_cast<long long>(v));
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string range_text(const numeric_key& k) {
  if (k.integer) return number_text(k.min, true) + ".." + number_text(k.max, true);
  return (k.min_exclusive ? "> " + number_text(k.min, false) + " and <= " : number_text(k.min, false) + "..") +
         number_text(k.max, false);
}

void to_toml_lines(const nlohmann::json& j, const std::string& prefix, std::ostringstream& out) {
  for (const auto& [k, v] : j.items()) {
    if (!v.is_object()) out << k << " = " << v.dump() << "\n";
  }
  for (const auto& [k, v] : j.items()) {
    if (v.is_object()) {
      std::string name = prefix.empty() ? k : prefix + "." + k;
      out << "\n[" << name << "]\n";
      to_toml_lines(v, name, out);
    }
  }
}

}  // namespace

job_config job_config::from_toml(const std::string& text, const std::string& origin) {
  job_config c;
  c.origin_ = origin;
  try {
    toml::table t = toml::parse(text, origin);
    c.tree_ = to_json(t);
  } catch (const toml::parse_error& e) {
    std::ostringstream s;
    s << origin << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    throw error(errc::invalid_input, "config: " + s.str());
  }
  return c;
}

job_config job_config::load(const std::string& path, const std::vector<std::string>& overrides,
                            const std::string& default_toml) {
  job_config c = path.empty() ? from_toml(default_toml, "<embedded default job>")
                              : from_toml(storage::read_text_file(path), path);
  for (const auto& o : overrides) c.set(o);
  c.validate();
  return c;
}

void job_config::set(const std::string& assignment, bool allow_new) {
  std::size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    throw error(errc::invalid_input, "--set '" + assignment + "': expected key.path=value");
  }
  std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  auto parts = split_path(key);
  nlohmann::json value;
  try {
    toml::table t = toml::parse("v = " + text);
    value = to_json(*t.get("v"));
  } catch (const toml::parse_error&) {
    value = text;  // a bare word: a string
  }
  nlohmann::json* node = &tree_;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!node->is_object() || !node->contains(parts[i])) {
      throw error(errc::invalid_input, "--set '" + assignment + "': no config table '" + parts[i] + "'");
    }
    node = &(*node)[parts[i]];
  }
  if (!node->is_object()) throw error(errc::invalid_input, "--set '" + assignment + "': parent is not a table");
  if (!node->contains(parts.back())) {
    if (!allow_new) {
      throw error(errc::invalid_input, "--set '" + assignment + "': unknown key '" + key + "' (typo?)");
    }
  } else {
    const auto& old = (*node)[parts.back()];
    bool numeric_ok = old.is_number() && value.is_number();
    if (!old.is_null() && old.type() != value.type() && !numeric_ok) {
      throw error(errc::invalid_input, "--set '" + assignment + "': '" + key + "' is a " + old.type_name() +
                                           ", not a " + value.type_name());
    }
    if (old.is_number_float() && value.is_number_integer()) value = value.get<double>();
  }
  (*node)[parts.back()] = value;
  set_by_.emplace_back(key, assignment);
}

const nlohmann::json& job_config::at(const std::string& path) const {
  const nlohmann::json* node = &tree_;
  for (const auto& p : split_path(path)) {
    if (!node->is_object() || !node->contains(p)) {
      throw error(errc::invalid_input, "config (" + origin_ + "): missing key '" + path + "'");
    }
    node = &(*node)[p];
  }
  return *node;
}

bool job_config::has(const std::string& path) const {
  const nlohmann::json* node = &tree_;
  for (const auto& p : split_path(path)) {
    if (!node->is_object() || !node->contains(p)) return false;
    node = &(*node)[p];
  }
  return true;
}

std::string job_config::origin_of(const std::string& key) const {
  for (auto it = set_by_.rbegin(); it != set_by_.rend(); ++it) {
    if (it->first == key) return "--set " + it->second;
  }
  return origin_.empty() ? std::string("the config") : origin_;
}

void job_config::validate() const {
  auto fail = [&](const std::string& key, const nlohmann::json& v, const std::string& problem,
                  const std::string& origin_key = "") {
    throw error(errc::invalid_input, "config: " + key + " = " + v.dump() + " " + problem + "; from " +
                                         origin_of(origin_key.empty() ? key : origin_key) + ")");
  };
  auto check = [&](const numeric_key& k, const std::string& key, const nlohmann::json& v, const std::string& base) {
    const std::string allowed = "(allowed: " + std::string(k.integer ? "an integer " : "a number ") + range_text(k);
    if (!v.is_number()) fail(key, v, "is not a number " + allowed, base);
    const double d = v.get<double>();
    if (k.integer && !v.is_number_integer() && !(std::isfinite(d) && d == std::floor(d))) {
      fail(key, v, "is not an integer " + allowed, base);
    }
    const bool below = k.min_exclusive ? !(d > k.min) : !(d >= k.min);
    if (!std::isfinite(d) || below || d > k.max) fail(key, v, "is out of range " + allowed, base);
  };
  for (const auto& k : numeric_keys) {
    std::string key = k.key;
    const bool array = key.size() > 2 && key.compare(key.size() - 2, 2, "[]") == 0;
    if (array) key.resize(key.size() - 2);
    if (!has(key)) continue;
    const nlohmann::json& v = at(key);
    if (!array) {
      check(k, key, v, key);
      continue;
    }
    if (!v.is_array()) fail(key, v, "is not an array (allowed: [] or integers " + range_text(k));
    for (std::size_t i = 0; i < v.size(); ++i) check(k, key + "[" + std::to_string(i) + "]", v[i], key);
  }
  // `part` must divide `whole`; the error names the one a --set changed (the other is as the file says).
  auto divides = [&](const std::string& part, const std::string& whole) {
    if (!has(part) || !has(whole)) return;
    const auto p = static_cast<int64_t>(at(part).get<double>()), w = static_cast<int64_t>(at(whole).get<double>());
    if (w % p == 0) return;
    const auto by_set = [&](const std::string& key) { return origin_of(key).rfind("--set ", 0) == 0; };
    if (by_set(whole) && !by_set(part)) {
      fail(whole, at(whole), "is not a multiple of " + part + " = " + at(part).dump() + " (allowed: a multiple of it");
    }
    fail(part, at(part), "does not divide " + whole + " = " + at(whole).dump() + " (allowed: a divisor of it");
  };
  divides("model.heads", "model.hidden_size");
  divides("model.kv_heads", "model.heads");
  // train.device: auto | cpu | cuda | cuda:N (whether this build and machine have it is decided when the job starts,
  // model::resolve_device).
  if (has("train.device")) {
    const nlohmann::json& v = at("train.device");
    const std::string d = v.is_string() ? v.get<std::string>() : std::string();
    bool ok = d == "auto" || d == "cpu" || d == "cuda";
    if (!ok && d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() <= 8) {
      ok = d.find_first_not_of("0123456789", 5) == std::string::npos;
    }
    if (!ok) fail("train.device", v, "is not a device (allowed: \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"");
  }
}

void job_config::throw_type_error(const std::string& path, const nlohmann::json& v) {
  throw error(errc::invalid_input, "config: key '" + path + "' has the wrong type (" + v.type_name() + ")");
}

const std::vector<std::string>& job_config::operational_keys() {
  // Where actors live and how long to wait do not change a single parameter (the determinism tests pin placement
  // and credit windows), nor when checkpoints are written, which stages this run executes or how it is watched.
  static const std::vector<std::string> keys{"placement",
                                             "job.stages",
                                             "train.window",
                                             "train.request_timeout_ms",
                                             "train.collective_timeout_s",
                                             "train.checkpoint_every_steps",
                                             "train.device",
                                             "train.keep_checkpoints",
                                             "cache.unit_timeout_s",
                                             "cache.persist_every_units",
                                             "monitor"};
  return keys;
}

uint64_t job_config::hash() const {
  nlohmann::json t = tree_;
  for (const auto& k : operational_keys()) {
    auto parts = split_path(k);
    nlohmann::json* parent = &t;
    for (std::size_t i = 0; parent != nullptr && i + 1 < parts.size(); ++i) {
      auto it = parent->find(parts[i]);
      parent = it != parent->end() && it->is_object() ? &*it : nullptr;
    }
    if (parent != nullptr) parent->erase(parts.back());
  }
  // Keys added after jobs were already running, at the value that computes what those jobs computed: left out of the
  // hash, so such a job still resumes after an upgrade (its job.toml lacks them). Any other value is hashed.
  static const std::pair<const char*, const char*> neutral_defaults[] = {{"model", "time_buckets"}};
  for (const auto& [table, key] : neutral_defaults) {
    auto it = t.find(table);
    if (it != t.end() && it->is_object() && it->contains(key) && (*it)[key] == 0) it->erase(key);
  }
  std::string canonical = t.dump();  // nlohmann objects keep keys sorted: a canonical form
  return storage::hash_bytes(canonical.data(), canonical.size());
}

std::string job_config::to_toml() const {
  std::ostringstream out;
  to_toml_lines(tree_, "", out);
  return out.str();
}

}  // namespace hllm::launch
