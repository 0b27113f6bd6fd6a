#pragma once
// Small POSIX file helpers shared by every on-disk format: read-only memory maps, durable writes, atomic replace.
#include <cstddef>
#include <cstdint>
#include <string>

namespace hllm::storage {

// A read-only memory map of a whole file. Empty files map to {nullptr, 0}.
class mapped_file {
 public:
  static mapped_file open(const std::string& path);
  mapped_file() = default;
  mapped_file(mapped_file&& other) noexcept;
  mapped_file& operator=(mapped_file&& other) noexcept;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file();

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

// Writes bytes to a new file and fsyncs it; returns the xxh64 (XXH3 64-bit) of the bytes. Throws hllm::error(io).
uint64_t write_file_durably(const std::string& path, const void* data, std::size_t size);
void fsync_directory(const std::string& dir);
// XXH3 64-bit of a byte range, as the hex string used in manifests.
uint64_t hash_bytes(const void* data, std::size_t size);
std::string hash_hex(uint64_t h);

// Moves the complete directory `staged` to `target` atomically: if target exists, the two are exchanged
// (renameat2 RENAME_EXCHANGE) and the old content is removed afterwards, so a crash at any moment leaves either
// the old or the new directory at `target`, never a mix.
void replace_directory_atomically(const std::string& staged, const std::string& target);

std::string read_text_file(const std::string& path);
bool path_exists(const std::string& path);

}  // namespace hllm::storage
