// The single-process actor job on the tiny prepared dataset (ctest fixture prepared_tiny).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "../storage/test_util.hpp"
#include "actors/job.hpp"
#include "launch/default_job.hpp"
#include "launch/job_config.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/file_io.hpp"

using namespace hllm;
using nlohmann::json;

namespace {

std::string tiny() {
  const char* p = std::getenv("HLLM_TINY_DATA");
  return p == nullptr ? "" : p;
}

launch::job_config tiny_config(std::vector<std::string> extra = {}) {
  std::vector<std::string> sets{"baseline.epochs=1", "baseline.batch_size=32", "baseline.seq_len=6",
                                "baseline.negatives=64", "stage1.epochs=1",     "stage1.batch_size=32",
                                "stage1.seq_len=6",     "stage1.negatives=64",  "stage2.epochs=1",
                                "stage2.batch_size=32", "stage2.seq_len=8",     "stage2.negatives=64",
                                "model.hidden_size=32", "model.intermediate_size=64", "model.item_layers=1",
                                "model.user_layers=1",  "cache.unit_items=50"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return launch::job_config::load("", sets, launch::default_job_toml);
}

int run(const launch::job_config& c, const std::string& out, const std::string& resume = "never") {
  job_options o;
  o.resume = resume;
  o.spec = c.spec();
  o.config_hash = c.hash();
  o.effective_hash = c.effective_hash();
  o.data_dir = tiny();
  o.out_dir = out;
  return run_job(o);
}

}  // namespace

TEST(job, tiny_job_runs_every_stage_and_writes_the_results_table) {
  test::temp_dir tmp;
  ASSERT_EQ(run(tiny_config(), tmp / "job"), 0);
  auto results = json::parse(test::read_bytes(tmp / "job/results.json"));
  std::set<std::string> seen;
  for (const auto& row : results.at("rows")) {
    seen.insert(row.at("model").get<std::string>() + "/" + row.at("split").get<std::string>());
    if (row.at("users").get<int64_t>() > 0) {
      for (const char* k : {"R@10", "R@50", "R@200", "N@10", "N@50", "N@200"}) {
        double v = row.at(k).get<double>();
        EXPECT_TRUE(std::isfinite(v) && v >= 0 && v <= 100) << row.dump();
      }
      EXPECT_LE(row.at("N@200").get<double>(), row.at("R@200").get<double>());
    }
  }
  for (const char* m : {"popularity", "id-baseline", "hllm-stage1", "hllm-stage2"}) {
    EXPECT_EQ(seen.count(std::string(m) + "/all"), 1u) << m;
    EXPECT_EQ(seen.count(std::string(m) + "/cold"), 1u) << m;
  }
  std::string md = test::read_bytes(tmp / "job/results.md");
  EXPECT_EQ(md.rfind("| model | split | R@10 | R@50 | R@200 | N@10 | N@50 | N@200 |", 0), 0u) << md;
  // A metrics line per step and the cache ledger with every unit.
  std::ifstream metrics(tmp / "job/metrics.jsonl");
  int steps = 0;
  for (std::string line; std::getline(metrics, line);) steps += json::parse(line).value("event", "") == "step";
  EXPECT_GT(steps, 30);
  auto ledger = json::parse(test::read_bytes(tmp / "job/cache/ledger.json"));
  auto ds = storage::dataset::open(tiny());
  EXPECT_EQ(static_cast<int64_t>(ledger.at("done").size()), (ds.num_items() + 49) / 50);
  // The first incarnation of the job directory is epoch 0; a second start (it resumes the finished job and only
  // evaluates) is epoch 1, and the status file says under which epoch the actors answered.
  EXPECT_EQ(test::read_bytes(tmp / "job/job_epoch"), "0\n");
  EXPECT_EQ(json::parse(test::read_bytes(tmp / "job/status.json")).at("job_epoch").get<int>(), 0);
  ASSERT_EQ(run(tiny_config(), tmp / "job", "auto"), 0);
  EXPECT_EQ(test::read_bytes(tmp / "job/job_epoch"), "1\n");
  auto status = json::parse(test::read_bytes(tmp / "job/status.json"));
  EXPECT_EQ(status.at("job_epoch").get<int>(), 1);
  EXPECT_EQ(status.at("job_id").get<std::string>(), storage::hash_hex(tiny_config().hash()));
  EXPECT_EQ(test::read_bytes(tmp / "job/results.md"), md) << "the resumed job evaluated the same checkpoints";
}

TEST(job, parameters_are_identical_whatever_the_number_and_order_of_loaders_samplers_and_shards) {
  test::temp_dir tmp;
  const std::vector<std::string> plan{"job.stages=[\"stage1\", \"cache\", \"stage2\"]"};
  auto a = plan, b = plan;
  for (auto s : {"placement.loaders=1", "placement.samplers=1", "placement.cache_shards=1", "train.window=1"}) {
    a.push_back(s);
  }
  for (auto s : {"placement.loaders=3", "placement.samplers=2", "placement.cache_shards=3", "train.window=5"}) {
    b.push_back(s);
  }
  ASSERT_EQ(run(tiny_config(a), tmp / "a"), 0);
  ASSERT_EQ(run(tiny_config(b), tmp / "b"), 0);
  for (const char* f : {"stage1/best/model.safetensors", "stage1/best/optimizer.safetensors",
                        "stage2/best/model.safetensors"}) {
    std::string x = test::read_bytes(tmp / ("a/" + std::string(f))), y = test::read_bytes(tmp / ("b/" + std::string(f)));
    ASSERT_FALSE(x.empty()) << f;
    EXPECT_TRUE(x == y) << f << " differs between placements";
  }
}

TEST(job, stage2_model_has_no_item_llm_and_cache_evaluation_matches_fresh_encoding) {
  test::temp_dir tmp;
  ASSERT_EQ(run(tiny_config({"job.stages=[\"stage1\", \"cache\", \"stage2\"]"}), tmp / "job"), 0);
  auto ds = storage::dataset::open(tiny());
  auto texts = model::item_texts_of(ds);
  auto fresh = model::trainer::load(tmp / "job/stage1/best", texts);
  auto matrix = fresh.item_matrix();
  // Stage 2 trains without an Item LLM: its checkpoint holds no Item-LLM tensor, so it cannot run one.
  auto s2 = model::trainer::load(tmp / "job/stage2/best", texts, span<const float>(matrix.data(), matrix.size()));
  int item_llm_tensors = 0;
  for (const auto& blob : fresh.state_blobs()) item_llm_tensors += blob.name.find("model.item_llm.") == 0;
  EXPECT_GT(item_llm_tensors, 0);  // the check below would be empty if the naming changed
  for (const auto& blob : s2.state_blobs()) EXPECT_NE(blob.name.find("model.item_llm."), 0u) << blob.name;
  // The stage-1 model ranks the same users the same way from its fresh Item LLM as from the cache rows.
  auto cfg = fresh.model_config();
  cfg.source = model::item_source::cache;
  model::trainer cached(cfg, fresh.training_config(), texts, span<const float>(matrix.data(), matrix.size()));
  cached.load_weights_from(tmp / "job/stage1/best");
  auto e = model::make_eval_set(model::interactions_of(ds), model::split::test, 50);
  auto r1 = fresh.ranks(e), r2 = cached.ranks(e);
  ASSERT_EQ(r1.size(), r2.size());
  std::size_t same = 0;
  for (std::size_t i = 0; i < r1.size(); ++i) same += r1[i] == r2[i];
  EXPECT_GE(static_cast<double>(same), 0.99 * static_cast<double>(r1.size()));
}

namespace {

int run_cli(const std::string& args) {
  std::string cmd = std::string(HLLM_BIN_DIR) + "/hllm train --data " + tiny() + " " + args + " > /dev/null 2>&1";
  return std::system(cmd.c_str());
}

}  // namespace

TEST(job, two_trainer_processes_give_identical_parameters_wherever_the_actors_live) {
  test::temp_dir tmp;
  std::string common =
      " --world 2 --set 'job.stages=[\"stage1\", \"cache\", \"stage2\", \"test\"]' --set stage1.epochs=1"
      " --set stage1.batch_size=16 --set stage1.seq_len=6 --set stage2.epochs=1 --set stage2.batch_size=16"
      " --set model.hidden_size=32 --set model.intermediate_size=64 --set model.item_layers=1 --set model.user_layers=1"
      " --set cache.unit_items=50";
  ASSERT_EQ(run_cli("--out " + tmp / "rank0" + common + " --set placement.spread=false"), 0);
  ASSERT_EQ(run_cli("--out " + tmp / "spread" + common +
                    " --set placement.spread=true --set placement.loaders=3 --set placement.cache_shards=3"
                    " --set placement.encoders=2"),
            0);
  for (const char* f : {"stage1/best/model.safetensors", "stage2/best/model.safetensors"}) {
    std::string x = test::read_bytes(tmp / ("rank0/" + std::string(f)));
    ASSERT_FALSE(x.empty()) << f;
    EXPECT_TRUE(x == test::read_bytes(tmp / ("spread/" + std::string(f)))) << f << " differs";
  }
  EXPECT_TRUE(std::filesystem::exists(tmp / "spread/results.json"));
  // Rank 1 logged its own steps beside rank 0's.
  EXPECT_TRUE(std::filesystem::exists(tmp / "spread/metrics.rank-1.jsonl"));
}

// Issue 19: the opt-in rows (text-only, the frozen-Item-LLM ablation) join the same table, and a trained model stops
// by patience, saying so in STAGE/training.json and in results.json.
TEST(job, baselines_and_ablation_rows_join_the_table_and_early_stopping_is_recorded) {
  test::temp_dir tmp;
  auto c = tiny_config({"job.stages=[\"popularity\",\"text\",\"baseline\",\"stage1\",\"frozen\",\"test\"]",
                        "baseline.epochs=4", "baseline.patience=1", "baseline.eval_every_steps=2",
                        "baseline.dropout=0.2", "baseline.position_embeddings=16"});
  ASSERT_EQ(run(c, tmp / "job"), 0);
  auto results = json::parse(test::read_bytes(tmp / "job/results.json"));
  std::set<std::string> seen;
  for (const auto& row : results.at("rows")) seen.insert(row.at("model").get<std::string>());
  for (const char* m : {"popularity", "text-only", "id-baseline", "hllm-stage1", "hllm-frozen"}) {
    EXPECT_EQ(seen.count(m), 1u) << m;
  }
  EXPECT_EQ(seen.count("hllm-stage2"), 0u);
  auto base = json::parse(test::read_bytes(tmp / "job/baseline/training.json"));
  // 4 epochs of the tiny data are far more than 2 validations without improvement allow (patience 1).
  const auto steps = base.at("steps").get<int64_t>();
  EXPECT_EQ(base.at("stopped_by").get<std::string>(), "patience") << base.dump();
  EXPECT_LT(base.at("best_step").get<int64_t>(), steps);
  EXPECT_EQ(results.at("training").at("id-baseline").at("steps").get<int64_t>(), steps);
  auto s1 = json::parse(test::read_bytes(tmp / "job/stage1/training.json"));
  EXPECT_EQ(s1.at("stopped_by").get<std::string>(), "epochs");
  EXPECT_TRUE(std::filesystem::exists(tmp / "job/frozen/best/model.safetensors"));
}
