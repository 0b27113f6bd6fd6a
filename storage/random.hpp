#pragma once
// Deterministic randomness with no hidden state (ARCHITECTURE.md, determinism contract): a stream is a pure
// function of its keys, e.g. (job seed, stage, epoch, step, rank, purpose). Same keys, same numbers, on every
// platform (no std:: distributions, whose output is implementation-defined).
#include <cstdint>
#include <initializer_list>

namespace hllm {

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Mixes any number of keys into one 64-bit stream seed.
inline uint64_t stream_seed(std::initializer_list<uint64_t> keys) {
  uint64_t h = 0x243F6A8885A308D3ull;
  for (uint64_t k : keys) h = splitmix64(h ^ splitmix64(k));
  return h;
}

class rng {
 public:
  explicit rng(uint64_t seed) : state_(seed) {}
  rng(std::initializer_list<uint64_t> keys) : state_(stream_seed(keys)) {}

  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ull;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) without modulo bias (Lemire's method with rejection).
  uint64_t below(uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    auto low = static_cast<uint64_t>(m);
    if (low < n) {
      uint64_t threshold = -n % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace hllm
