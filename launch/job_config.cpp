#include "launch/job_config.hpp"

#include <toml++/toml.h>

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
