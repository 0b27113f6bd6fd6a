#include "model/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/number.hpp"

namespace hllm::model {
namespace {

// A header larger than this is not a real checkpoint (TinyLlama's is ~30 KB); refuse before allocating.
constexpr uint64_t max_header_bytes = 100u << 20;

struct dtype_name {
  st_dtype dtype;
  const char* name;
  std::size_t size;
};

constexpr dtype_name dtype_names[] = {
    {st_dtype::f64, "F64", 8}, {st_dtype::f32, "F32", 4}, {st_dtype::f16, "F16", 2},
    {st_dtype::bf16, "BF16", 2}, {st_dtype::i64, "I64", 8}, {st_dtype::i32, "I32", 4},
    {st_dtype::i16, "I16", 2}, {st_dtype::i8, "I8", 1}, {st_dtype::u8, "U8", 1},
    {st_dtype::boolean, "BOOL", 1},
};

st_dtype parse_dtype(const std::string& s, const std::string& where) {
  for (const auto& d : dtype_names) {
    if (s == d.name) {
      return d.dtype;
    }
  }
  throw error(errc::format, where + ": unknown dtype '" + s + "'");
}

std::string errno_text() { return std::strerror(errno); }

tensor_view parse_entry(const std::string& name, const nlohmann::json& e, const uint8_t* data,
                        uint64_t data_size, const std::string& file) {
  const std::string where = file + ": tensor '" + name + "'";
  tensor_view t;
  t.name = name;
  try {
    if (!e.is_object()) throw error(errc::format, where + ": header entry is not an object");
    t.dtype = parse_dtype(e.at("dtype").get<std::string>(), where);
    const nlohmann::json& shape = e.at("shape");
    const nlohmann::json& offsets = e.at("data_offsets");
    if (!shape.is_array()) throw error(errc::format, where + ": shape is not an array");
    for (const auto& d : shape) {
      if (!d.is_number_integer()) throw error(errc::format, where + ": shape holds " + d.dump(-1, ' ', true).substr(0, 40) + ", not an integer");
      t.shape.push_back(d.get<int64_t>());
    }
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned()) {
      throw error(errc::format, where + ": data_offsets is not a pair of non-negative integers");
    }
    const auto begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      throw error(errc::format, where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                                    "] outside the data section of " + std::to_string(data_size) +
                                    " bytes (file truncated?)");
    }
    t.data = data + begin;
    t.bytes = end - begin;
  } catch (const nlohmann::json::exception& ex) {
    throw error(errc::format, where + ": bad header entry: " + ex.what());
  }
  // numel * element size must equal the byte count; computed without overflow (a shape of [2^62, 8] is refused,
  // not wrapped around to a small number).
  std::optional<uint64_t> n = uint64_t{element_size(t.dtype)};
  for (int64_t d : t.shape) {
    if (d < 0) {
      throw error(errc::format, where + ": negative dimension");
    }
    if (n) n = storage::checked_mul<uint64_t>(*n, static_cast<uint64_t>(d));
  }
  if (!n || *n != t.bytes) {
    throw error(errc::format, where + ": byte count " + std::to_string(t.bytes) + " does not match shape and dtype");
  }
  return t;
}

void write_all(int fd, const void* p, std::size_t n, const std::string& path) {
  const auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw error(errc::io, "write " + path + ": " + errno_text());
    }
    c += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace

const char* to_string(st_dtype d) {
  for (const auto& x : dtype_names) {
    if (x.dtype == d) {
      return x.name;
    }
  }
  return "?";
}

std::size_t element_size(st_dtype d) {
  for (const auto& x : dtype_names) {
    if (x.dtype == d) {
      return x.size;
    }
  }
  return 0;
}

int64_t tensor_view::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) {
    n *= d;
  }
  return n;
}

std::shared_ptr<safetensors_file> safetensors_file::open(const std::string& path) {
  std::shared_ptr<safetensors_file> f(new safetensors_file());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw error(errc::io, "cannot open " + path + ": " + errno_text());
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw error(errc::io, "cannot stat " + path + ": " + errno_text());
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw error(errc::format, path + ": too short for a safetensors header (" + std::to_string(size) + " bytes)");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) {
    throw error(errc::io, "cannot map " + path + ": " + errno_text());
  }
  f->map_ = m;
  f->map_size_ = size;
  const auto* bytes = static_cast<const uint8_t*>(m);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | bytes[i];
  }
  if (header_len > max_header_bytes || header_len > size - 8) {
    throw error(errc::format, path + ": header length " + std::to_string(header_len) +
                                  " is absurd for a file of " + std::to_string(size) + " bytes");
  }
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len);
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::format, path + ": header is not JSON: " + e.what());
  }
  if (!header.is_object()) {
    throw error(errc::format, path + ": header is not a JSON object");
  }
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      // The format's metadata is a map of strings to strings (the reference implementation refuses anything else).
      if (!value.is_object()) throw error(errc::format, path + ": __metadata__ is not an object");
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) throw error(errc::format, path + ": __metadata__ '" + mk + "' is not a string");
        f->metadata_[mk] = mv.get<std::string>();
      }
      continue;
    }
    f->tensors_.emplace(key, parse_entry(key, value, data, data_size, path));
  }
  return f;
}

safetensors_file::~safetensors_file() {
  if (map_ != nullptr) {
    ::munmap(map_, map_size_);
  }
}

safetensors_archive safetensors_archive::open_file(const std::string& path) {
  safetensors_archive a;
  a.where_ = path;
  a.files_.push_back(safetensors_file::open(path));
  for (const auto& [name, view] : a.files_.back()->tensors()) {
    a.index_[name] = &view;
  }
  return a;
}

safetensors_archive safetensors_archive::open_dir(const std::string& dir) {
  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  std::ifstream index_in(index_path);
  if (!index_in) {
    safetensors_archive a = open_file(single);
    a.where_ = dir;
    return a;
  }
  nlohmann::json index;
  try {
    index_in >> index;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::format, index_path + ": " + e.what());
  }
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw error(errc::format, index_path + ": no weight_map object");
  }
  safetensors_archive a;
  a.where_ = dir;
  std::map<std::string, std::shared_ptr<safetensors_file>> shards;
  for (const auto& [name, file] : index["weight_map"].items()) {
    const std::string shard = file.get<std::string>();
    auto it = shards.find(shard);
    if (it == shards.end()) {
      it = shards.emplace(shard, safetensors_file::open(dir + "/" + shard)).first;
      a.files_.push_back(it->second);
    }
    const auto& tensors = it->second->tensors();
    auto t = tensors.find(name);
    if (t == tensors.end()) {
      throw error(errc::not_found, index_path + ": tensor '" + name + "' is not in shard " + shard);
    }
    a.index_[name] = &t->second;
  }
  return a;
}

const tensor_view* safetensors_archive::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const tensor_view& safetensors_archive::at(const std::string& name) const {
  const tensor_view* t = find(name);
  if (t == nullptr) {
    throw error(errc::not_found, where_ + ": tensor '" + name + "' is missing");
  }
  return *t;
}

std::vector<std::string> safetensors_archive::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& [name, _] : index_) {
    out.push_back(name);
  }
  return out;
}

void write_safetensors(const std::string& path, const std::vector<tensor_blob>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const tensor_blob*> order;
  for (const auto& t : tensors) {
    order.push_back(&t);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    header["__metadata__"] = metadata;
  }
  uint64_t offset = 0;
  for (const auto* t : order) {
    header[t->name] = {{"dtype", to_string(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->bytes}}};
    offset += t->bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  // A unique temporary name beside PATH (two writers of one path never share it), published by rename.
  const std::string tmp = storage::temporary_path_beside(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw error(errc::io, "cannot create " + tmp + ": " + errno_text());
  }
  try {
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) {
      len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
    }
    write_all(fd, len, 8, tmp);
    write_all(fd, text.data(), text.size(), tmp);
    for (const auto* t : order) {
      write_all(fd, t->data, t->bytes, tmp);
    }
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw error(errc::io, "close " + tmp + ": " + errno_text());
  }
  storage::publish_file(tmp, path);  // fsync, rename over PATH, fsync of the directory
}

}  // namespace hllm::model
