#include "storage/embedding_shard.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <xxhash.h>

#include "storage/error.hpp"

namespace hllm::storage {
namespace {

constexpr char magic[8] = {'H', 'L', 'L', 'M', 'E', 'M', 'B', '1'};
constexpr uint32_t format_version = 1;
constexpr std::size_t header_bytes = 64;

std::size_t padded(std::size_t n) { return (n + 63) / 64 * 64; }

struct raw_header {
  char magic[8];
  uint32_t version, dtype, dim, shard, num_shards, reserved;
  uint64_t rows, item_llm_hash, body_hash, zero;
};
static_assert(sizeof(raw_header) == header_bytes, "shard header must be 64 bytes");

}  // namespace

std::size_t element_size(embedding_dtype t) { return t == embedding_dtype::f32 ? 4 : 2; }

uint64_t shard_rows(int64_t num_items, uint32_t shard, uint32_t num_shards) {
  auto ids = static_cast<uint64_t>(num_items) + 1;
  return shard >= ids ? 0 : (ids - shard + num_shards - 1) / num_shards;
}

void write_embedding_shard(const std::string& path, const embedding_shard_header& h,
                           const std::vector<uint8_t>& presence, const void* rows, std::size_t rows_bytes) {
  if (presence.size() != h.rows || rows_bytes != h.rows * h.dim * element_size(h.dtype)) {
    throw error(errc::invalid_input, "embedding shard '" + path + "': presence or row bytes do not match the header");
  }
  std::string body(padded(h.rows), '\0');
  std::memcpy(body.data(), presence.data(), presence.size());
  body.append(static_cast<const char*>(rows), rows_bytes);
  raw_header raw{{}, format_version, static_cast<uint32_t>(h.dtype), h.dim, h.shard, h.num_shards, 0, h.rows,
                 h.item_llm_hash, XXH3_64bits(body.data(), body.size()), 0};
  std::memcpy(raw.magic, magic, sizeof magic);
  std::string bytes(reinterpret_cast<const char*>(&raw), sizeof raw);
  bytes += body;
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    write_file_durably(tmp, bytes.data(), bytes.size());
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw error(errc::io, "embedding shard '" + path + "': cannot rename the temporary file into place");
  }
}

embedding_shard_file embedding_shard_file::open(const std::string& path, uint64_t expected_hash) {
  embedding_shard_file f;
  f.file_ = mapped_file::open(path);
  auto bad = [&](const std::string& why) { throw error(errc::format, "embedding shard '" + path + "': " + why); };
  if (f.file_.size() < header_bytes) bad("shorter than its header (truncated?)");
  raw_header raw;
  std::memcpy(&raw, f.file_.data(), sizeof raw);
  if (std::memcmp(raw.magic, magic, sizeof magic) != 0) bad("not an embedding shard (bad magic)");
  if (raw.version != format_version) {
    throw error(errc::version, "embedding shard '" + path + "': format version " + std::to_string(raw.version) +
                                   ", this build reads " + std::to_string(format_version));
  }
  if (raw.dtype > 2) bad("unknown dtype " + std::to_string(raw.dtype));
  if (raw.num_shards == 0 || raw.shard >= raw.num_shards) bad("shard index out of range");
  f.header_ = {static_cast<embedding_dtype>(raw.dtype), raw.dim, raw.shard, raw.num_shards, raw.rows,
               raw.item_llm_hash};
  // Size arithmetic in 128 bits so absurd header values cannot overflow into a plausible size.
  unsigned __int128 expected = header_bytes +
                               ((static_cast<unsigned __int128>(raw.rows) + 63) / 64 * 64) +
                               static_cast<unsigned __int128>(raw.rows) * raw.dim * element_size(f.header_.dtype);
  if (expected != f.file_.size()) {
    bad("size " + std::to_string(f.file_.size()) + " bytes does not match its header (truncated or damaged)");
  }
  const std::byte* body = f.file_.data() + header_bytes;
  if (XXH3_64bits(body, f.file_.size() - header_bytes) != raw.body_hash) {
    throw error(errc::checksum, "embedding shard '" + path + "': checksum mismatch (file damaged)");
  }
  if (expected_hash != 0 && raw.item_llm_hash != expected_hash) {
    throw error(errc::mismatch, "embedding shard '" + path + "' was made by Item-LLM checkpoint " +
                                    hash_hex(raw.item_llm_hash) + ", expected " + hash_hex(expected_hash));
  }
  f.presence_ = reinterpret_cast<const uint8_t*>(body);
  f.rows_ = body + padded(raw.rows);
  return f;
}

bool embedding_shard_file::present(int64_t item) const {
  if (!owns(item)) return false;
  uint64_t r = static_cast<uint64_t>(item) / header_.num_shards;
  return r < header_.rows && presence_[r] != 0;
}

span<const std::byte> embedding_shard_file::row(int64_t item) const {
  if (!present(item)) {
    throw error(errc::not_found, "embedding shard " + std::to_string(header_.shard) + ": no row for item " +
                                     std::to_string(item));
  }
  std::size_t width = header_.dim * element_size(header_.dtype);
  uint64_t r = static_cast<uint64_t>(item) / header_.num_shards;
  return {rows_ + r * width, width};
}

uint64_t embedding_shard_file::filled_rows() const {
  uint64_t n = 0;
  for (uint64_t r = 0; r < header_.rows; ++r) n += presence_[r] != 0;
  return n;
}

}  // namespace hllm::storage
