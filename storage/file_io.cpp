#include "storage/file_io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "storage/error.hpp"

namespace hllm::storage {
namespace {

[[noreturn]] void throw_io(const std::string& what, const std::string& path) {
  throw error(errc::io, what + " '" + path + "': " + std::strerror(errno));
}

}  // namespace

mapped_file mapped_file::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_io("cannot open", path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw_io("cannot stat", path);
  }
  mapped_file m;
  m.path_ = path;
  m.size_ = static_cast<std::size_t>(st.st_size);
  if (m.size_ > 0) {
    void* p = ::mmap(nullptr, m.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw_io("cannot memory-map", path);
    }
    m.data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  return m;
}

mapped_file::mapped_file(mapped_file&& other) noexcept { *this = std::move(other); }

mapped_file& mapped_file::operator=(mapped_file&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = other.data_;
    size_ = other.size_;
    path_ = std::move(other.path_);
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

mapped_file::~mapped_file() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

uint64_t hash_bytes(const void* data, std::size_t size) { return XXH3_64bits(data, size); }

std::string hash_hex(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

uint64_t write_file_durably(const std::string& path, const void* data, std::size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw_io("cannot create", path);
  const char* p = static_cast<const char*>(data);
  std::size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      errno = e;
      throw_io("cannot write", path);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    throw_io("cannot fsync", path);
  }
  if (::close(fd) != 0) throw_io("cannot close", path);
  return hash_bytes(data, size);
}

void fsync_directory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_io("cannot open directory", dir);
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    throw_io("cannot fsync directory", dir);
  }
  ::close(fd);
}

void replace_directory_atomically(const std::string& staged, const std::string& target) {
  namespace fs = std::filesystem;
  fs::path parent = fs::absolute(fs::path(target)).parent_path();
  if (!fs::exists(target)) {
    if (::rename(staged.c_str(), target.c_str()) != 0) throw_io("cannot rename '" + staged + "' to", target);
  } else {
    if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0) {
      throw_io("cannot exchange '" + staged + "' with", target);
    }
    std::error_code ec;
    fs::remove_all(staged, ec);  // `staged` now holds the old content; leftovers are harmless
  }
  fsync_directory(parent.string());
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_io("cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool path_exists(const std::string& path) { return std::filesystem::exists(path); }

}  // namespace hllm::storage
