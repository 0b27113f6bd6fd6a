#pragma once
// The ownership rule of the embedding cache, in one place: which of `n` cache shards holds an item, and the
// address of shard i. Every writer (item encoder, `hllm encode`), reader (step feed, cache fill, exporter) and the
// shard itself use these two functions. No dependencies beyond the standard library: storage/ and launch/ may
// include it.
#include <cstdint>
#include <string>

namespace hllm::msg {

// The shard (0 .. n-1) that owns item `id` among `n` shards: id mod n. Item ids are positive (0 is padding);
// n must be > 0.
constexpr std::uint32_t shard_of(std::int64_t id, std::uint32_t n) {
  return static_cast<std::uint32_t>(static_cast<std::uint64_t>(id) % n);
}

// The actor address of cache shard i: "cache-shard-<i>".
inline std::string shard_name(std::uint32_t i) { return "cache-shard-" + std::to_string(i); }

}  // namespace hllm::msg
