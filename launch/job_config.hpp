#pragma once
// Job configuration: the embedded default (default_job.toml), a TOML file over it key by key, then `--set
// key.path=value` overrides, held as a JSON tree (hashed, recorded as JOB/job.toml) and read once into the typed
// job spec (actors/job_spec.hpp) that everything downstream takes. No torch.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/job_spec.hpp"

namespace hllm::launch {

class job_config {
 public:
  // Parses TOML text; `origin` names it in errors. Throws hllm::error(invalid_input) with line and column.
  static job_config from_toml(const std::string& text, const std::string& origin);
  // The embedded default, the file's TOML over it key by key (when `path` is not empty), then every "a.b.c=value"
  // override in order. Then validate(): an unknown key or a value its field does not allow is refused before
  // anything runs.
  static job_config load(const std::string& path, const std::vector<std::string>& overrides,
                         const std::string& default_toml);

  // The typed spec: every key checked by the rule its field declares (actors/job_spec.hpp: integers, ranges, words),
  // keys the tree lacks at their defaults, plus model.heads dividing model.hidden_size and model.kv_heads dividing
  // model.heads. Throws hllm::error(invalid_input) with one line naming the key, the value, what is allowed and where
  // the value came from (the file, or the --set that set it):
  //   config: stage1.batch_size = 0 is out of range (allowed: an integer 1..1048576; from --set stage1.batch_size=0)
  //   config: unknown key 'stage1.epoch' (from job.toml; every key is listed in launch/default_job.toml, ...)
  spec::job_spec spec() const;
  // spec(), for its checks only.
  void validate() const;

  // Applies one "a.b.c=value" override. The value is parsed as TOML (1, 0.5, true, "text", [1, 2]); a bare word
  // that is not TOML is taken as a string. Unknown keys are refused unless the parent table exists and
  // `allow_new` is set, so a typo never silently does nothing.
  void set(const std::string& assignment, bool allow_new = false);

  const nlohmann::json& tree() const { return tree_; }
  nlohmann::json& tree() { return tree_; }
  // The value at a dotted path; throws hllm::error(invalid_input) naming the key when missing or mistyped.
  template <class T>
  T get(const std::string& path) const {
    const nlohmann::json& v = at(path);
    try {
      return v.get<T>();
    } catch (const nlohmann::json::exception&) {
      throw_type_error(path, v);
    }
  }
  const nlohmann::json& at(const std::string& path) const;
  bool has(const std::string& path) const;

  // XXH3-64 of the canonical JSON form (sorted keys) without the operational keys: identifies the job for
  // checkpoints (a checkpoint of another hash is foreign) and fences its messages (the job id).
  uint64_t hash() const;
  // Keys (a table or table.key) that change how a job runs but not what it computes: left out of the hash, so a
  // resume may change them (more workers, longer timeouts, another checkpoint interval, more stages).
  static const std::vector<std::string>& operational_keys();
  // XXH3-64 of the whole config, operational keys included: the ranks of one job must agree on it.
  uint64_t effective_hash() const;
  std::string to_toml() const;
  // A spec as a tree of the same layout (a default-constructed spec: the defaults the structs declare).
  static nlohmann::json tree_of(spec::job_spec s);

 private:
  class reader;
  [[noreturn]] static void throw_type_error(const std::string& path, const nlohmann::json& v);
  std::string origin_of(const std::string& key) const;
  nlohmann::json tree_ = nlohmann::json::object();
  std::string origin_;
  std::vector<std::pair<std::string, std::string>> set_by_;  // key -> the --set assignment that last set it
};

}  // namespace hllm::launch
