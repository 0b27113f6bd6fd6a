// Commands that write an output directory or an export never delete what is not theirs (issue 20): `--out` at the
// current directory, at a folder of other files, at a file, at a trained job, at the exports folder, at the
// training dataset. Each runs the real executables, as a clumsy user would, and checks that every byte that was
// there before is still there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "storage/export.hpp"
#include "../launch/run_hllm.hpp"
#include "../storage/test_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hllm;
using test::contains;

namespace {

test::run_result run(const std::string& args) { return test::run_hllm(args); }

// Every regular file below `dir` (relative path -> bytes): what must survive a refused command.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files[fs::relative(e.path(), dir).string()] = test::read_bytes(e.path().string());
  }
  return files;
}

// No staging directory or temporary file left beside `dir`'s entries.
bool no_leftovers(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.find(".staging-") != std::string::npos || n.find(".tmp-") != std::string::npos) return false;
  }
  return true;
}

class output_safety : public ::testing::Test {
 protected:
  void SetUp() override {
    csv_ = tmp_ / "csv";
    ASSERT_EQ(run("synth --out " + csv_ + " --users 60 --items 40 --topics 3 --seed 5").status, 0);
  }
  std::string prepare_args(const std::string& interactions, const std::string& items) const {
    return "prepare --interactions " + interactions + " --items " + items +
           " --train-tokenizer 120 --max-text-tokens 16 --quiet";
  }
  std::string prepare_into(const std::string& out, const std::string& extra = "") const {
    return prepare_args(csv_ + "/interactions.csv", csv_ + "/items.csv") + " --out " + out + extra;
  }
  test::temp_dir tmp_;
  std::string csv_;
};

TEST_F(output_safety, prepare_out_dot_refuses_and_keeps_every_input_file) {
  const auto before = snapshot(csv_);
  // As the user ran it: inside the folder of the CSVs, --out .
  const std::string in_csv = "cd " + csv_ + " && " + std::string(HLLM_BIN_DIR) + "/hllm ";
  for (const std::string force : {"", " --force"}) {
    const std::string cmd = in_csv + prepare_args("interactions.csv", "items.csv") + " --out ." + force + " 2>&1";
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int st = ::pclose(p);
    EXPECT_NE(st, 0) << out;
    EXPECT_TRUE(contains(out, "refusing to replace")) << out;
    EXPECT_TRUE(contains(out, "current directory")) << out;
    EXPECT_EQ(snapshot(csv_), before) << "an input file changed or vanished (" << force << ")";
  }
}

TEST_F(output_safety, prepare_out_at_a_folder_of_other_files_refuses_unless_forced) {
  const std::string dir = tmp_ / "notes";
  fs::create_directories(dir + "/sub");
  test::write_text(dir + "/notes.txt", "mine");
  test::write_text(dir + "/sub/more.txt", "also mine");
  const auto before = snapshot(dir);
  auto r = run(prepare_into(dir));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "refusing to replace")) << r.output;
  EXPECT_TRUE(contains(r.output, "is not a prepared dataset")) << r.output;
  EXPECT_TRUE(contains(r.output, "--force")) << r.output;
  EXPECT_EQ(snapshot(dir), before);
  EXPECT_TRUE(no_leftovers(tmp_.path()));
  // --force is the documented way to replace it.
  r = run(prepare_into(dir, " --force"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/manifest.json"));
  EXPECT_FALSE(fs::exists(dir + "/notes.txt"));
}

TEST_F(output_safety, prepare_out_at_a_file_refuses_and_keeps_it) {
  const std::string file = tmp_ / "ds";
  test::write_text(file, "not a directory");
  auto r = run(prepare_into(file));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "is a file")) << r.output;
  EXPECT_EQ(test::read_bytes(file), "not a directory");
  EXPECT_TRUE(no_leftovers(tmp_.path()));
}

TEST_F(output_safety, prepare_out_with_a_trailing_slash_writes_and_replaces_the_dataset) {
  const std::string dir = tmp_ / "ds";
  auto r = run(prepare_into(dir + "/"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/manifest.json"));
  // Re-preparing into the same dataset is the normal case: it replaces it.
  r = run(prepare_into(dir + "//"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir + "/manifest.json"));
  EXPECT_TRUE(no_leftovers(tmp_.path()));
}

TEST_F(output_safety, prepare_out_holding_an_input_is_refused_even_with_force) {
  auto r = run(prepare_into(csv_, " --force"));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "an input of this command")) << r.output;
  EXPECT_TRUE(fs::exists(csv_ + "/interactions.csv"));
  EXPECT_TRUE(fs::exists(csv_ + "/items.csv"));
}

TEST_F(output_safety, new_items_never_replace_the_training_dataset) {
  const std::string pl = tmp_ / "pl";
  ASSERT_EQ(run(prepare_into(pl)).status, 0);
  const auto before = snapshot(pl);
  test::write_text(tmp_ / "new.csv", "item_id,title,tag,description\nn1,a red lamp,home,bright\nn2,blue cup,kitchen,tea\n");
  // --out at the dataset --like names: refused, with or without --force.
  for (const std::string force : {"", " --force"}) {
    auto r = run("prepare --new-items " + (tmp_ / "new.csv") + " --like " + pl + " --out " + pl + force);
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "refusing to replace")) << r.output;
    EXPECT_EQ(snapshot(pl), before);
  }
  // Another copy of a training dataset: still not replaced by an items-only one without --force.
  const std::string copy = tmp_ / "pl-copy";
  fs::copy(pl, copy, fs::copy_options::recursive);
  auto r = run("prepare --new-items " + (tmp_ / "new.csv") + " --like " + pl + " --out " + copy);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "is not an items-only dataset")) << r.output;
  EXPECT_EQ(snapshot(copy), before);
  // A new folder works, and a second run replaces its own items-only dataset.
  for (int k = 0; k < 2; ++k) {
    r = run("prepare --new-items " + (tmp_ / "new.csv") + " --like " + pl + " --out " + (tmp_ / "new-ds"));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  EXPECT_EQ(json::parse(test::read_bytes(tmp_ / "new-ds/manifest.json"))["info"]["items"], 2);
}

// Index and export against the trained job of the stage-3 fixture.
class stage3_output_safety : public ::testing::Test {
 protected:
  void SetUp() override {
    job_ = test::env_or_empty("HLLM_STAGE3_JOBS");
    if (job_.empty()) GTEST_SKIP() << "HLLM_STAGE3_JOBS is not set (run through ctest: fixture stage3_jobs)";
    job_ += "/job";
    exports_ = tmp_ / "exports";
    fs::create_directories(exports_);
    auto r = run("export items --job " + job_ + " --out " + exports_ + "/items.npy");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  test::temp_dir tmp_;
  std::string job_, exports_;
};

TEST_F(stage3_output_safety, index_build_never_replaces_a_job_or_the_exports_folder) {
  // A copy of the trained job: the command must leave it exactly as it was.
  const std::string job = tmp_ / "job";
  fs::copy(job_, job, fs::copy_options::recursive);
  const auto job_before = snapshot(job);
  const auto exports_before = snapshot(exports_);
  for (const std::string& out : {job, job + "/", exports_, exports_ + "/"}) {
    auto r = run("index build --embeddings " + exports_ + "/items.npy --out " + out);
    EXPECT_NE(r.status, 0) << out << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "is not an ANN index")) << r.output;
  }
  EXPECT_EQ(snapshot(job), job_before);
  EXPECT_EQ(snapshot(exports_), exports_before);
  EXPECT_TRUE(no_leftovers(tmp_.path()));
  // An index directory (with a trailing slash) is written and then replaced by a rebuild.
  for (int k = 0; k < 2; ++k) {
    auto r = run("index build --embeddings " + exports_ + "/items.npy --out " + (tmp_ / "idx/"));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  EXPECT_TRUE(fs::exists(tmp_ / "idx/meta.json"));
  EXPECT_TRUE(no_leftovers(tmp_.path()));
}

TEST_F(stage3_output_safety, export_never_replaces_files_that_are_not_an_export) {
  const std::string mine = tmp_ / "mine.npy";
  test::write_text(mine, "my own matrix");
  auto r = run("export items --job " + job_ + " --out " + mine);
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "refusing to replace")) << r.output;
  EXPECT_EQ(test::read_bytes(mine), "my own matrix");
  EXPECT_FALSE(fs::exists(tmp_ / "mine.meta.json"));
  // An export replaces an export; --force replaces foreign files.
  r = run("export items --job " + job_ + " --out " + exports_ + "/items.npy");
  EXPECT_EQ(r.status, 0) << r.output;
  r = run("export items --job " + job_ + " --out " + mine + " --force");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NO_THROW(storage::read_export(mine));
  EXPECT_TRUE(no_leftovers(tmp_.path()));
}

}  // namespace

namespace {

// hllm encode --device cuda (and the export re-encode through it) in the CPU build: one line, nothing written.
TEST_F(stage3_output_safety, encode_on_a_missing_gpu_is_one_error_line_and_writes_nothing) {
  std::string data = test::read_bytes(job_ + "/dataset");  // the job's dataset, as the job recorded it
  while (!data.empty() && data.back() == '\n') data.pop_back();
  auto r = run("encode --data " + data + " --checkpoint " + job_ + "/stage1/best --out " +
               (tmp_ / "gpu.npy") + " --device cuda");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "no CUDA support")) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  EXPECT_FALSE(fs::exists(tmp_ / "gpu.npy"));
}

}  // namespace
