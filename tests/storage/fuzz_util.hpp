#pragma once
// Mutation fuzzing helpers for the reader fuzz tests (fuzz_readers_test.cpp, hnsw_fuzz_test.cpp): deterministic
// mutations of valid seeds; every case must parse or throw hllm::error.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "storage/error.hpp"
#include "storage/number.hpp"
#include "test_util.hpp"

namespace hllm::fuzzing {

inline int iterations() { return storage::env_int<int>("HLLM_FUZZ_ITERATIONS", 2000, 1, 100000000); }
inline uint64_t base_seed() { return storage::env_int<uint64_t>("HLLM_FUZZ_SEED", 20, 0, UINT64_MAX); }

inline const std::vector<std::string> common_tokens{
    "-1", "0", "1", "99999999999999999999", "18446744073709551616", "9223372036854775807", "4294967296", "1e308",
    "-0", "nan", "inf", "\"", "'", "\\", ",", ":", "\n", "\r\n", "\r", "\xff", "\xc3", "\xef\xbb\xbf", " ", "\t",
    "{", "}", "[", "]", "(", ")", std::string("\0", 1)};

// Writes a case file. Removing the old one first: rewriting a file in place with O_TRUNC makes ext4 flush it on
// close (auto_da_alloc), which costs milliseconds per case.
inline void put(const std::string& path, const std::string& bytes) {
  std::remove(path.c_str());
  test::write_text(path, bytes);
}

// Applies 1-4 random mutations to `s`.
inline std::string mutate(std::string s, std::mt19937_64& rng, const std::vector<std::string>& tokens) {
  auto pick = [&](std::size_t n) { return n == 0 ? std::size_t{0} : static_cast<std::size_t>(rng() % n); };
  const int n = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < n; ++k) {
    switch (rng() % 8) {
      case 0:  // flip one bit
        if (!s.empty()) s[pick(s.size())] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:  // set one byte
        if (!s.empty()) s[pick(s.size())] = static_cast<char>(rng() % 256);
        break;
      case 2:  // truncate
        s.resize(pick(s.size() + 1));
        break;
      case 3: {  // insert random bytes
        std::string r(1 + pick(8), '\0');
        for (char& c : r) c = static_cast<char>(rng() % 256);
        s.insert(pick(s.size() + 1), r);
        break;
      }
      case 4:  // delete a range
        if (!s.empty()) {
          const std::size_t at = pick(s.size());
          s.erase(at, 1 + pick(std::min<std::size_t>(16, s.size() - at)));
        }
        break;
      case 5: {  // insert a token of the format or an extreme number
        const auto& pool = rng() % 2 == 0 && !tokens.empty() ? tokens : common_tokens;
        s.insert(pick(s.size() + 1), pool[pick(pool.size())]);
        break;
      }
      case 6:  // duplicate a chunk somewhere else
        if (!s.empty()) {
          const std::size_t at = pick(s.size());
          const std::string chunk = s.substr(at, 1 + pick(32));
          s.insert(pick(s.size() + 1), chunk);
        }
        break;
      default: {  // replace a run of digits (a size, a shape, an offset) with an extreme number
        std::vector<std::size_t> starts;
        for (std::size_t i = 0; i < s.size(); ++i) {
          if (std::isdigit(static_cast<unsigned char>(s[i])) && (i == 0 || !std::isdigit(static_cast<unsigned char>(s[i - 1])))) {
            starts.push_back(i);
          }
        }
        if (starts.empty()) break;
        const std::size_t at = starts[pick(starts.size())];
        std::size_t end = at;
        while (end < s.size() && std::isdigit(static_cast<unsigned char>(s[end]))) ++end;
        static const char* numbers[] = {"0", "1", "7", "255", "65536", "4294967295", "4294967296",
                                        "9223372036854775807", "9223372036854775808", "18446744073709551615",
                                        "99999999999999999999999", "4611686018427387904"};
        s.replace(at, end - at, numbers[pick(std::size(numbers))]);
        break;
      }
    }
  }
  return s;
}

// Runs `read` on every mutation of the seeds; counts parses and hllm::errors, fails on anything else thrown.
struct outcome {
  int parsed = 0, refused = 0;
};

// Runs `one_case(i)` n times; counts parses and hllm::errors, fails on anything else thrown.
template <class Case>
outcome run_cases(const char* reader, Case&& one_case) {
  outcome o;
  const int n = iterations();
  for (int i = 0; i < n; ++i) {
    try {
      one_case(i);
      ++o.parsed;
    } catch (const hllm::error&) {
      ++o.refused;
    } catch (const std::exception& e) {
      ADD_FAILURE() << reader << " iteration " << i << ": threw a " << typeid(e).name() << " instead of hllm::error: "
                    << e.what();
    }
    if (::testing::Test::HasFatalFailure()) break;
  }
  std::printf("%s: %d mutations, %d parsed, %d refused with hllm::error\n", reader, n, o.parsed, o.refused);
  return o;
}

// `read` on mutations of the seeds (taken in turn).
template <class Read>
outcome fuzz(const char* reader, const std::vector<std::string>& seeds, const std::vector<std::string>& tokens,
             Read&& read) {
  std::mt19937_64 rng(base_seed() ^ std::hash<std::string>{}(reader));
  return run_cases(reader, [&](int i) { read(mutate(seeds[static_cast<std::size_t>(i) % seeds.size()], rng, tokens)); });
}

}  // namespace hllm::fuzzing
