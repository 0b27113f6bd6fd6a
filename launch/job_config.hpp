#pragma once
// Job configuration: TOML files (or the embedded default) with `--set key.path=value` overrides, held as a JSON
// tree so every part of the system reads the same structure. No torch.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hllm::launch {

class job_config {
 public:
  // Parses TOML text; `origin` names it in errors. Throws hllm::error(invalid_input) with line and column.
  static job_config from_toml(const std::string& text, const std::string& origin);
  // The file's TOML, or the embedded default when `path` is empty, then every "a.b.c=value" override in order.
  // Then validate(): a value out of its range is refused before anything runs.
  static job_config load(const std::string& path, const std::vector<std::string>& overrides,
                         const std::string& default_toml);

  // Checks every numeric key that is present against its range (job_config.cpp, `numeric_keys`): integer keys must
  // be integers, floats finite, each within [min, max] (lr and other "> 0" keys exclusive), plus model.heads dividing
  // model.hidden_size and model.kv_heads dividing model.heads. Throws hllm::error(invalid_input) with one line naming
  // the key, the value, the allowed range and where the value came from (the file, or the --set that set it):
  //   config: stage1.batch_size = 0 is out of range (allowed: 1..1048576; from --set stage1.batch_size=0)
  // Missing keys are left to the readers (an older job.toml may lack a newer key).
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
  std::string to_toml() const;

 private:
  [[noreturn]] static void throw_type_error(const std::string& path, const nlohmann::json& v);
  std::string origin_of(const std::string& key) const;
  nlohmann::json tree_ = nlohmann::json::object();
  std::string origin_;
  std::vector<std::pair<std::string, std::string>> set_by_;  // key -> the --set assignment that last set it
};

}  // namespace hllm::launch
