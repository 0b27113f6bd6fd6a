#pragma once
// Embedding-cache shard files (ARCHITECTURE.md, "Storage formats"): the rows of item ids with
// `id % num_shards == shard`, tagged with the hash of the Item-LLM checkpoint that produced them.
//
// Layout (little-endian):
//   header, 64 bytes: magic "HLLMEMB1", u32 format version, u32 dtype (0 f32, 1 bf16, 2 f16), u32 dim,
//                     u32 shard, u32 num_shards, u32 reserved, u64 rows, u64 item_llm_hash, u64 body_xxh3, 8 zero bytes
//   presence:         rows bytes (1 = row filled), zero-padded to a multiple of 64
//   rows:             rows x dim elements; local row r holds item id r * num_shards + shard
// The body checksum covers presence and rows. Written to a temporary file, fsynced, renamed.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "storage/file_io.hpp"
#include "storage/span.hpp"

namespace hllm::storage {

enum class embedding_dtype : uint32_t { f32 = 0, bf16 = 1, f16 = 2 };
std::size_t element_size(embedding_dtype t);

struct embedding_shard_header {
  embedding_dtype dtype = embedding_dtype::f32;
  uint32_t dim = 0;
  uint32_t shard = 0;
  uint32_t num_shards = 1;
  uint64_t rows = 0;
  uint64_t item_llm_hash = 0;
};

// Number of local rows of `shard` for items 0..num_items (0 = padding, included so row math stays uniform).
uint64_t shard_rows(int64_t num_items, uint32_t shard, uint32_t num_shards);

// Writes a shard file atomically (temp file + fsync + rename). `presence` has header.rows bytes; `rows` has
// header.rows * dim * element_size bytes.
void write_embedding_shard(const std::string& path, const embedding_shard_header& header,
                           const std::vector<uint8_t>& presence, const void* rows, std::size_t rows_bytes);

class embedding_shard_file {
 public:
  // Opens and verifies (magic, version, sizes, checksum). With `expected_hash` != 0, a file made by another Item-LLM
  // checkpoint is refused with errc::mismatch naming both hashes.
  static embedding_shard_file open(const std::string& path, uint64_t expected_hash = 0);

  const embedding_shard_header& header() const { return header_; }
  bool owns(int64_t item) const { return item >= 0 && static_cast<uint64_t>(item) % header_.num_shards == header_.shard; }
  bool present(int64_t item) const;
  // The bytes of one item's row (dim x element size). Throws errc::not_found for an item of another shard, out of
  // range or not filled.
  span<const std::byte> row(int64_t item) const;
  uint64_t filled_rows() const;

 private:
  mapped_file file_;
  embedding_shard_header header_;
  const uint8_t* presence_ = nullptr;
  const std::byte* rows_ = nullptr;
};

}  // namespace hllm::storage
