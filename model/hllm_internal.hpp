#pragma once
// Helpers shared by hllm.cpp and hllm_training.cpp (model internals, not an interface).
#include <algorithm>
#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "model/llama.hpp"

namespace hllm::model::detail {

inline torch::Tensor long_tensor(const std::vector<int64_t>& v) {
  return torch::from_blob(const_cast<int64_t*>(v.data()), {static_cast<int64_t>(v.size())}, torch::kInt64).clone();
}

// Host-assembled indices on the model's device (the host tensor itself on the CPU).
inline torch::Tensor long_tensor(const std::vector<int64_t>& v, const torch::Device& d) {
  return to_device(long_tensor(v), d);
}

// Sorted unique ids and, for each requested id, its row among them.
struct id_rows {
  std::vector<int32_t> unique;
  int64_t row(int32_t id) const {
    return std::lower_bound(unique.begin(), unique.end(), id) - unique.begin();
  }
};

inline id_rows unique_ids(std::vector<int32_t> ids) {
  ids.erase(std::remove(ids.begin(), ids.end(), 0), ids.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return {std::move(ids)};
}

// Rows of `ids` in `rows` (0 -> `pad_row`), as an int64 tensor on `d`.
inline torch::Tensor rows_of(const id_rows& rows, const std::vector<int32_t>& ids, int64_t pad_row, const torch::Device& d) {
  std::vector<int64_t> out(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out[i] = ids[i] == 0 ? pad_row : rows.row(ids[i]);
  }
  return long_tensor(out, d);
}

}  // namespace hllm::model::detail
