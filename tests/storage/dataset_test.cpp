#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "test_util.hpp"

using namespace hllm::storage;
using hllm::test::temp_dir;

namespace {

// Two users, three items: u0 = [1, 2, 3], u1 = [2, 3, 1, 2]... (item 2 twice is allowed in data).
void make_small(dataset_arrays& a, dataset_info& info) {
  a.item_tokens = {1, 10, 11, 1, 12, 1, 13, 14, 15};
  a.item_token_offsets = {0, 0, 3, 5, 9};
  a.item_raw_ids = "i1i2i3";
  a.item_raw_offsets = {0, 0, 2, 4, 6};
  a.user_raw_ids = "alicebob";
  a.user_raw_offsets = {0, 5, 8};
  a.seq_items = {1, 2, 3, 2, 3, 1, 2};
  a.seq_times = {10, 20, 30, 1, 2, 3, 4};
  a.seq_offsets = {0, 3, 7};
  a.item_train_count = {0, 1, 1, 1};
  info.users = 2;
  info.items = 3;
  info.interactions = 7;
  info.tokens = 9;
  info.max_text_tokens = 8;
  info.vocab_size = 16;
  info.prompt = "p";
  info.fields = "title";
}

void flip_byte(const std::string& path, std::size_t offset) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

}  // namespace

TEST(dataset, round_trip_serves_items_sequences_and_split) {
  temp_dir tmp;
  dataset_arrays a;
  dataset_info info;
  make_small(a, info);
  write_dataset(tmp / "ds", info, a, "model-bytes", R"({"note": 1})");
  auto ds = dataset::open(tmp / "ds");
  EXPECT_EQ(ds.num_users(), 2);
  EXPECT_EQ(ds.num_items(), 3);
  EXPECT_EQ(ds.info().vocab_size, 16);
  EXPECT_TRUE(ds.item_tokens(0).empty());
  auto t3 = ds.item_tokens(3);
  EXPECT_EQ(std::vector<int32_t>(t3.begin(), t3.end()), (std::vector<int32_t>{1, 13, 14, 15}));
  EXPECT_EQ(ds.raw_item_id(2), "i2");
  EXPECT_EQ(ds.raw_user_id(1), "bob");
  auto tr = ds.train_sequence(1);
  EXPECT_EQ(std::vector<int32_t>(tr.begin(), tr.end()), (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(ds.valid_target(1), 1);
  EXPECT_EQ(ds.test_target(1), 2);
  EXPECT_EQ(ds.user_times(0)[2], 30);
  EXPECT_EQ(hllm::test::read_bytes(tmp / "ds/tokenizer.model"), "model-bytes");
}

TEST(dataset, flipped_byte_is_a_checksum_error_naming_the_file) {
  temp_dir tmp;
  dataset_arrays a;
  dataset_info info;
  make_small(a, info);
  write_dataset(tmp / "ds", info, a, "", "");
  flip_byte(tmp / "ds/seq_times.i64", 3);
  const auto e = hllm::test::error_from([&] { dataset::open(tmp / "ds"); });
  ASSERT_TRUE(e.thrown) << "corruption not detected";
  EXPECT_EQ(e.code, hllm::errc::checksum);
  EXPECT_NE(e.what.find("seq_times.i64"), std::string::npos) << e.what;
  // Without verification the structure checks still hold (this flip keeps offsets valid).
  EXPECT_NO_THROW(dataset::open(tmp / "ds", false));
}

TEST(dataset, truncated_file_is_reported_even_without_verification) {
  temp_dir tmp;
  dataset_arrays a;
  dataset_info info;
  make_small(a, info);
  write_dataset(tmp / "ds", info, a, "", "");
  std::filesystem::resize_file(tmp / "ds/seq_items.i32", 8);
  const auto e = hllm::test::error_from([&] { dataset::open(tmp / "ds", false); });
  ASSERT_TRUE(e.thrown) << "truncation not detected";
  EXPECT_EQ(e.code, hllm::errc::format);
  EXPECT_NE(e.what.find("seq_items.i32"), std::string::npos) << e.what;
}

TEST(dataset, corrupt_offsets_cannot_cause_out_of_bounds_reads) {
  temp_dir tmp;
  dataset_arrays a;
  dataset_info info;
  make_small(a, info);
  a.seq_offsets = {0, 5, 7};  // user 1 then has 2 interactions: not a valid leave-one-out sequence
  write_dataset(tmp / "ds", info, a, "", "");
  EXPECT_THROW(dataset::open(tmp / "ds"), hllm::error);
  a.seq_offsets = {0, 3, 9};  // past the end
  write_dataset(tmp / "ds", info, a, "", "");
  EXPECT_THROW(dataset::open(tmp / "ds"), hllm::error);
}

TEST(dataset, missing_manifest_and_foreign_version_are_clear_errors) {
  temp_dir tmp;
  std::filesystem::create_directories(tmp / "empty");
  const auto missing = hllm::test::error_from([&] { dataset::open(tmp / "empty"); });
  ASSERT_TRUE(missing.thrown);
  EXPECT_EQ(missing.code, hllm::errc::not_found);
  EXPECT_NE(missing.what.find("manifest.json"), std::string::npos);
  dataset_arrays a;
  dataset_info info;
  make_small(a, info);
  write_dataset(tmp / "ds", info, a, "", "");
  std::string m = hllm::test::read_bytes(tmp / "ds/manifest.json");
  auto pos = m.find("\"version\": 1");
  ASSERT_NE(pos, std::string::npos);
  m.replace(pos, 12, "\"version\": 99");
  hllm::test::write_text(tmp / "ds/manifest.json", m);
  const auto foreign = hllm::test::error_from([&] { dataset::open(tmp / "ds"); });
  ASSERT_TRUE(foreign.thrown);
  EXPECT_EQ(foreign.code, hllm::errc::version);
  hllm::test::write_text(tmp / "ds/manifest.json", "{not json");
  EXPECT_THROW(dataset::open(tmp / "ds"), hllm::error);
}

TEST(dataset, rewriting_replaces_the_whole_directory_and_leaves_no_staging) {
  temp_dir tmp;
  dataset_arrays a;
  dataset_info info;
  make_small(a, info);
  write_dataset(tmp / "ds", info, a, "", "");
  hllm::test::write_text(tmp / "ds/stale-file", "old");
  info.vocab_size = 99;
  write_dataset(tmp / "ds", info, a, "", "");
  EXPECT_EQ(dataset::open(tmp / "ds").info().vocab_size, 99);
  EXPECT_FALSE(std::filesystem::exists(tmp / "ds/stale-file"));
  int entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(tmp.path())) ++entries;
  EXPECT_EQ(entries, 1);
}
