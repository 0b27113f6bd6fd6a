// Issue 19, the paper's conclusion 1: a pretrained Item LLM (model.item_llm_from, a Hugging Face Llama checkpoint)
// against a random one (the `scratch` stage), on the tiny prepared dataset (ctest fixture prepared_tiny).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>

#include "../model/test_support.hpp"
#include "../storage/test_util.hpp"
#include "job_test_util.hpp"
#include "actors/job.hpp"
#include "launch/default_job.hpp"
#include "launch/job_config.hpp"
#include "model/llama.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/error.hpp"

using namespace hllm;
using nlohmann::json;
using hllm::test::tiny_dataset;

namespace {

// A small job on the tiny data: hidden 32, one epoch of stage 1 (and of the stages on its schedule).
launch::job_config small_job(const std::vector<std::string>& extra) {
  std::vector<std::string> sets{"model.hidden_size=32", "model.intermediate_size=64", "model.item_layers=2",
                                "model.user_layers=1"};
  for (const char* kv : {"epochs=1", "batch_size=32", "seq_len=6", "negatives=64"}) {
    sets.push_back(std::string("stage1.") + kv);
  }
  sets.insert(sets.end(), extra.begin(), extra.end());
  return launch::job_config::load("", sets, launch::default_job_toml);
}

void run_small_job(const launch::job_config& c, const std::string& out, const std::string& resume = "never") {
  job_options o;
  o.spec = c.spec();
  o.config_hash = c.hash();
  o.effective_hash = c.effective_hash();
  o.data_dir = tiny_dataset();
  o.out_dir = out;
  o.resume = resume;
  ASSERT_EQ(run_job(o), 0);
}

// A Hugging Face Llama checkpoint of another shape than the job's model keys (one layer, grouped-query attention,
// its own width): the Item LLM must take its shape from here.
model::llama_config checkpoint_shape(int64_t vocab) {
  auto c = model::testing::tiny_llama(vocab);  // 4 heads, 2 KV heads
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 1;
  return c;
}

std::string write_checkpoint(const std::string& dir, const model::llama_config& c) {
  model::llama_model m(c);
  m->init_random(4242);
  model::save_hf_llama(m, dir);
  return dir;
}

std::string error_of(const std::function<void()>& f) {
  std::string what = "(no error)";
  try { f(); } catch (const error& e) { what = e.what(); }
  return what;
}

// Every Item-LLM tensor of `blobs` ("<prefix>model.X", fp32) compared with the checkpoint's "model.X": how many
// there are and how many are bit-identical.
std::pair<int, int> item_llm_tensors_like_checkpoint(const std::vector<model::tensor_blob>& blobs,
                                                     const std::string& prefix, const std::string& hf_dir) {
  auto hf = model::safetensors_archive::open_dir(hf_dir);
  int n = 0, same = 0;
  for (const auto& b : blobs) {
    if (b.name.rfind(prefix + "model.", 0) != 0) continue;
    const auto& v = hf.at(b.name.substr(prefix.size()));
    ++n;
    same += v.bytes == b.bytes && std::memcmp(v.data, b.data, b.bytes) == 0;
  }
  return {n, same};
}

class pretrained_init : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tiny_dataset().empty()) GTEST_SKIP() << "HLLM_TINY_DATA is not set (the ctest fixture prepared_tiny sets it)";
    vocab = storage::dataset::open(tiny_dataset()).info().vocab_size;
    hf = write_checkpoint(tmp / "hf", checkpoint_shape(vocab));
  }
  test::temp_dir tmp;
  int64_t vocab = 0;
  std::string hf;
};

}  // namespace

TEST_F(pretrained_init, a_fresh_stage1_trainer_starts_from_the_checkpoint_and_a_random_one_does_not) {
  auto spec = small_job({"model.item_llm_from=\"" + hf + "\""}).spec();
  auto data = storage::dataset::open(tiny_dataset());
  auto cfg = job_model_config(spec, data, model::item_source::text, tiny_dataset());
  // The shape is the checkpoint's, not model.item_layers / intermediate_size / kv_heads.
  EXPECT_EQ(cfg.item_llm.num_hidden_layers, 1);
  EXPECT_EQ(cfg.item_llm.intermediate_size, 48);
  EXPECT_EQ(cfg.item_llm.num_key_value_heads, 2);
  EXPECT_EQ(cfg.user_llm.intermediate_size, 64);
  auto texts = model::item_texts_of(data);
  model::train_config tc;
  model::trainer pretrained(cfg, tc, texts), random(cfg, tc, texts);
  pretrained.load_item_llm(hf);
  auto [n, same] = item_llm_tensors_like_checkpoint(pretrained.state_blobs(), "model.item_llm.", hf);
  EXPECT_GT(n, 5);
  EXPECT_EQ(same, n) << "the loaded Item LLM is not the checkpoint's";
  auto [rn, rsame] = item_llm_tensors_like_checkpoint(random.state_blobs(), "model.item_llm.", hf);
  EXPECT_EQ(rn, n);
  EXPECT_LT(rsame, rn / 2) << "a random Item LLM should not equal the checkpoint";
  // Everything the checkpoint does not hold is initialised as without it (the [ITEM] vector, the User LLM).
  auto a = pretrained.state_blobs(), b = random.state_blobs();
  ASSERT_EQ(a.size(), b.size());
  int others = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].name.rfind("model.item_llm.model.", 0) == 0) continue;
    ++others;
    EXPECT_EQ(std::memcmp(a[i].data, b[i].data, a[i].bytes), 0) << a[i].name;
  }
  EXPECT_GT(others, 5);
  // A checkpoint of another shape than the model's Item LLM is refused, naming the directory.
  auto other = checkpoint_shape(vocab);
  other.num_hidden_layers = 2;
  write_checkpoint(tmp / "hf2", other);
  EXPECT_NE(error_of([&] { random.load_item_llm(tmp / "hf2"); }).find(tmp / "hf2/config.json describes"),
            std::string::npos);
}

TEST_F(pretrained_init, stage1_and_scratch_are_two_rows_of_one_table_and_resume_like_the_others) {
  // Five steps of each (the cap): enough to tell the models apart, short enough for three trained stages.
  auto c = small_job({"model.item_llm_from=\"" + hf + "\"", "job.stages=[\"stage1\",\"scratch\",\"frozen\",\"test\"]",
                      "stage1.max_steps=5"});
  run_small_job(c, tmp / "job");
  auto results = json::parse(test::read_bytes(tmp / "job/results.json"));
  std::vector<std::string> order;
  for (const auto& row : results.at("rows")) {
    if (row.at("split") != "all") continue;
    order.push_back(row.at("model").get<std::string>());
    EXPECT_GT(row.at("users").get<int64_t>(), 0) << row.dump();
    EXPECT_TRUE(row.contains("R@10")) << row.dump();
  }
  EXPECT_EQ(order, (std::vector<std::string>{"hllm-stage1", "hllm-stage1-random", "hllm-frozen"}));
  EXPECT_EQ(results.at("rows")[0].at("item_llm"), "pretrained Item LLM: hf");
  EXPECT_EQ(results.at("rows")[2].at("item_llm"), "random Item LLM");
  EXPECT_EQ(results.at("training").at("hllm-stage1-random").at("stopped_by"), "cap");
  const std::string md = test::read_bytes(tmp / "job/results.md");
  EXPECT_NE(md.find("| hllm-stage1 (pretrained Item LLM: hf) | all |"), std::string::npos) << md;
  EXPECT_NE(md.find("| hllm-stage1-random (random Item LLM) | all |"), std::string::npos) << md;
  EXPECT_LT(md.find("hllm-stage1 ("), md.find("hllm-stage1-random")) << md;
  // Through the job: the frozen stage keeps its Item LLM as it started, which is the checkpoint's ...
  auto texts = model::item_texts_of(storage::dataset::open(tiny_dataset()));
  auto frozen = model::trainer::load(tmp / "job/frozen/best", texts);
  auto [n, same] = item_llm_tensors_like_checkpoint(frozen.state_blobs(), "model.item_llm.", hf);
  EXPECT_GT(n, 5);
  EXPECT_EQ(same, n) << "the job did not start the Item LLM from model.item_llm_from";
  EXPECT_EQ(frozen.model_config().item_llm.num_hidden_layers, 1);
  // ... and the two stage-1 models trained from different Item LLMs on the same schedule.
  const std::string s1 = test::read_bytes(tmp / "job/stage1/best/model.safetensors");
  ASSERT_FALSE(s1.empty());
  EXPECT_NE(s1, test::read_bytes(tmp / "job/scratch/best/model.safetensors"));
  // A second start resumes the finished job: nothing trains again, the table is the same.
  run_small_job(c, tmp / "job", "auto");
  EXPECT_EQ(test::read_bytes(tmp / "job/results.md"), md);
}

TEST_F(pretrained_init, a_checkpoint_the_job_cannot_use_is_one_line_before_anything_trains) {
  auto vocab_off = checkpoint_shape(vocab + 3);
  write_checkpoint(tmp / "other-vocab", vocab_off);
  auto c = small_job({"model.item_llm_from=\"" + tmp / "other-vocab" + "\"", "job.stages=[\"stage1\"]"});
  std::string msg = error_of([&] { run_small_job(c, tmp / "a"); });
  EXPECT_EQ(msg, "config: model.item_llm_from = \"" + tmp / "other-vocab" + "\": the checkpoint's vocabulary has " +
                     std::to_string(vocab + 3) + " tokens but dataset \"" + tiny_dataset() + "\" was tokenized with " +
                     std::to_string(vocab) + " (prepare it with the checkpoint's tokenizer: hllm prepare --tokenizer " +
                     tmp / "other-vocab" + "/tokenizer.model)");
  EXPECT_FALSE(std::filesystem::exists(tmp / "a/stage1"));
  // hidden_size is shared with the User LLM: the checkpoint's 32 against model.hidden_size = 64.
  c = small_job({"model.item_llm_from=\"" + hf + "\"", "model.hidden_size=64", "job.stages=[\"stage1\"]"});
  msg = error_of([&] { run_small_job(c, tmp / "b"); });
  EXPECT_EQ(msg, "config: model.item_llm_from = \"" + hf + "\": the checkpoint's hidden_size is 32 but "
                 "model.hidden_size is 64 (the Item LLM's embeddings feed the User LLM directly: set "
                 "model.hidden_size = 32)");
  EXPECT_FALSE(std::filesystem::exists(tmp / "b/stage1"));
  // No checkpoint at all.
  c = small_job({"model.item_llm_from=\"" + tmp / "nowhere" + "\"", "job.stages=[\"stage1\"]"});
  msg = error_of([&] { run_small_job(c, tmp / "c"); });
  EXPECT_EQ(msg.rfind("config: model.item_llm_from = \"" + tmp / "nowhere" + "\": cannot open ", 0), 0u) << msg;
}

TEST(pretrained_init_config, scratch_needs_a_checkpoint_and_the_key_changes_the_hash_only_when_set) {
  std::string msg = error_of([] { small_job({"job.stages=[\"stage1\",\"scratch\"]"}); });
  EXPECT_EQ(msg.rfind("config: job.stages lists \"scratch\"", 0), 0u) << msg;
  EXPECT_NE(msg.find("model.item_llm_from is empty"), std::string::npos) << msg;
  EXPECT_NE(msg.find("from --set job.stages="), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  // The default "" leaves the hash of a job written before the key existed; a checkpoint is another job.
  auto now = launch::job_config::load("", {}, launch::default_job_toml);
  auto before = now;
  before.tree()["model"].erase("item_llm_from");
  EXPECT_EQ(now.hash(), before.hash());
  auto a = launch::job_config::load("", {"model.item_llm_from=/m/a"}, launch::default_job_toml);
  auto b = launch::job_config::load("", {"model.item_llm_from=/m/b"}, launch::default_job_toml);
  EXPECT_NE(a.hash(), now.hash());
  EXPECT_NE(a.hash(), b.hash());
}

TEST(pretrained_init_config, resolve_device_names_the_key_its_caller_passes) {
  const std::string msg = error_of([] { model::resolve_device("gpu", 0, "--device"); });
  EXPECT_EQ(msg.rfind("--device = gpu: not one of auto, cpu, cuda, cuda:N", 0), 0u) << msg;
  EXPECT_EQ(error_of([] { model::resolve_device("gpu"); }).rfind("train.device = gpu: ", 0), 0u);
}
