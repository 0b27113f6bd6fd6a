#pragma once
// The job spec: a job config (launch/default_job.toml is the user's reference) as typed, checked structs, one per
// concern. launch/job_config parses a TOML file and `--set` overrides into a job_spec once; everything downstream
// (the job, its actors, the commands) reads these structs, never the TOML or JSON tree. No torch, no JSON.
//
// Each field is declared with its default (the value default_job.toml shows: a test keeps the two equal) and its
// meaning; each struct's `visit` names every field's key and the rule its value must meet (an integer range, a
// number range, one of a set of words). To add a key: declare the field here, list it in `visit`, add it with a
// comment to default_job.toml; if it must not change what an existing job computes, see
// launch/job_config.cpp `neutral_defaults` (the config hash) and `operational_keys`.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace hllm::spec {

// The rule of a numeric field: min <= value <= max (min < value with min_exclusive).
struct range {
  double min, max;
  bool min_exclusive = false;
};
constexpr double exact_max = 9007199254740992.0;  // 2^53: every integer up to here is exact in a double
// The words a text field (or every element of a list of words) may take.
using words = std::initializer_list<std::string_view>;
// A text field checked by a function: nullptr when the value is fine, else what is allowed.
using text_rule = const char* (*)(const std::string&);

// "auto", "cpu", "cuda" or "cuda:N".
inline const char* device_rule(const std::string& d) {
  if (d == "auto" || d == "cpu" || d == "cuda") return nullptr;
  if (d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() <= 8 &&
      d.find_first_not_of("0123456789", 5) == std::string::npos) {
    return nullptr;
  }
  return "\"auto\", \"cpu\", \"cuda\" or \"cuda:N\"";
}

struct job_settings {
  std::uint64_t seed = 2020;  // every random choice is a pure function of (seed, stage, epoch, step, rank, purpose)
  // What runs (always in this order, whatever the list's order): popularity, text (text-only baseline), baseline
  // (ID model), stage1, scratch (stage 1 with a random Item LLM; needs model.item_llm_from), frozen (stage 1 with
  // the Item LLM frozen), cache (fill the embedding cache), stage2, test.
  std::vector<std::string> stages{"popularity", "baseline", "stage1", "cache", "stage2", "test"};
  int threads = 0;  // torch intra-op threads per process; 0: this host's cores shared by its ranks

  template <class V>
  void visit(V& v) {
    v("seed", seed, range{0, exact_max});
    v("stages", stages,
      words{"popularity", "text", "baseline", "stage1", "scratch", "frozen", "cache", "stage2", "test"});
    v("threads", threads, range{0, 4096});
  }
  bool runs(std::string_view stage) const {
    for (const auto& s : stages) {
      if (s == stage) return true;
    }
    return false;
  }
};

struct model_settings {
  std::int64_t hidden_size = 64;  // both LLMs: item embeddings feed the User LLM directly
  std::int64_t intermediate_size = 256;
  std::int64_t item_layers = 2;
  std::int64_t user_layers = 2;
  std::int64_t heads = 4;
  std::int64_t kv_heads = 4;  // < heads: grouped-query attention
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::string pooling = "item";  // "item": the [ITEM] token's final state; "mean": mean over the item's tokens
  double false_negative_cosine = 0.99;
  bool late_fusion = false;   // learned [USER] vector + two-tower BCE head
  bool early_fusion = false;  // candidate appended to the sequence + MLP head with BCE
  double cls_lambda = 1.0;    // L = cls_lambda * L_gen + L_cls when a discriminative head is on
  std::int64_t time_buckets = 0;  // > 0: learned embedding of log2-second gaps between interactions; 0: off
  // A Hugging Face Llama checkpoint directory (config.json + model.safetensors or a sharded index): stage 1 and
  // frozen start their Item LLM from its weights, shaped by its config.json (item_layers, intermediate_size, heads,
  // kv_heads, rms_norm_eps and rope_theta then shape the User LLM only). "": a random (seeded) Item LLM.
  std::string item_llm_from;

  template <class V>
  void visit(V& v) {
    v("hidden_size", hidden_size, range{1, 65536});
    v("intermediate_size", intermediate_size, range{1, 1048576});
    v("item_layers", item_layers, range{1, 1024});
    v("user_layers", user_layers, range{1, 1024});
    v("heads", heads, range{1, 1024});
    v("kv_heads", kv_heads, range{1, 1024});
    v("rms_norm_eps", rms_norm_eps, range{0, 1, true});
    v("rope_theta", rope_theta, range{0, 1e12, true});
    v("pooling", pooling, words{"item", "mean"});
    v("false_negative_cosine", false_negative_cosine, range{-1, 1});
    v("late_fusion", late_fusion);
    v("early_fusion", early_fusion);
    v("cls_lambda", cls_lambda, range{0, 1e6});
    v("time_buckets", time_buckets, range{0, 1024});
    v("item_llm_from", item_llm_from);
  }
};

// One trained model's schedule ([baseline], [stage1], [stage2]).
struct stage_settings {
  std::int64_t epochs = 3;
  std::uint32_t batch_size = 64;  // users per step (per trainer rank)
  std::uint32_t seq_len = 10;     // inputs per user window (the window holds seq_len + 1 items)
  std::uint32_t negatives = 256;  // shared negative pool per step
  double lr = 0.001;
  double weight_decay = 0.01;
  double warmup_share = 0.1;
  double clip_norm = 1.0;
  bool bf16 = false;
  // Training to convergence (docs/model.md "Early stopping"): 0 turns each off.
  std::int64_t patience = 0;          // stop once validation NDCG@200 has not improved for this many validations
  std::int64_t eval_every_steps = 0;  // also validate every this many optimizer steps (0: after every epoch only)
  std::int64_t max_steps = 0;         // at most this many optimizer steps (0: epochs x steps per epoch)
  double dropout = 0;  // training only: dropout on the User LLM's inputs and on each block's attention and MLP output

  template <class V>
  void visit(V& v) {
    v("epochs", epochs, range{1, 1000000});
    v("batch_size", batch_size, range{1, 1048576});
    v("seq_len", seq_len, range{1, 1048576});
    v("negatives", negatives, range{1, 16777216});
    v("lr", lr, range{0, 10, true});
    v("weight_decay", weight_decay, range{0, 10});
    v("warmup_share", warmup_share, range{0, 1});
    v("clip_norm", clip_norm, range{0, 1e9});
    v("bf16", bf16);
    v("patience", patience, range{0, 1000000});
    v("eval_every_steps", eval_every_steps, range{0, 1e12});
    v("max_steps", max_steps, range{0, 1e12});
    v("dropout", dropout, range{0, 0.95});
  }
};

// The ID baseline's schedule and its SASRec inputs (Kang & McAuley 2018; docs/model.md "The ID baseline").
struct baseline_settings : stage_settings {
  std::int64_t position_embeddings = 0;  // > 0: learned embedding of each input's distance from the sequence end

  template <class V>
  void visit(V& v) {
    stage_settings::visit(v);
    v("position_embeddings", position_embeddings, range{0, 1048576});
  }
};

struct cache_settings {
  std::int64_t unit_items = 256;          // items per encoder work unit (the ledger records finished units)
  std::int64_t persist_every_units = 8;   // shards persist and the ledger records this often
  std::int64_t unit_timeout_s = 600;      // an encoder silent on a unit this long is given up; the unit re-queued

  template <class V>
  void visit(V& v) {
    v("unit_items", unit_items, range{1, 16777216});
    v("persist_every_units", persist_every_units, range{1, 1e9});
    v("unit_timeout_s", unit_timeout_s, range{1, 31536000});
  }
};

struct eval_settings {
  std::int64_t max_history = 50;     // most recent history items the User LLM reads at evaluation
  bool validate_every_epoch = true;  // validation NDCG@200 picks the best epoch of each trained model

  template <class V>
  void visit(V& v) {
    v("max_history", max_history, range{1, 1048576});
    v("validate_every_epoch", validate_every_epoch);
  }
};

struct train_settings {
  std::string device = "auto";  // "auto" (cuda:LOCAL_RANK when built with CUDA and visible), "cpu", "cuda", "cuda:N"
  std::uint32_t window = 4;     // steps in flight per trainer (credit window towards loaders and samplers)
  std::int64_t request_timeout_ms = 30000;
  std::int64_t collective_timeout_s = 300;     // a collective waiting longer fails instead of hanging
  std::int64_t checkpoint_every_steps = 100;   // 0: only after epochs
  std::int64_t keep_checkpoints = 3;           // the newest checkpoints kept (stage bests are kept apart)

  template <class V>
  void visit(V& v) {
    v("device", device, &device_rule);
    v("window", window, range{1, 1024});
    v("request_timeout_ms", request_timeout_ms, range{1, 86400000});
    v("collective_timeout_s", collective_timeout_s, range{1, 604800});
    v("checkpoint_every_steps", checkpoint_every_steps, range{0, 1e12});
    v("keep_checkpoints", keep_checkpoints, range{1, 1000000});
  }
};

struct placement_settings {
  bool spread = false;                  // true: actor i of each kind on rank i % world size
  std::string spread_over = "ranks";    // "ranks" or "hosts" (round-robin over the hosts)
  std::vector<std::int64_t> encoder_ranks;  // ranks hosting the item encoders during the cache fill; []: as others
  int loaders = 2;
  int samplers = 1;
  int encoders = 1;
  int cache_shards = 2;
  int workers = 0;  // > 0: loaders, samplers and shards in this many worker processes on rank 0's host
  std::int64_t heartbeat_ms = 1000;
  std::int64_t heartbeat_timeout_ms = 10000;  // a worker silent this long is killed and started again
  std::int64_t start_timeout_ms = 60000;
  int max_respawns = 10;  // per worker process

  template <class V>
  void visit(V& v) {
    v("spread", spread);
    v("spread_over", spread_over, words{"ranks", "hosts"});
    v("encoder_ranks", encoder_ranks, range{0, 65535});
    v("loaders", loaders, range{1, 1024});
    v("samplers", samplers, range{1, 1024});
    v("encoders", encoders, range{1, 1024});
    v("cache_shards", cache_shards, range{1, 4096});
    v("workers", workers, range{0, 1024});
    v("heartbeat_ms", heartbeat_ms, range{1, 3600000});
    v("heartbeat_timeout_ms", heartbeat_timeout_ms, range{1, 86400000});
    v("start_timeout_ms", start_timeout_ms, range{1, 86400000});
    v("max_respawns", max_respawns, range{0, 1000000});
  }
};

struct monitor_settings {
  int port = 0;                   // console HTTP port; 0: any free port; -1: no console
  std::string host = "127.0.0.1";  // address to listen on; anything but loopback needs a token
  std::string token;              // bearer token; "": none (never written to JOB/job.toml)
  bool token_set = false;         // what JOB/job.toml records instead of the token
  std::int64_t curve_points = 1000;  // loss/accuracy points kept per trained stage
  std::int64_t dead_kept = 50;       // dead, lost or retired actors the console keeps

  template <class V>
  void visit(V& v) {
    v("port", port, range{-1, 65535});
    v("host", host);
    v("token", token);
    v("token_set", token_set);
    v("curve_points", curve_points, range{1, 10000000});
    v("dead_kept", dead_kept, range{0, 1000000});
  }
};

// The defaults that differ between the trained models' schedules.
inline baseline_settings baseline_defaults() {
  baseline_settings s;
  s.epochs = 12;  // about the wall time of stage 1 on the embedded data
  return s;
}
inline stage_settings stage2_defaults() {
  stage_settings s;
  s.seq_len = 20;
  s.lr = 0.0005;
  return s;
}

struct job_spec {
  job_settings job;
  model_settings model;
  baseline_settings baseline = baseline_defaults();  // the ID model (SASRec-style) the paper beats
  stage_settings stage1;                          // end to end: Item LLM + User LLM
  cache_settings cache;
  stage_settings stage2 = stage2_defaults();  // User LLM only, item embeddings from the cache
  eval_settings eval;
  train_settings train;
  placement_settings placement;
  monitor_settings monitor;

  // Every section by its table name.
  template <class V>
  void visit(V& v) {
    v.section("job", job);
    v.section("model", model);
    v.section("baseline", baseline);
    v.section("stage1", stage1);
    v.section("cache", cache);
    v.section("stage2", stage2);
    v.section("eval", eval);
    v.section("train", train);
    v.section("placement", placement);
    v.section("monitor", monitor);
  }
  // The schedule of a trained model by its name ("baseline", "stage1", "stage2"; "frozen" and "scratch" train on
  // stage1's).
  const stage_settings& schedule(std::string_view name) const {
    if (name == "baseline") return baseline;
    if (name == "stage2") return stage2;
    return stage1;
  }
};

}  // namespace hllm::spec
