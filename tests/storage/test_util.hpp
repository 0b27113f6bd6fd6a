#pragma once
// Helpers for storage tests (and others): temporary directories, small files, the environment.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "../../storage/error.hpp"  // by path: some test binaries have no project include directory

namespace hllm::test {

class temp_dir {
 public:
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "hllm-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The environment variable `name`, or "" when it is not set.
inline std::string env_or_empty(const char* name) {
  const char* p = std::getenv(name);
  return p == nullptr ? "" : p;
}

// What `f` threw as an hllm::error: whether it threw one, its code and its message.
struct caught_error {
  bool thrown = false;
  errc code = errc::io;
  std::string what;
};
template <class F>
caught_error error_from(F&& f) {
  try {
    f();
  } catch (const hllm::error& e) {
    return {true, e.code(), e.what()};
  }
  return {};
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace hllm::test
