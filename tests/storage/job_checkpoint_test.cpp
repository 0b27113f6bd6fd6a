// storage/job_checkpoint: the one owner of the job-checkpoint format (write, list, verify, retain, version hash),
// on real files in a temporary job directory. A checkpoint's trainer files here are small stand-in bytes: the format
// hashes and lists files without reading them as tensors.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/job_checkpoint.hpp"
#include "test_util.hpp"

namespace hllm::storage {
namespace {

namespace fs = std::filesystem;
namespace jc = job_checkpoint;
using nlohmann::json;

json state_of(int64_t serial, const std::string& config_hash = "c0ffee") {
  return {{"serial", serial}, {"stage", "stage1"}, {"epoch", 0}, {"epoch_step", serial}, {"config_hash", config_hash}};
}

// Writes checkpoint `name` with trainer files of `model_bytes` and returns the bytes write() reports.
uint64_t write_one(const std::string& job, const std::string& name, int64_t serial,
                   const std::string& model_bytes = "weights", const std::string& config_hash = "c0ffee") {
  return jc::write(job, name, state_of(serial, config_hash), [&](const std::string& dir) {
    fs::create_directories(dir + "/trainer");
    test::write_text(dir + "/trainer/model.safetensors", model_bytes);
    test::write_text(dir + "/trainer/config.json", "{}\n");
  });
}

TEST(job_checkpoint, a_written_checkpoint_lists_as_valid_with_its_state_manifest_and_latest) {
  test::temp_dir job;
  const uint64_t bytes = write_one(job.path(), "stage1-e0-s4", 0);
  const std::string dir = jc::root_of(job.path()) + "/stage1-e0-s4";
  ASSERT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(jc::latest(job.path()), "stage1-e0-s4");
  const auto state = jc::read_state(dir);
  EXPECT_EQ(state.at("format"), jc::state_format);
  EXPECT_EQ(state.at("version"), jc::state_version);
  EXPECT_EQ(state.at("serial"), 0);
  // Every file but the manifest, sorted; the bytes reported are theirs.
  const auto files = jc::files_under(dir);
  ASSERT_EQ(files, (std::vector<std::string>{"state.json", "trainer/config.json", "trainer/model.safetensors"}));
  uint64_t sum = 0;
  for (const auto& f : files) sum += fs::file_size(dir + "/" + f);
  EXPECT_EQ(bytes, sum);
  const auto manifest = json::parse(read_text_file(dir + "/" + jc::manifest_name));
  EXPECT_EQ(manifest.at("files").at("trainer/model.safetensors").at("bytes"), 7);
  EXPECT_EQ(manifest.at("files").at("trainer/model.safetensors").at("xxh3"),
            hash_hex(hash_bytes("weights", 7)));
  const auto all = jc::list(job.path(), "c0ffee");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].problem, "");
  EXPECT_EQ(all[0].serial, 0);
  EXPECT_EQ(all[0].name, "stage1-e0-s4");
  EXPECT_FALSE(fs::exists(jc::root_of(job.path()) + "/.tmp-stage1-e0-s4"));
}

TEST(job_checkpoint, check_names_truncation_corruption_missing_manifest_and_a_foreign_config) {
  test::temp_dir job;
  write_one(job.path(), "a", 0, "0123456789");
  const std::string dir = jc::root_of(job.path()) + "/a";
  EXPECT_EQ(jc::check(dir, nullptr, "c0ffee"), "");
  EXPECT_EQ(jc::check(dir, nullptr, "beef"), "foreign checkpoint: config hash c0ffee, this job's is beef");
  test::write_text(dir + "/trainer/model.safetensors", "0123456789x");
  EXPECT_EQ(jc::check(dir), "size of trainer/model.safetensors is 11, manifest says 10 (truncated)");
  test::write_text(dir + "/trainer/model.safetensors", "0123456780");
  EXPECT_EQ(jc::check(dir), "checksum mismatch in trainer/model.safetensors");
  fs::remove(dir + "/trainer/model.safetensors");
  EXPECT_EQ(jc::check(dir), "missing file trainer/model.safetensors");
  fs::remove(dir + "/" + jc::manifest_name);
  EXPECT_EQ(jc::check(dir), "no manifest (incomplete checkpoint)");
  // An invalid checkpoint still lists, with its problem and the serial its state names.
  const auto all = jc::list(job.path());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].problem, "no manifest (incomplete checkpoint)");
  EXPECT_EQ(all[0].serial, 0);
}

TEST(job_checkpoint, scan_orders_by_serial_and_skips_interrupted_writes_and_the_excepted_name) {
  test::temp_dir job;
  EXPECT_TRUE(jc::scan(job.path()).empty());  // no JOB/checkpoints: nothing, no error
  EXPECT_EQ(jc::newest_serial(job.path()), -1);
  write_one(job.path(), "b", 2);
  write_one(job.path(), "a", 5);
  write_one(job.path(), "c", 1);
  const std::string root = jc::root_of(job.path());
  fs::create_directories(root + "/zz-unreadable");   // no state.json: serial -1, sorts last
  fs::create_directories(root + "/.tmp-d");          // an interrupted write
  std::vector<std::string> names;
  for (const auto& f : jc::scan(job.path())) names.push_back(f.name + ":" + std::to_string(f.serial));
  EXPECT_EQ(names, (std::vector<std::string>{"a:5", "b:2", "c:1", "zz-unreadable:-1"}));
  EXPECT_EQ(jc::newest_serial(job.path()), 5);
  EXPECT_EQ(jc::scan(job.path(), "a").front().name, "b");
  // list keeps scan's order and checks each.
  const auto all = jc::list(job.path());
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].name, "a");
  EXPECT_EQ(all[3].problem, "no manifest (incomplete checkpoint)");
  jc::remove_interrupted(job.path());
  EXPECT_FALSE(fs::exists(root + "/.tmp-d"));
  EXPECT_TRUE(fs::exists(root + "/a"));
}

TEST(job_checkpoint, retain_keeps_the_newest_n_by_serial_and_always_the_one_just_written) {
  test::temp_dir job;
  for (int s = 0; s < 5; ++s) write_one(job.path(), "s" + std::to_string(s), s);
  // The one just written is named even when a stale directory has a higher serial: it is never removed.
  EXPECT_TRUE(jc::retain(job.path(), 2, "s1").empty());
  std::vector<std::string> left;
  for (const auto& f : jc::scan(job.path())) left.push_back(f.name);
  EXPECT_EQ(left, (std::vector<std::string>{"s4", "s1"}));
  EXPECT_TRUE(jc::retain(job.path(), 1, "s4").empty());
  left.clear();
  for (const auto& f : jc::scan(job.path())) left.push_back(f.name);
  EXPECT_EQ(left, (std::vector<std::string>{"s4"}));
}

TEST(job_checkpoint, a_failed_write_leaves_the_earlier_checkpoints_and_latest_untouched) {
  test::temp_dir job;
  write_one(job.path(), "good", 0);
  try {
    jc::write(job.path(), "bad", state_of(1), [](const std::string& dir) {
      test::write_text(dir + "/partial", "x");
      throw error(errc::io, "disk full");
    });
    FAIL() << "write did not throw";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::io);
    EXPECT_EQ(std::string(e.what()), "cannot write checkpoint bad under '" + jc::root_of(job.path()) +
                                         "': disk full (the job stops; earlier checkpoints are intact)");
  }
  EXPECT_FALSE(fs::exists(jc::root_of(job.path()) + "/.tmp-bad"));
  EXPECT_FALSE(fs::exists(jc::root_of(job.path()) + "/bad"));
  EXPECT_EQ(jc::latest(job.path()), "good");
  EXPECT_EQ(jc::check(jc::root_of(job.path()) + "/good"), "");
}

TEST(job_checkpoint, the_version_hash_is_the_hash_of_model_safetensors_and_follows_its_bytes) {
  test::temp_dir dir;
  test::write_text(dir / "model.safetensors", "abc");
  const std::string v = checkpoint_version_hex(dir.path());
  EXPECT_EQ(v, hash_hex(hash_bytes("abc", 3)));
  EXPECT_EQ(v.size(), 16u);
  test::write_text(dir / "model.safetensors", "abd");
  EXPECT_NE(checkpoint_version_hex(dir.path()), v);
  test::temp_dir empty;
  try {
    checkpoint_version_hex(empty.path());
    FAIL() << "no model.safetensors did not throw";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::io);
    EXPECT_NE(std::string(e.what()).find(empty.path() + "/model.safetensors"), std::string::npos) << e.what();
  }
}

TEST(job_checkpoint, read_state_names_the_file_that_does_not_parse) {
  test::temp_dir dir;
  test::write_text(dir / "state.json", "{not json");
  try {
    jc::read_state(dir.path());
    FAIL() << "a broken state.json did not throw";
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::format);
    EXPECT_EQ(std::string(e.what()), dir.path() + "/state.json: not a JSON object");
  }
}

}  // namespace
}  // namespace hllm::storage
