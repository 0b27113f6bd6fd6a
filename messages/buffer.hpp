#pragma once
// An encoded Envelope: the flat Cap'n Proto bytes (segment table + segments), 8-byte aligned, immutable and
// shared. The same buffer goes into a CAF mailbox (local delivery) or onto a ZeroMQ socket (remote delivery);
// nobody re-encodes it on the way.
#include <cstddef>
#include <cstdint>
#include <memory>

namespace hllm::msg {

class buffer {
 public:
  buffer() = default;

  // Copies `size` bytes into fresh 8-byte-aligned memory: bytes from a socket are not aligned.
  static buffer copy_of(const void* data, std::size_t size);

  // Shares memory kept alive by `owner` without copying; `data` must be 8-byte aligned.
  static buffer adopt(std::shared_ptr<const void> owner, const void* data, std::size_t size);

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // The owner of the bytes, for zero-copy hand-over (e.g. to a ZeroMQ message).
  const std::shared_ptr<const void>& owner() const { return owner_; }

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

inline bool is_word_aligned(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 8 == 0; }

}  // namespace hllm::msg
