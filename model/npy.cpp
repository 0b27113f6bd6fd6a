#include "model/npy.hpp"

#include <cstdio>
#include <cstring>
#include <regex>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm::model {
namespace {

constexpr char magic[] = "\x93NUMPY";

}  // namespace

void write_npy_f32(const std::string& path, const float* data, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                       std::to_string(cols) + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64 bytes (NumPy's alignment).
  const std::size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string bytes(magic, 6);
  bytes += '\x01';
  bytes += '\x00';
  bytes += static_cast<char>(header.size() & 0xff);
  bytes += static_cast<char>(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(rows * cols) * sizeof(float));
  const std::string tmp = path + ".tmp";
  storage::write_file_durably(tmp, bytes.data(), bytes.size());
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw error(errc::io, "rename " + tmp + " -> " + path + ": " + std::strerror(errno));
  }
}

npy_matrix read_npy_f32(const std::string& path) {
  const std::string bytes = storage::read_text_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, std::string(magic, 6)) != 0 || bytes[6] != 1) {
    throw error(errc::format, path + ": not a version 1 .npy file");
  }
  const std::size_t len = static_cast<uint8_t>(bytes[8]) | (static_cast<std::size_t>(static_cast<uint8_t>(bytes[9])) << 8);
  if (10 + len > bytes.size()) {
    throw error(errc::format, path + ": header runs past the end");
  }
  const std::string header = bytes.substr(10, len);
  std::smatch m;
  static const std::regex shape(R"('descr': '<f4', 'fortran_order': False, 'shape': \((\d+), (\d+)\))");
  if (!std::regex_search(header, m, shape)) {
    throw error(errc::format, path + ": not a 2-D little-endian float32 C-order array: " + header);
  }
  npy_matrix out;
  out.rows = std::stoll(m[1]);
  out.cols = std::stoll(m[2]);
  const std::size_t n = static_cast<std::size_t>(out.rows * out.cols);
  if (bytes.size() != 10 + len + n * sizeof(float)) {
    throw error(errc::format, path + ": data size does not match the shape");
  }
  out.data.resize(n);
  std::memcpy(out.data.data(), bytes.data() + 10 + len, n * sizeof(float));
  return out;
}

}  // namespace hllm::model
