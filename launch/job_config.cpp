#include "launch/job_config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
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

std::string number_text(double v, bool integer) {
  if (integer) return std::to_string(static_cast<long long>(v));
  std::ostringstream s;
  s << v;
  return s.str();
}

std::string range_text(const spec::range& r, bool integer) {
  if (integer) return number_text(r.min, true) + ".." + number_text(r.max, true);
  return (r.min_exclusive ? "> " + number_text(r.min, false) + " and <= " : number_text(r.min, false) + "..") +
         number_text(r.max, false);
}

std::string words_text(spec::words w) {
  std::string out;
  std::size_t i = 0;
  for (auto word : w) {
    if (i > 0) out += ++i == w.size() ? " or " : ", ";
    else ++i;
    out += "\"" + std::string(word) + "\"";
  }
  return out;
}

// A file's tree over the defaults, key by key: tables merge, every other value replaces.
void overlay(nlohmann::json& base, const nlohmann::json& over) {
  for (const auto& [k, v] : over.items()) {
    auto it = base.find(k);
    if (it != base.end() && it->is_object() && v.is_object()) overlay(*it, v);
    else base[k] = v;
  }
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
  job_config c = from_toml(default_toml, "<embedded default job>");
  if (!path.empty()) {
    // The file overrides the defaults key by key: a file holding only `[stage1] epochs = 1` is a whole job.
    job_config file = from_toml(storage::read_text_file(path), path);
    overlay(c.tree_, file.tree_);
    c.origin_ = path;
  }
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

// Reads a tree into the spec's structs: each present key checked by the rule its field declares (actors/job_spec.hpp),
// each absent key left at its default, every key the spec does not declare refused.
class job_config::reader {
 public:
  explicit reader(const job_config& c) : c_(c) {}

  template <class S>
  void section(const char* name, S& s) {
    table_ = name;
    sections_.push_back(name);
    auto it = c_.tree_.find(name);
    if (it == c_.tree_.end()) return;
    if (!it->is_object()) fail(name, *it, "is not a table (allowed: a [" + std::string(name) + "] table");
    node_ = &*it;
    keys_.clear();
    s.visit(*this);
    for (const auto& [k, v] : node_->items()) {
      if (std::find(keys_.begin(), keys_.end(), k) == keys_.end()) unknown(table_ + "." + k);
    }
  }
  void finish() const {
    for (const auto& [k, v] : c_.tree_.items()) {
      if (std::find(sections_.begin(), sections_.end(), k) == sections_.end()) unknown(k);
    }
  }

  template <class T>
  void operator()(const char* key, T& field, spec::range r) {
    if (const nlohmann::json* v = find(key)) field = number<T>(full(key), *v, r, full(key));
  }
  template <class T>
  void operator()(const char* key, std::vector<T>& field, spec::range r) {
    const nlohmann::json* v = find(key);
    if (v == nullptr) return;
    const std::string k = full(key);
    if (!v->is_array()) fail(k, *v, "is not an array (allowed: [] or integers " + range_text(r, true));
    field.clear();
    for (std::size_t i = 0; i < v->size(); ++i) field.push_back(number<T>(k + "[" + std::to_string(i) + "]", (*v)[i], r, k));
  }
  void operator()(const char* key, bool& field) {
    const nlohmann::json* v = find(key);
    if (v == nullptr) return;
    if (!v->is_boolean()) fail(full(key), *v, "is not a boolean (allowed: true or false");
    field = v->get<bool>();
  }
  void operator()(const char* key, std::string& field) {
    if (const nlohmann::json* v = find(key)) field = text(full(key), *v, full(key));
  }
  void operator()(const char* key, std::string& field, spec::words w) {
    const nlohmann::json* v = find(key);
    if (v == nullptr) return;
    field = word(full(key), *v, w, full(key));
  }
  void operator()(const char* key, std::string& field, spec::text_rule rule) {
    const nlohmann::json* v = find(key);
    if (v == nullptr) return;
    const std::string k = full(key), t = v->is_string() ? v->get<std::string>() : std::string();
    if (const char* allowed = v->is_string() ? rule(t) : "text") fail(k, *v, "is not allowed (allowed: " + std::string(allowed));
    field = t;
  }
  void operator()(const char* key, std::vector<std::string>& field, spec::words w) {
    const nlohmann::json* v = find(key);
    if (v == nullptr) return;
    const std::string k = full(key);
    if (!v->is_array()) fail(k, *v, "is not an array (allowed: a list of " + words_text(w));
    field.clear();
    for (std::size_t i = 0; i < v->size(); ++i) {
      const std::string element = k + "[" + std::to_string(i) + "]";
      field.push_back(word(element, (*v)[i], w, k));
      if (std::find(field.begin(), field.end() - 1, field.back()) != field.end() - 1) {
        fail(element, (*v)[i], "is listed twice (allowed: each at most once", k);
      }
    }
  }

 private:
  std::string full(const char* key) const { return table_ + "." + key; }
  const nlohmann::json* find(const char* key) {
    keys_.push_back(key);
    auto it = node_->find(key);
    return it == node_->end() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const std::string& key, const nlohmann::json& v, const std::string& problem,
                         const std::string& origin_key = "") const {
    throw error(errc::invalid_input, "config: " + key + " = " + v.dump() + " " + problem + "; from " +
                                         c_.origin_of(origin_key.empty() ? key : origin_key) + ")");
  }
  [[noreturn]] void unknown(const std::string& key) const {
    throw error(errc::invalid_input, "config: unknown key '" + key + "' (from " + c_.origin_of(key) +
                                         "; every key is listed in launch/default_job.toml, `hllm train --print-config`)");
  }
  template <class T>
  T number(const std::string& key, const nlohmann::json& v, const spec::range& r, const std::string& base) const {
    constexpr bool integer = std::is_integral_v<T>;
    const std::string allowed = "(allowed: " + std::string(integer ? "an integer " : "a number ") + range_text(r, integer);
    if (!v.is_number()) fail(key, v, "is not a number " + allowed, base);
    const double d = v.get<double>();
    if (integer && !v.is_number_integer() && !(std::isfinite(d) && d == std::floor(d))) {
      fail(key, v, "is not an integer " + allowed, base);
    }
    const bool below = r.min_exclusive ? !(d > r.min) : !(d >= r.min);
    if (!std::isfinite(d) || below || d > r.max) fail(key, v, "is out of range " + allowed, base);
    if constexpr (integer) {
      return v.is_number_integer() ? static_cast<T>(v.get<int64_t>()) : static_cast<T>(d);
    } else {
      return static_cast<T>(d);
    }
  }
  std::string text(const std::string& key, const nlohmann::json& v, const std::string& base) const {
    if (!v.is_string()) fail(key, v, "is not text (allowed: a quoted string", base);
    return v.get<std::string>();
  }
  std::string word(const std::string& key, const nlohmann::json& v, spec::words w, const std::string& base) const {
    const std::string t = v.is_string() ? v.get<std::string>() : std::string();
    if (!v.is_string() || std::find(w.begin(), w.end(), std::string_view(t)) == w.end()) {
      fail(key, v, "is not allowed (allowed: " + words_text(w), base);
    }
    return t;
  }

  const job_config& c_;
  std::string table_;
  const nlohmann::json* node_ = nullptr;
  std::vector<std::string> keys_, sections_;
};

// Writes a spec as a tree (what the defaults are, for the test that keeps default_job.toml equal to them).
namespace {
class writer {
 public:
  template <class S>
  void section(const char* name, S& s) {
    node_ = &tree[name];
    *node_ = nlohmann::json::object();
    s.visit(*this);
  }
  template <class T, class Rule>
  void operator()(const char* key, T& field, Rule) {
    (*node_)[key] = field;
  }
  template <class T>
  void operator()(const char* key, T& field) {
    (*node_)[key] = field;
  }
  nlohmann::json tree = nlohmann::json::object();

 private:
  nlohmann::json* node_ = nullptr;
};
}  // namespace

spec::job_spec job_config::spec() const {
  spec::job_spec s;
  reader r(*this);
  s.visit(r);
  r.finish();
  // `part` must divide `whole`; the error names the one a --set changed (the other is as the file says).
  auto fail = [&](const std::string& key, int64_t value, const std::string& problem) {
    throw error(errc::invalid_input, "config: " + key + " = " + std::to_string(value) + " " + problem + "; from " +
                                         origin_of(key) + ")");
  };
  auto divides = [&](const std::string& part, int64_t p, const std::string& whole, int64_t w) {
    if (w % p == 0) return;
    const auto by_set = [&](const std::string& key) { return origin_of(key).rfind("--set ", 0) == 0; };
    if (by_set(whole) && !by_set(part)) {
      fail(whole, w, "is not a multiple of " + part + " = " + std::to_string(p) + " (allowed: a multiple of it");
    }
    fail(part, p, "does not divide " + whole + " = " + std::to_string(w) + " (allowed: a divisor of it");
  };
  divides("model.heads", s.model.heads, "model.hidden_size", s.model.hidden_size);
  divides("model.kv_heads", s.model.kv_heads, "model.heads", s.model.heads);
  if (s.job.runs("scratch") && s.model.item_llm_from.empty()) {
    throw error(errc::invalid_input,
                "config: job.stages lists \"scratch\" (stage 1 with a random Item LLM, compared with a pretrained "
                "one) but model.item_llm_from is empty (allowed: set it to a Hugging Face Llama checkpoint directory, "
                "or drop \"scratch\"; from " + origin_of("job.stages") + ")");
  }
  return s;
}

void job_config::validate() const { (void)spec(); }

nlohmann::json job_config::tree_of(spec::job_spec s) {
  writer w;
  s.visit(w);
  return w.tree;
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
  auto drop_if_neutral = [&](const char* table, const char* key, const nlohmann::json& neutral = 0) {
    auto it = t.find(table);
    if (it != t.end() && it->is_object() && it->contains(key) && (*it)[key] == neutral) it->erase(key);
  };
  drop_if_neutral("model", "time_buckets");
  // The checkpoint by its path as written (its bytes are not read: a job start stays cheap for a large model).
  drop_if_neutral("model", "item_llm_from", "");
  drop_if_neutral("baseline", "position_embeddings");
  for (const char* stage : {"baseline", "stage1", "stage2"}) {  // early stopping and dropout: 0 is off
    for (const char* key : {"patience", "eval_every_steps", "max_steps", "dropout"}) drop_if_neutral(stage, key);
  }
  std::string canonical = t.dump();  // nlohmann objects keep keys sorted: a canonical form
  return storage::hash_bytes(canonical.data(), canonical.size());
}

uint64_t job_config::effective_hash() const {
  const std::string whole = tree_.dump();
  return storage::hash_bytes(whole.data(), whole.size());
}

std::string job_config::to_toml() const {
  std::ostringstream out;
  to_toml_lines(tree_, "", out);
  return out.str();
}

}  // namespace hllm::launch
