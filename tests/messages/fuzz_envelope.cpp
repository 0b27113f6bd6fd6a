// libFuzzer target over the envelope decoder: arbitrary bytes must never crash, hang or leak, and whatever
// decodes must encode and decode again. Built with clang (-fsanitize=fuzzer,address,undefined) by CMake.
#include <cstdint>
#include <cstdlib>

#include "messages/codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace hllm::msg;
  limits lim;
  lim.max_bytes = std::size_t{1} << 20;
  buffer bytes = buffer::copy_of(data, size);  // the router does the same with every frame
  auto checked = validate(bytes, lim);
  auto header_only = read_header(bytes, lim);
  if (checked.ok() && !header_only.ok()) {
    std::abort();  // validate() is read_header() plus more checks: it cannot accept what read_header refuses
  }
  auto decoded = decode(bytes, lim);
  if (decoded.ok()) {
    auto again = decode(encode(decoded.value()));
    if (!again.ok() || kind_of(again->content) != kind_of(decoded->content) ||
        !(again->head == decoded->head)) {
      std::abort();
    }
  }
  return 0;
}
