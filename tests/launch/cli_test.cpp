// Runs the real `hllm` executables as child processes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>

#include "../storage/test_util.hpp"
#include "run_hllm.hpp"
#include "storage/dataset.hpp"

using hllm::test::contains;
using hllm::test::read_bytes;
using hllm::test::run_result;
using hllm::test::temp_dir;
using hllm::test::write_text;

namespace {

run_result run(const std::string& args) { return hllm::test::run_hllm(args); }

std::set<std::string> lines_of(const std::string& text) {
  std::set<std::string> out;
  std::size_t start = 0;
  for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.insert(text.substr(start, nl - start));
  }
  return out;
}

}  // namespace

TEST(cli, help_lists_commands_and_every_command_describes_its_options) {
  auto r = run("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(contains(r.output, "synth")) << r.output;
  EXPECT_TRUE(contains(r.output, "prepare"));
  r = run("prepare --help");
  EXPECT_EQ(r.status, 0);
  for (const char* opt : {"--interactions", "--items", "--out", "--tokenizer", "--train-tokenizer", "--fields",
                          "--max-text-tokens", "--strict", "--kcore"}) {
    EXPECT_TRUE(contains(r.output, opt)) << opt;
  }
  r = run("synth --help");
  EXPECT_EQ(r.status, 0);
  for (const char* opt : {"--out", "--users", "--items", "--seed", "--cold-items"}) {
    EXPECT_TRUE(contains(r.output, opt)) << opt;
  }
}

TEST(cli, unknown_command_fails_with_usage) {
  auto r = run("frobnicate");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.output, "unknown command 'frobnicate'"));
}

TEST(cli, synth_same_seed_same_bytes) {
  temp_dir tmp;
  ASSERT_EQ(run("synth --out " + tmp / "a" + " --users 200 --items 100 --topics 4").status, 0);
  ASSERT_EQ(run("synth --out " + tmp / "b" + " --users 200 --items 100 --topics 4").status, 0);
  EXPECT_EQ(read_bytes(tmp / "a/interactions.csv"), read_bytes(tmp / "b/interactions.csv"));
  EXPECT_EQ(read_bytes(tmp / "a/items.csv"), read_bytes(tmp / "b/items.csv"));
}

TEST(cli, prepare_on_synthetic_data_keeps_cold_items_out_of_training) {
  temp_dir tmp;
  ASSERT_EQ(run("synth --out " + tmp / "csv" + " --users 400 --items 200 --topics 5").status, 0);
  auto r = run("prepare --interactions " + tmp / "csv/interactions.csv" + " --items " + tmp / "csv/items.csv" +
               " --out " + tmp / "ds" + " --train-tokenizer 500 --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "users")) << r.output;
  auto ds = hllm::storage::dataset::open(tmp / "ds");
  EXPECT_EQ(ds.num_users(), 400);
  auto cold = lines_of(read_bytes(tmp / "csv/cold_items.txt"));
  ASSERT_FALSE(cold.empty());
  int64_t cold_seen = 0;
  for (int32_t item = 1; item <= ds.num_items(); ++item) {
    if (cold.count(std::string(ds.raw_item_id(item))) != 0) {
      EXPECT_EQ(ds.train_count(item), 0) << ds.raw_item_id(item);
      ++cold_seen;
    }
    // BOS first in every item's tokens.
    ASSERT_FALSE(ds.item_tokens(item).empty());
    EXPECT_EQ(ds.item_tokens(item)[0], ds.info().bos_id);
  }
  EXPECT_GT(cold_seen, 0);
  // Independently of the counts: no training part holds a cold item.
  for (int64_t u = 0; u < ds.num_users(); ++u) {
    for (int32_t item : ds.train_sequence(u)) EXPECT_EQ(cold.count(std::string(ds.raw_item_id(item))), 0u);
  }
  // Reusing the stored tokenizer reproduces the same tokens.
  r = run("prepare --interactions " + tmp / "csv/interactions.csv" + " --items " + tmp / "csv/items.csv" +
          " --out " + tmp / "ds2" + " --tokenizer " + tmp / "ds/tokenizer.model" + " --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_bytes(tmp / "ds/item_tokens.i32"), read_bytes(tmp / "ds2/item_tokens.i32"));
}

TEST(cli, prepare_reads_hand_written_pixelrec_and_books_layouts) {
  temp_dir tmp;
  write_text(tmp / "inter.csv",
             "item_id,user_id,timestamp\n"
             "101,alice,1700000000\n102,alice,1700000100\n103,alice,1700000200\n"
             "102,bob,1700000050\n101,bob,1700000060\n104,bob,1700000070\n");
  write_text(tmp / "pixel.csv",
             "item_id,title,tag,description\n"
             "101,Sunset timelapse,nature,\"Clouds, sea and \"\"golden\"\" light\"\n"
             "102,Cat video,pets,A cat falls asleep\n103,Café tour,food,Croissants in Paris\n"
             "104,Night city,urban,\"Neon\nand rain\"\n");
  write_text(tmp / "books.csv",
             "item_id,title,description\n101,Dune,Desert planet\n102,Emma,Manners\n103,Ulysses,Dublin day\n"
             "104,Beloved,Memory\n");
  auto r = run("prepare --interactions " + tmp / "inter.csv" + " --items " + tmp / "pixel.csv" + " --out " +
               tmp / "px" + " --train-tokenizer 100 --quiet --strict");
  ASSERT_EQ(r.status, 0) << r.output;
  auto px = hllm::storage::dataset::open(tmp / "px");
  EXPECT_EQ(px.num_items(), 4);
  EXPECT_EQ(px.info().fields, "title,tag,description");
  r = run("prepare --interactions " + tmp / "inter.csv" + " --items " + tmp / "books.csv" + " --out " + tmp / "bk" +
          " --fields title,description --train-tokenizer 100 --quiet --strict");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(hllm::storage::dataset::open(tmp / "bk").info().fields, "title,description");
  // Without --fields the Books layout takes its own text columns, in the file's order (issue 22: a converter's
  // output prepares as it is).
  r = run("prepare --interactions " + tmp / "inter.csv" + " --items " + tmp / "books.csv" + " --out " + tmp / "auto" +
          " --train-tokenizer 100 --quiet --strict");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(hllm::storage::dataset::open(tmp / "auto").info().fields, "title,description");
  // Books layout with the PixelRec fields asked for: the missing column is named.
  r = run("prepare --interactions " + tmp / "inter.csv" + " --items " + tmp / "books.csv" + " --out " + tmp / "bad" +
          " --fields title,tag,description --train-tokenizer 100 --quiet");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "missing column 'tag'")) << r.output;
}

TEST(cli, prepare_errors_name_the_file_and_line_and_write_nothing) {
  temp_dir tmp;
  write_text(tmp / "items.csv", "item_id,title,tag,description\na,x,y,z\n");
  write_text(tmp / "inter.csv", "item_id,user_id,timestamp\na,u,1\na,u,2\na,u,oops\n");
  auto r = run("prepare --interactions " + tmp / "inter.csv" + " --items " + tmp / "items.csv" + " --out " +
               tmp / "ds" + " --train-tokenizer 50 --quiet --strict");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "inter.csv:4: non-numeric timestamp")) << r.output;
  EXPECT_FALSE(std::filesystem::exists(tmp / "ds"));
  r = run("prepare --interactions " + tmp / "missing.csv" + " --items " + tmp / "items.csv" + " --out " + tmp / "ds" +
          " --train-tokenizer 50 --quiet");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "missing.csv")) << r.output;
  write_text(tmp / "junk.model", "this is not a sentencepiece model");
  write_text(tmp / "inter.csv", "item_id,user_id,timestamp\na,u,1\na,u,2\na,u,3\n");
  r = run("prepare --interactions " + tmp / "inter.csv" + " --items " + tmp / "items.csv" + " --out " + tmp / "ds" +
          " --tokenizer " + tmp / "junk.model" + " --quiet");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "junk.model")) << r.output;
  r = run("prepare --interactions " + tmp / "inter.csv" + " --items " + tmp / "items.csv" + " --out " + tmp / "ds");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(contains(r.output, "--tokenizer MODEL or --train-tokenizer")) << r.output;
}

TEST(cli, convert_then_prepare_amazon_books_with_the_papers_5_core) {
  temp_dir tmp;
  const std::string data = HLLM_CONVERT_DATA;
  auto r = run("convert amazon-books --in " + data + "/amazon --out " + tmp / "csv" + " --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "38 written (of 39 rows")) << r.output;
  EXPECT_TRUE(contains(r.output, "malformed metadata line: 2")) << r.output;
  EXPECT_TRUE(contains(r.output, "next: hllm prepare --interactions " + tmp / "csv/interactions.csv")) << r.output;
  r = run("prepare --interactions " + tmp / "csv/interactions.csv" + " --items " + tmp / "csv/items.csv" + " --out " +
          tmp / "ds" + " --kcore 5 --train-tokenizer 120 --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  auto ds = hllm::storage::dataset::open(tmp / "ds");
  EXPECT_EQ(ds.info().fields, "title,description");  // the converter's columns, no --fields needed
  // 6 readers x 6 books survive the one-pass 5-core; the noise reader (2 ratings) and book (1 rating) do not.
  EXPECT_EQ(ds.num_users(), 6);
  EXPECT_EQ(ds.num_items(), 6);
  EXPECT_EQ(ds.info().interactions, 36);
  EXPECT_TRUE(contains(r.output, "k-core removed   2 interactions")) << r.output;
  for (int32_t item = 1; item <= ds.num_items(); ++item) EXPECT_NE(ds.raw_item_id(item), "0001714422");
}

TEST(cli, convert_then_prepare_pixelrec_and_movielens_with_iso_dates) {
  temp_dir tmp;
  const std::string data = HLLM_CONVERT_DATA;
  auto r = run("convert pixelrec --in " + data + "/pixelrec/interactions.csv --in " + data +
               "/pixelrec/item_info.csv --out " + tmp / "px");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "dropped columns   item_info.csv: view_number, comment_number,")) << r.output;
  r = run("prepare --interactions " + tmp / "px/interactions.csv" + " --items " + tmp / "px/items.csv" + " --out " +
          tmp / "pxds" + " --train-tokenizer 100 --quiet --strict");
  ASSERT_EQ(r.status, 0) << r.output;
  auto px = hllm::storage::dataset::open(tmp / "pxds");
  EXPECT_EQ(px.num_users(), 2);  // u3 has 2 usable rows: too short for leave-one-out
  // u1's second interaction was written as "2021-07-12 09:30:00" and prepared as Unix seconds UTC.
  ASSERT_EQ(px.user_times(0).size(), 3u);
  EXPECT_EQ(px.user_times(0)[1], 1626082200);
  r = run("convert movielens --in " + data + "/ml-1m --out " + tmp / "ml");
  ASSERT_EQ(r.status, 0) << r.output;
  r = run("prepare --interactions " + tmp / "ml/interactions.csv" + " --items " + tmp / "ml/items.csv" + " --out " +
          tmp / "mlds" + " --train-tokenizer 80 --quiet --strict");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(hllm::storage::dataset::open(tmp / "mlds").num_items(), 3);
  EXPECT_EQ(hllm::storage::dataset::open(tmp / "mlds").info().fields, "title,tag");
  // A missing input: one line naming it, exit status 1, nothing written.
  r = run("convert movielens --in " + tmp / "nope" + " --out " + tmp / "ml2");
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.output, "hllm convert: error: cannot open '" + tmp / "nope" + "': No such file or directory\n");
  EXPECT_FALSE(std::filesystem::exists(tmp / "ml2"));
  r = run("convert --help");
  EXPECT_EQ(r.status, 0);
  for (const char* f : {"pixelrec", "amazon-books", "movielens"}) EXPECT_TRUE(contains(r.output, f)) << f;
  EXPECT_TRUE(contains(run("--help").output, "convert"));
}

TEST(cli, tiny_fixture_dataset_is_prepared_and_verifies) {
  const char* path = std::getenv("HLLM_TINY_DATA");
  ASSERT_NE(path, nullptr);
  auto ds = hllm::storage::dataset::open(path);
  EXPECT_EQ(ds.num_users(), 600);
  EXPECT_GT(ds.info().cold_items, 0);
  EXPECT_LE(ds.item_tokens(1).size(), 32u);
}

TEST(cli, checkpoint_commands_on_a_path_without_a_job_fail_with_one_line) {
  // Issue 20: `hllm checkpoint verify /no/such/dir` printed "0 checkpoints, 0 bad" and exited 0.
  temp_dir tmp;
  std::filesystem::create_directories(tmp / "empty");
  std::filesystem::create_directories(tmp / "job-without-checkpoints");
  write_text(tmp / "job-without-checkpoints/job.toml", "[job]\n");
  write_text(tmp / "a-file", "not a job\n");
  std::filesystem::create_directories(tmp / "job-with-none/checkpoints");
  struct expectation {
    std::string args, line;
  };
  const std::string missing = tmp / "no/such/dir";
  for (const auto& e : std::vector<expectation>{
           {"verify " + missing, "hllm checkpoint: error: '" + missing + "' does not exist"},
           {"list " + missing, "hllm checkpoint: error: '" + missing + "' does not exist"},
           {"digest " + missing, "hllm checkpoint: error: no model.safetensors for '" + missing + "'"},
           {"verify " + tmp / "empty", "holds no job checkpoints (no " + tmp / "empty/checkpoints"},
           {"list " + tmp / "empty", "holds no job checkpoints (no " + tmp / "empty/checkpoints"},
           {"verify " + tmp / "job-without-checkpoints", "holds no job checkpoints"},
           {"verify " + tmp / "a-file", "'" + tmp / "a-file" + "' is not a directory"},
           {"verify " + tmp / "job-with-none", "no checkpoints under " + tmp / "job-with-none/checkpoints" +
                                                   " (nothing to verify)"}}) {
    auto r = run("checkpoint " + e.args);
    EXPECT_EQ(r.status, 1) << e.args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, e.line)) << e.args << "\n" << r.output;
    EXPECT_EQ(lines_of(r.output).size(), 1u) << e.args << "\n" << r.output;
    EXPECT_FALSE(contains(r.output, "0 checkpoints")) << r.output;
  }
  // An empty checkpoints directory lists as empty (the job exists; it has written none yet).
  auto r = run("checkpoint list " + tmp / "job-with-none");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "no checkpoints under")) << r.output;
}

// --device cuda in the CPU build (no CUDA, no GPU): one error line, exit status 1, nothing written (issue 18).
TEST(cli, train_device_cuda_without_a_gpu_is_one_error_line_and_writes_nothing) {
  const char* data = std::getenv("HLLM_TINY_DATA");
  ASSERT_NE(data, nullptr);
  temp_dir tmp;
  auto r = run("train --data " + std::string(data) + " --out " + tmp / "job" + " --device cuda");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(r.output, "hllm train: error: train.device = cuda but this build has no CUDA support (Debian's libtorch is "
                      "CPU-only; the GPU build is -DHLLM_CUDA=ON -DTorch_DIR=<a CUDA libtorch>, docs/operations.md "
                      "\"Train on GPUs\")\n");
  EXPECT_FALSE(std::filesystem::exists(tmp / "job"));
}
