#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "launch/default_job.hpp"
#include "launch/job_config.hpp"
#include "storage/error.hpp"

using hllm::launch::job_config;

namespace {

const char* sample = R"(
[job]
seed = 2020
stages = ["stage1", "stage2"]

[train]
lr = 0.001
batch_size = 64
bf16 = false
)";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const hllm::error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(job_config, reads_toml_into_typed_values) {
  auto c = job_config::from_toml(sample, "job.toml");
  EXPECT_EQ(c.get<int64_t>("job.seed"), 2020);
  EXPECT_DOUBLE_EQ(c.get<double>("train.lr"), 0.001);
  EXPECT_EQ(c.get<std::vector<std::string>>("job.stages"), (std::vector<std::string>{"stage1", "stage2"}));
  EXPECT_FALSE(c.get<bool>("train.bf16"));
}

TEST(job_config, overrides_parse_values_as_toml_and_keep_types) {
  auto c = job_config::from_toml(sample, "job.toml");
  c.set("train.lr=5e-4");
  c.set("train.bf16=true");
  c.set("train.batch_size=32");
  c.set("job.stages=[\"stage2\"]");
  EXPECT_DOUBLE_EQ(c.get<double>("train.lr"), 5e-4);
  EXPECT_TRUE(c.get<bool>("train.bf16"));
  EXPECT_EQ(c.get<int64_t>("train.batch_size"), 32);
  EXPECT_EQ(c.get<std::vector<std::string>>("job.stages"), (std::vector<std::string>{"stage2"}));
  c.set("train.lr=1");  // an integer where a float is expected stays a float
  EXPECT_TRUE(c.at("train.lr").is_number_float());
}

TEST(job_config, typos_wrong_types_and_bad_syntax_are_errors_naming_the_key) {
  auto c = job_config::from_toml(sample, "job.toml");
  EXPECT_NE(error_of([&] { c.set("train.lrr=1e-3"); }).find("unknown key 'train.lrr'"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("trian.lr=1e-3"); }).find("no config table 'trian'"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("train.bf16=12"); }).find("'train.bf16' is a boolean"), std::string::npos);
  EXPECT_NE(error_of([&] { c.set("train.lr"); }).find("expected key.path=value"), std::string::npos);
  EXPECT_NE(error_of([&] { c.get<int64_t>("train.missing"); }).find("missing key 'train.missing'"),
            std::string::npos);
  std::string e = error_of([] { job_config::from_toml("[train]\nlr = = 3\n", "bad.toml"); });
  EXPECT_NE(e.find("bad.toml:2"), std::string::npos) << e;
}

TEST(job_config, hash_changes_with_a_value_and_ignores_key_order) {
  auto a = job_config::from_toml(sample, "a");
  auto b = job_config::from_toml("[train]\nbf16 = false\nbatch_size = 64\nlr = 0.001\n[job]\nstages = [\"stage1\", "
                                 "\"stage2\"]\nseed = 2020\n",
                                 "b");
  EXPECT_EQ(a.hash(), b.hash());
  b.set("job.seed=2021");
  EXPECT_NE(a.hash(), b.hash());
}

TEST(job_config, hash_ignores_the_operational_keys_only) {
  auto base = job_config::load("", {}, hllm::launch::default_job_toml);
  for (const char* op : {"placement.workers=3", "placement.loaders=5", "placement.spread=true", "train.window=9",
                         "train.request_timeout_ms=1", "train.checkpoint_every_steps=7", "job.stages=[\"stage1\"]",
                         "cache.unit_timeout_s=1", "monitor.port=8080", "monitor.token=\"t\"",
                         "monitor.curve_points=5"}) {
    auto c = job_config::load("", {op}, hllm::launch::default_job_toml);
    EXPECT_EQ(c.hash(), base.hash()) << op;
  }
  for (const char* result : {"stage1.lr=0.5", "model.hidden_size=32", "job.threads=1", "eval.max_history=3",
                             "stage2.epochs=1", "baseline.negatives=3"}) {
    auto c = job_config::load("", {result}, hllm::launch::default_job_toml);
    EXPECT_NE(c.hash(), base.hash()) << result;
  }
}

TEST(job_config, toml_output_reads_back_to_the_same_tree) {
  auto a = job_config::from_toml(sample, "a");
  auto b = job_config::from_toml(a.to_toml(), "round-trip");
  EXPECT_EQ(a.tree(), b.tree());
}

TEST(job_config, a_later_key_at_its_neutral_default_leaves_the_hash_of_older_jobs) {
  // A job.toml written before model.time_buckets existed resumes under the new default (0: off) ...
  auto now = hllm::launch::job_config::load("", {}, hllm::launch::default_job_toml);
  auto before = now;
  before.tree()["model"].erase("time_buckets");
  EXPECT_EQ(now.hash(), before.hash());
  // ... and turning the feature on is another job.
  auto on = hllm::launch::job_config::load("", {"model.time_buckets=16"}, hllm::launch::default_job_toml);
  EXPECT_NE(on.hash(), now.hash());
}

namespace {

std::string load_error(std::vector<std::string> sets) {
  return error_of([&] { job_config::load("", sets, hllm::launch::default_job_toml); });
}

}  // namespace

TEST(job_config, a_zero_batch_size_is_one_line_naming_key_value_range_and_origin) {
  // Before: accepted, and the job died of SIGFPE (exit 136) dividing by it.
  EXPECT_EQ(load_error({"stage1.batch_size=0"}),
            "config: stage1.batch_size = 0 is out of range (allowed: an integer 1..1048576; from --set "
            "stage1.batch_size=0)");
  EXPECT_EQ(load_error({"stage2.lr=0"}),
            "config: stage2.lr = 0.0 is out of range (allowed: a number > 0 and <= 10; from --set stage2.lr=0)");
  EXPECT_EQ(load_error({"baseline.seq_len=1.5"}),
            "config: baseline.seq_len = 1.5 is not an integer (allowed: an integer 1..1048576; from --set "
            "baseline.seq_len=1.5)");
  EXPECT_EQ(load_error({"monitor.port=70000"}),
            "config: monitor.port = 70000 is out of range (allowed: an integer -1..65535; from --set "
            "monitor.port=70000)");
  EXPECT_EQ(load_error({"placement.encoder_ranks=[0, -2]"}),
            "config: placement.encoder_ranks[1] = -2 is out of range (allowed: an integer 0..65535; from --set "
            "placement.encoder_ranks=[0, -2])");
}

TEST(job_config, every_range_has_both_ends_checked) {
  // One key of each kind at its first bad value on each side; every good edge loads.
  const std::vector<std::string> bad{
      "job.threads=-1",          "model.hidden_size=0",        "model.item_layers=0",       "model.heads=0",
      "model.kv_heads=0",        "model.rms_norm_eps=0",       "model.rope_theta=-1",       "model.time_buckets=-1",
      "model.false_negative_cosine=1.5", "model.cls_lambda=-0.1", "baseline.epochs=0",    "stage1.negatives=0",
      "stage2.seq_len=0",        "stage2.warmup_share=1.01",   "stage1.weight_decay=-1",    "stage1.clip_norm=-1",
      "stage1.lr=11",            "cache.unit_items=0",         "cache.persist_every_units=0", "cache.unit_timeout_s=0",
      "eval.max_history=0",      "train.window=0",             "train.request_timeout_ms=0", "train.collective_timeout_s=0",
      "train.checkpoint_every_steps=-1", "train.keep_checkpoints=0", "placement.loaders=0",  "placement.samplers=0",
      "placement.encoders=0",    "placement.cache_shards=0",   "placement.workers=-1",      "placement.heartbeat_ms=0",
      "placement.heartbeat_timeout_ms=0", "placement.start_timeout_ms=0", "placement.max_respawns=-1",
      "monitor.port=-2",         "monitor.curve_points=0",     "monitor.dead_kept=-1",      "stage1.batch_size=1048577",
      "model.hidden_size=65537", "job.seed=-1"};
  for (const auto& b : bad) {
    const std::string key = b.substr(0, b.find('='));
    const std::string msg = load_error({b});
    EXPECT_EQ(msg.rfind("config: " + key + " = ", 0), 0u) << b << ": " << msg;
    EXPECT_NE(msg.find("(allowed: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("from --set " + b + ")"), std::string::npos) << msg;
  }
  for (const char* good : {"stage1.batch_size=1", "stage1.batch_size=1048576", "monitor.port=-1",
                           "monitor.port=65535", "train.checkpoint_every_steps=0", "placement.workers=0",
                           "stage1.lr=10", "stage1.warmup_share=0", "model.false_negative_cosine=1",
                           "baseline.clip_norm=0", "job.threads=0"}) {
    EXPECT_EQ(load_error({good}), "") << good;
  }
}

TEST(job_config, heads_must_divide_and_the_error_names_the_key_that_was_set) {
  EXPECT_EQ(load_error({"model.heads=3"}),
            "config: model.heads = 3 does not divide model.hidden_size = 64 (allowed: a divisor of it; from --set "
            "model.heads=3)");
  EXPECT_EQ(load_error({"model.hidden_size=30"}),
            "config: model.hidden_size = 30 is not a multiple of model.heads = 4 (allowed: a multiple of it; from "
            "--set model.hidden_size=30)");
  EXPECT_EQ(load_error({"model.kv_heads=3"}),
            "config: model.kv_heads = 3 does not divide model.heads = 4 (allowed: a divisor of it; from --set "
            "model.kv_heads=3)");
  EXPECT_EQ(load_error({"model.heads=2", "model.kv_heads=2", "model.hidden_size=32"}), "");
}

TEST(job_config, a_bad_value_in_a_file_names_the_file) {
  const std::string path = ::testing::TempDir() + "/job_config_range_test.toml";
  std::string text = hllm::launch::default_job_toml;
  const std::string from = "[stage2]               # User LLM only, from the stage-1 weights, item embeddings from the "
                           "cache\nepochs = 3";
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, from.size(), from.substr(0, from.size() - 1) + "0");
  {
    std::ofstream f(path);
    f << text;
  }
  EXPECT_EQ(error_of([&] { job_config::load(path, {}, ""); }),
            "config: stage2.epochs = 0 is out of range (allowed: an integer 1..1000000; from " + path + ")");
  // A --set that repairs it is what counts.
  EXPECT_EQ(error_of([&] { job_config::load(path, {"stage2.epochs=2"}, ""); }), "");
  std::remove(path.c_str());
}

TEST(job_config, train_device_is_auto_cpu_cuda_or_cuda_n_and_never_changes_the_hash) {
  const auto& dflt = hllm::launch::default_job_toml;
  const auto base = job_config::load("", {}, dflt);
  EXPECT_EQ(base.get<std::string>("train.device"), "auto");
  for (const char* ok : {"auto", "cpu", "cuda", "cuda:0", "cuda:7"}) {
    const std::string set = std::string("train.device=\"") + ok + "\"";
    EXPECT_EQ(error_of([&] { job_config::load("", {set}, dflt); }), "") << ok;
    // Operational: a checkpoint written on one device kind resumes on another (issue 18).
    EXPECT_EQ(job_config::load("", {set}, dflt).hash(), base.hash()) << ok;
  }
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "CUDA", "cuda:-1", ""}) {
    const std::string set = std::string("train.device=\"") + bad + "\"";
    EXPECT_NE(error_of([&] { job_config::load("", {set}, dflt); }).find("train.device"), std::string::npos) << bad;
  }
  EXPECT_EQ(error_of([&] { job_config::load("", {"train.device=\"gpu\""}, dflt); }),
            "config: train.device = \"gpu\" is not allowed (allowed: \"auto\", \"cpu\", \"cuda\" or \"cuda:N\"; from "
            "--set train.device=\"gpu\")");
}

// ---- the typed job spec (issue 21) ----

TEST(job_spec, the_structs_defaults_are_default_job_toml) {
  // default_job.toml is the user's reference; actors/job_spec.hpp declares the same defaults beside each field.
  auto file = job_config::load("", {}, hllm::launch::default_job_toml);
  auto declared = job_config::tree_of({});
  declared["monitor"].erase("token_set");  // what JOB/job.toml records in place of the token, not a user key
  EXPECT_EQ(declared, file.tree()) << "default_job.toml and actors/job_spec.hpp disagree";
  auto s = file.spec();
  EXPECT_EQ(s.baseline.epochs, 12);
  EXPECT_EQ(s.stage2.seq_len, 20u);
  EXPECT_EQ(s.model.pooling, "item");
}

namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST(job_spec, a_file_overrides_the_defaults_key_by_key) {
  // Before: a file holding only this failed with "[json.exception.out_of_range.403] key 'job' not found".
  const auto path = write_temp("partial_job.toml", "[stage1]\nepochs = 1\n[model]\npooling = \"mean\"\n");
  auto c = job_config::load(path, {"stage2.lr=0.002"}, hllm::launch::default_job_toml);
  auto s = c.spec();
  EXPECT_EQ(s.stage1.epochs, 1);
  EXPECT_EQ(s.model.pooling, "mean");
  EXPECT_DOUBLE_EQ(s.stage2.lr, 0.002);
  EXPECT_EQ(s.stage1.batch_size, 64u);  // from the defaults
  EXPECT_EQ(s.job.stages, job_config::load("", {}, hllm::launch::default_job_toml).spec().job.stages);
  // The same job as the full file that says the same.
  auto full = job_config::load("", {"stage1.epochs=1", "model.pooling=\"mean\"", "stage2.lr=0.002"},
                               hllm::launch::default_job_toml);
  EXPECT_EQ(c.hash(), full.hash());
  std::remove(path.c_str());
}

TEST(job_spec, typos_never_pass) {
  // Before: each of these ran (a bogus stage was ignored, pooling fell back to the default, `epoch` was ignored).
  EXPECT_EQ(load_error({"job.stages=[\"popularity\",\"bogus\"]"}),
            "config: job.stages[1] = \"bogus\" is not allowed (allowed: \"popularity\", \"text\", \"baseline\", "
            "\"stage1\", \"scratch\", \"frozen\", \"cache\", \"stage2\" or \"test\"; from --set "
            "job.stages=[\"popularity\",\"bogus\"])");
  EXPECT_EQ(load_error({"model.pooling=avg"}),
            "config: model.pooling = \"avg\" is not allowed (allowed: \"item\" or \"mean\"; from --set model.pooling=avg)");
  EXPECT_EQ(load_error({"stage1.epochs=1.5"}),
            "config: stage1.epochs = 1.5 is not an integer (allowed: an integer 1..1000000; from --set stage1.epochs=1.5)");
  EXPECT_NE(load_error({"job.stages=[\"stage1\",\"stage1\"]"}).find("is listed twice"), std::string::npos);
  EXPECT_NE(load_error({"placement.spread_over=\"racks\""}).find("placement.spread_over"), std::string::npos);
  EXPECT_NE(load_error({"model.late_fusion=\"yes\""}).find("late_fusion"), std::string::npos);
  const auto path = write_temp("typo_job.toml", "[stage1]\nepoch = 2\n");
  EXPECT_EQ(error_of([&] { job_config::load(path, {}, hllm::launch::default_job_toml); }),
            "config: unknown key 'stage1.epoch' (from " + path +
                "; every key is listed in launch/default_job.toml, `hllm train --print-config`)");
  const auto table = write_temp("typo_table.toml", "[stage3]\nepochs = 2\n");
  EXPECT_NE(error_of([&] { job_config::load(table, {}, hllm::launch::default_job_toml); }).find("unknown key 'stage3'"),
            std::string::npos);
  const auto wrong = write_temp("wrong_type.toml", "[stage1]\nbf16 = 1\n");
  EXPECT_EQ(error_of([&] { job_config::load(wrong, {}, hllm::launch::default_job_toml); }),
            "config: stage1.bf16 = 1 is not a boolean (allowed: true or false; from " + wrong + ")");
  for (const auto& p : {path, table, wrong}) std::remove(p.c_str());
}

TEST(job_spec, a_recorded_job_toml_reads_back_to_the_same_spec) {
  auto c = job_config::load("", {"stage1.epochs=2", "placement.encoder_ranks=[0, 1]", "train.device=\"cpu\""},
                            hllm::launch::default_job_toml);
  auto back = job_config::from_toml(c.to_toml(), "job.toml");
  EXPECT_EQ(job_config::tree_of(back.spec()), job_config::tree_of(c.spec()));
  EXPECT_EQ(back.spec().placement.encoder_ranks, (std::vector<int64_t>{0, 1}));
}

TEST(job_spec, every_profile_in_launch_profiles_loads_and_changes_only_what_it_names) {
  int profiles = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(HLLM_SOURCE_DIR) + "/launch/profiles")) {
    if (e.path().extension() != ".toml") continue;
    ++profiles;
    const std::string path = e.path().string();
    std::string problem = error_of([&] { job_config::load(path, {}, hllm::launch::default_job_toml).spec(); });
    EXPECT_EQ(problem, "") << path;
    // A profile holds only some keys: everything else is the default's.
    auto c = job_config::load(path, {}, hllm::launch::default_job_toml);
    EXPECT_EQ(c.spec().model.hidden_size, job_config::load("", {}, hllm::launch::default_job_toml).spec().model.hidden_size);
  }
  EXPECT_GE(profiles, 1);
  auto small = job_config::load(std::string(HLLM_SOURCE_DIR) + "/launch/profiles/small-log.toml", {},
                                hllm::launch::default_job_toml).spec();
  EXPECT_GT(small.baseline.patience, 0);
  EXPECT_GT(small.stage1.max_steps, 0);
}
