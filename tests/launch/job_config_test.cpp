#include <gtest/gtest.h>

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
