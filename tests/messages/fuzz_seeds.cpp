// Writes one encoded sample envelope per body kind into a directory: the fuzzer's seed corpus, so it starts from
// valid messages instead of spending its time budget discovering the segment table.
#include <cstdio>
#include <fstream>
#include <string>

#include "messages/codec.hpp"
#include "tests/messages/samples.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-dir>\n", argv[0]);
    return 2;
  }
  for (std::size_t k = 0; k < hllm::msg::body_kind_count; ++k) {
    auto kind = static_cast<hllm::msg::body_kind>(k);
    auto bytes = hllm::msg::encode(hllm::msg::testing::sample_envelope(kind));
    std::ofstream out(std::string(argv[1]) + "/seed-" + hllm::msg::to_string(kind), std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "cannot write the seed corpus into %s\n", argv[1]);
      return 1;
    }
  }
  return 0;
}
