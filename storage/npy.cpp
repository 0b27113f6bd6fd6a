#include "storage/npy.hpp"

#include <cstring>

#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/number.hpp"
#include "storage/pylit.hpp"

namespace hllm::storage {
namespace {

constexpr char magic[] = "\x93NUMPY";

std::size_t matrix_bytes(int64_t rows, int64_t cols, const std::string& where) {
  const auto cells = rows < 0 || cols < 0 ? std::nullopt : checked_mul<int64_t>(rows, cols);
  const auto bytes = cells ? checked_mul<int64_t>(*cells, int64_t{sizeof(float)}) : std::nullopt;
  if (!bytes) {
    throw error(errc::format, where + ": shape (" + std::to_string(rows) + ", " + std::to_string(cols) +
                                  ") is negative or too large (rows * cols * 4 overflows 64 bits)");
  }
  return static_cast<std::size_t>(*bytes);
}

}  // namespace

void write_npy_f32(const std::string& path, const float* data, int64_t rows, int64_t cols) {
  const std::size_t data_bytes = matrix_bytes(rows, cols, "write " + path);
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
  bytes.append(reinterpret_cast<const char*>(data), data_bytes);
  // Atomic by itself (a unique temporary name beside `path`, fsync, rename): two writers of one path never collide.
  write_file_durably(path, bytes.data(), bytes.size());
}

npy_matrix read_npy_f32(const std::string& path) {
  const std::string bytes = read_text_file(path);
  if (bytes.size() < 10 || bytes.compare(0, 6, std::string(magic, 6)) != 0) {
    throw error(errc::format, path + ": not a .npy file (no \\x93NUMPY magic)");
  }
  // Version 1.0 has a 2-byte header length, 2.0 and 3.0 a 4-byte one (3.0: the header may be UTF-8).
  const auto major = static_cast<uint8_t>(bytes[6]);
  if (major < 1 || major > 3) {
    throw error(errc::version, path + ": .npy format version " + std::to_string(major) + " (this build reads 1 to 3)");
  }
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  const std::size_t prefix = 8 + len_bytes;
  if (bytes.size() < prefix) throw error(errc::format, path + ": truncated .npy header");
  std::size_t len = 0;
  for (std::size_t i = len_bytes; i-- > 0;) len = (len << 8) | static_cast<uint8_t>(bytes[8 + i]);
  if (len > bytes.size() - prefix) {
    throw error(errc::format, path + ": header length " + std::to_string(len) + " runs past the end of the file (" +
                                  std::to_string(bytes.size()) + " bytes)");
  }
  const std::string_view header(bytes.data() + prefix, len);
  nlohmann::json h;
  try {
    h = parse_python_literal(header);
  } catch (const hllm::error& e) {
    throw error(errc::format, path + ": .npy header is not a Python literal: " + e.what());
  }
  const auto field = [&](const char* key) -> const nlohmann::json& {
    if (!h.is_object() || !h.contains(key)) throw error(errc::format, path + ": .npy header has no '" + key + "'");
    return h[key];
  };
  const nlohmann::json& descr = field("descr");
  const nlohmann::json& fortran = field("fortran_order");
  const nlohmann::json& shape = field("shape");
  if (!descr.is_string() || descr.get<std::string>() != "<f4" || !fortran.is_boolean() || fortran.get<bool>() ||
      !shape.is_array() || shape.size() != 2 || !shape[0].is_number_integer() || !shape[1].is_number_integer()) {
    std::string shown(header.substr(0, 200));
    for (char& c : shown) c = static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
    throw error(errc::format, path + ": not a 2-D little-endian float32 C-order array: " + shown);
  }
  npy_matrix out;
  out.rows = shape[0].get<int64_t>();
  out.cols = shape[1].get<int64_t>();
  const std::size_t n = matrix_bytes(out.rows, out.cols, path);
  if (bytes.size() - prefix - len != n) {
    throw error(errc::format, path + ": " + std::to_string(bytes.size() - prefix - len) + " data bytes, but shape (" +
                                  std::to_string(out.rows) + ", " + std::to_string(out.cols) + ") needs " +
                                  std::to_string(n));
  }
  out.data.resize(n / sizeof(float));
  if (n > 0) std::memcpy(out.data.data(), bytes.data() + prefix + len, n);
  return out;
}

}  // namespace hllm::storage
