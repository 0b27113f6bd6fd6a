#pragma once
// NumPy .npy files (format version 1.0, little-endian float32, C order): what `hllm encode` and the exports write.
#include <cstdint>
#include <string>
#include <vector>

namespace hllm::model {

// Writes a [rows, cols] float32 matrix atomically (temporary file, fsync, rename).
void write_npy_f32(const std::string& path, const float* data, int64_t rows, int64_t cols);

struct npy_matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
};
// Reads a 2-D '<f4' C-order .npy (the files write_npy_f32 makes); throws hllm::error(format) otherwise.
npy_matrix read_npy_f32(const std::string& path);

}  // namespace hllm::model
