#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "storage/embedding_shard.hpp"
#include "storage/error.hpp"
#include "test_util.hpp"

using namespace hllm::storage;
using hllm::test::temp_dir;

namespace {

// Shard 1 of 3 over items 0..10: ids 1, 4, 7, 10 -> 4 rows of dim 2; item 7 left unfilled.
std::string write_sample(const temp_dir& tmp, uint64_t hash = 0xABCDEF) {
  embedding_shard_header h;
  h.dim = 2;
  h.shard = 1;
  h.num_shards = 3;
  h.rows = shard_rows(10, 1, 3);
  h.item_llm_hash = hash;
  std::vector<float> rows;
  std::vector<uint8_t> presence;
  for (uint64_t r = 0; r < h.rows; ++r) {
    float id = static_cast<float>(r * 3 + 1);
    rows.push_back(id);
    rows.push_back(-id);
    presence.push_back(id == 7.0f ? 0 : 1);
  }
  std::string path = tmp / "shard-1.emb";
  write_embedding_shard(path, h, presence, rows.data(), rows.size() * sizeof(float));
  return path;
}

float first_float(hllm::span<const std::byte> row) {
  float f;
  std::memcpy(&f, row.data(), sizeof f);
  return f;
}

}  // namespace

TEST(embedding_shard, round_trip_serves_owned_filled_rows_only) {
  temp_dir tmp;
  EXPECT_EQ(shard_rows(10, 1, 3), 4u);
  EXPECT_EQ(shard_rows(10, 0, 3), 4u);  // 0, 3, 6, 9
  EXPECT_EQ(shard_rows(10, 2, 3), 3u);  // 2, 5, 8
  auto f = embedding_shard_file::open(write_sample(tmp), 0xABCDEF);
  EXPECT_EQ(f.header().dim, 2u);
  EXPECT_EQ(f.filled_rows(), 3u);
  EXPECT_EQ(first_float(f.row(10)), 10.0f);
  EXPECT_EQ(first_float(f.row(4)), 4.0f);
  EXPECT_FALSE(f.present(7));
  EXPECT_FALSE(f.owns(3));
  EXPECT_THROW(f.row(7), hllm::error);   // not filled
  EXPECT_THROW(f.row(3), hllm::error);   // another shard's item
  EXPECT_THROW(f.row(13), hllm::error);  // out of range
}

TEST(embedding_shard, other_item_llm_version_is_refused) {
  temp_dir tmp;
  auto path = write_sample(tmp, 0x1111);
  const auto e = hllm::test::error_from([&] { embedding_shard_file::open(path, 0x2222); });
  ASSERT_TRUE(e.thrown) << "version mismatch accepted";
  EXPECT_EQ(e.code, hllm::errc::mismatch);
  EXPECT_NE(e.what.find("0000000000001111"), std::string::npos) << e.what;
}

TEST(embedding_shard, truncated_flipped_and_foreign_files_are_detected) {
  temp_dir tmp;
  auto path = write_sample(tmp);
  std::string good = hllm::test::read_bytes(path);
  std::filesystem::resize_file(path, good.size() - 4);
  EXPECT_THROW(embedding_shard_file::open(path), hllm::error);
  std::string flipped = good;
  flipped[flipped.size() - 1] ^= 0x10;
  hllm::test::write_text(path, flipped);
  const auto e = hllm::test::error_from([&] { embedding_shard_file::open(path); });
  ASSERT_TRUE(e.thrown);
  EXPECT_EQ(e.code, hllm::errc::checksum);
  std::string absurd = good;
  absurd[39] = '\x7f';  // top byte of the rows field (bytes 32-39): absurd size
  hllm::test::write_text(path, absurd);
  EXPECT_THROW(embedding_shard_file::open(path), hllm::error);
  hllm::test::write_text(path, "garbage");
  EXPECT_THROW(embedding_shard_file::open(path), hllm::error);
}
