#pragma once
// Embedding rows whose values say which id they belong to (row of id i: i*10, i*10+1, ...): what the cache-shard
// tests put and expect back.
#include <cstdint>
#include <cstring>
#include <vector>

#include "messages/bodies.hpp"

namespace hllm::test {

inline msg::tensor rows_for(const std::vector<int32_t>& ids, int dim) {
  msg::tensor t;
  t.type = msg::dtype::f32;
  t.shape = {static_cast<int64_t>(ids.size()), dim};
  std::vector<float> v;
  for (int32_t id : ids) {
    for (int d = 0; d < dim; ++d) v.push_back(static_cast<float>(id * 10 + d));
  }
  t.data.resize(v.size() * sizeof(float));
  std::memcpy(t.data.data(), v.data(), t.data.size());
  return t;
}

}  // namespace hllm::test
