#include "messages/buffer.hpp"

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace hllm::msg {

buffer buffer::copy_of(const void* data, std::size_t size) {
  // uint64_t storage gives the alignment; the tail of the last word is zeroed, never read as message content.
  std::size_t words = (size + 7) / 8;
  std::shared_ptr<std::uint64_t[]> storage(new std::uint64_t[words == 0 ? 1 : words]);
  if (words > 0) {
    storage[words - 1] = 0;
    std::memcpy(storage.get(), data, size);
  }
  buffer b;
  b.data_ = reinterpret_cast<const std::byte*>(storage.get());
  b.size_ = size;
  b.owner_ = std::shared_ptr<const void>(storage, storage.get());
  return b;
}

buffer buffer::adopt(std::shared_ptr<const void> owner, const void* data, std::size_t size) {
  if (!is_word_aligned(data)) {
    throw std::invalid_argument("hllm::msg::buffer::adopt: data is not 8-byte aligned");
  }
  buffer b;
  b.owner_ = std::move(owner);
  b.data_ = static_cast<const std::byte*>(data);
  b.size_ = size;
  return b;
}

}  // namespace hllm::msg
