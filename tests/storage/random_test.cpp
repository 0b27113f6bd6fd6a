#include <gtest/gtest.h>

#include <vector>

#include "storage/random.hpp"

TEST(random, same_keys_same_stream_and_different_keys_differ) {
  hllm::rng a({2020, 1, 0, 5, 0}), b({2020, 1, 0, 5, 0}), c({2020, 1, 0, 6, 0});
  std::vector<uint64_t> va, vb, vc;
  for (int i = 0; i < 8; ++i) {
    va.push_back(a.next());
    vb.push_back(b.next());
    vc.push_back(c.next());
  }
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
}

TEST(random, below_stays_in_range_and_covers_it) {
  hllm::rng r(7);
  std::vector<int> hits(10, 0);
  for (int i = 0; i < 10000; ++i) {
    auto x = r.below(10);
    ASSERT_LT(x, 10u);
    ++hits[x];
  }
  for (int h : hits) EXPECT_GT(h, 800);  // 1000 expected each
}
