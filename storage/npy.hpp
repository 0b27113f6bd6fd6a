#pragma once
// NumPy .npy files (format version 1.0, little-endian float32, C order): what `hllm encode` and the exports write.
#include <cstdint>
#include <string>
#include <vector>

namespace hllm::storage {

// Writes a [rows, cols] float32 matrix atomically (write_file_durably: a unique temporary name beside
// PATH, fsync, rename, directory fsync).
void write_npy_f32(const std::string& path, const float* data, int64_t rows, int64_t cols);

struct npy_matrix {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
};
// Reads a 2-D '<f4' C-order .npy (format 1.0 to 3.0; the files write_npy_f32 makes and numpy.save of such an
// array). Throws hllm::error(format) naming the file for anything else: a bad header, a shape whose byte count
// overflows 64 bits, a data section of another size than the shape needs.
npy_matrix read_npy_f32(const std::string& path);

}  // namespace hllm::storage
