#pragma once
// Reading and writing the safetensors format (8-byte little-endian header length, JSON header, raw data), memory
// mapped, with sharded Hugging Face checkpoints (`model.safetensors.index.json`). No torch here: tensors are views.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hllm::model {

enum class st_dtype { f64, f32, f16, bf16, i64, i32, i16, i8, u8, boolean };

const char* to_string(st_dtype d);
std::size_t element_size(st_dtype d);

struct tensor_view {
  std::string name;
  st_dtype dtype = st_dtype::f32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // not necessarily aligned: copy before reading as wider types
  std::size_t bytes = 0;
  int64_t numel() const;
};

// One memory-mapped .safetensors file. Every check (header length, JSON, dtypes, offsets within the data section,
// byte counts matching shapes) runs when it is opened; errors name the file and the tensor.
class safetensors_file {
 public:
  static std::shared_ptr<safetensors_file> open(const std::string& path);
  ~safetensors_file();
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, tensor_view>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  safetensors_file() = default;
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::map<std::string, tensor_view> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json`. Keeps the files mapped while it lives.
class safetensors_archive {
 public:
  static safetensors_archive open_dir(const std::string& dir);
  static safetensors_archive open_file(const std::string& path);

  const tensor_view* find(const std::string& name) const;
  // Throws hllm::error(not_found) naming the tensor and the directory.
  const tensor_view& at(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& where() const { return where_; }

 private:
  std::string where_;
  std::vector<std::shared_ptr<safetensors_file>> files_;
  std::map<std::string, const tensor_view*> index_;
};

// A tensor to write: bytes are copied as they are (little-endian host assumed).
struct tensor_blob {
  std::string name;
  st_dtype dtype = st_dtype::f32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::size_t bytes = 0;
};

// Writes PATH atomically (a unique temporary name beside it, fsync, rename, directory fsync: two writers of one
// path never share a temporary file). Tensors are laid out in name order.
void write_safetensors(const std::string& path, const std::vector<tensor_blob>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace hllm::model
