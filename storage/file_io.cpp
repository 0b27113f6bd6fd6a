#include "storage/file_io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "storage/error.hpp"

namespace hllm::storage {
namespace fs = std::filesystem;
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

uint64_t hash_file(const std::string& path) {
  const auto f = mapped_file::open(path);
  return hash_bytes(f.data(), f.size());
}

std::string hash_hex(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string temporary_path_beside(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  const fs::path p(path);
  // pid + counter make the name unique in this host's processes; the clock-derived part keeps a recycled pid of an
  // earlier, crashed writer from meeting its leftover (O_EXCL would refuse it anyway).
  const uint64_t n = counter.fetch_add(1);
  const auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  const uint64_t salt = XXH3_64bits_withSeed(&n, sizeof n, now ^ (static_cast<uint64_t>(::getpid()) << 32));
  const std::string name = "." + p.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                           std::to_string(n) + "-" + hash_hex(salt).substr(0, 8);
  return (p.parent_path() / name).string();
}

namespace {

std::string directory_of(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Opens `path` read-only (`flags` added), fsyncs it and closes it; `kind` names it in errors ("", " directory").
void fsync_path(const std::string& path, int flags = 0, const std::string& kind = "") {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | flags);
  if (fd < 0) throw_io("cannot open" + kind, path);
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    throw_io("cannot fsync" + kind, path);
  }
  ::close(fd);
}

}  // namespace

void publish_file(const std::string& tmp, const std::string& path) {
  try {
    fsync_path(tmp);
    if (::rename(tmp.c_str(), path.c_str()) != 0) throw_io("cannot rename '" + tmp + "' to", path);
    fsync_directory(directory_of(path));
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

uint64_t write_file_durably(const std::string& path, const void* data, std::size_t size) {
  const std::string tmp = temporary_path_beside(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw_io("cannot create", tmp);
  auto fail = [&](const char* what) {
    int e = errno;
    ::close(fd);
    std::remove(tmp.c_str());
    errno = e;
    throw_io(what, path);
  };
  const char* p = static_cast<const char*>(data);
  std::size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) fail("cannot fsync");
  if (::close(fd) != 0) {
    std::remove(tmp.c_str());
    throw_io("cannot close", path);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    errno = e;
    throw_io("cannot rename '" + tmp + "' to", path);
  }
  fsync_directory(directory_of(path));
  return hash_bytes(data, size);
}

void fsync_directory(const std::string& dir) { fsync_path(dir, O_DIRECTORY, " directory"); }

std::string normalize_output_path(const std::string& dir) {
  if (dir.empty()) throw error(errc::invalid_input, "an output path is empty");
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  std::string s = p.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

namespace {

// `inner` is `outer` or lies below it (symlinks resolved as far as the paths exist).
bool within(const fs::path& inner, const fs::path& outer) {
  std::error_code ec;
  fs::path a = fs::weakly_canonical(inner, ec);
  if (ec) a = inner;
  fs::path b = fs::weakly_canonical(outer, ec);
  if (ec) b = outer;
  const fs::path rel = a.lexically_relative(b);
  return !rel.empty() && *rel.begin() != "..";
}

std::string listing_sample(const fs::path& dir, std::size_t* count) {
  std::string names;
  std::size_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (n < 3) names += std::string(n ? ", " : "") + "'" + e.path().filename().string() + "'";
    ++n;
  }
  *count = n;
  return n > 3 ? names + ", ..." : names;
}

}  // namespace

std::string check_replaceable(const std::string& target, const replace_policy& policy) {
  const std::string t = normalize_output_path(target);
  const fs::path tp(t);
  std::error_code ec;
  const auto st = fs::symlink_status(tp, ec);
  if (ec || !fs::exists(st)) return t;
  const std::string what = policy.what.empty() ? "this command's output" : policy.what;
  if (within(fs::current_path(), tp)) {
    throw error(errc::invalid_input, "refusing to replace '" + t + "': it is the current directory or holds it; "
                                     "give --out a new directory (e.g. " + (tp / "out").string() + ")");
  }
  for (const auto& in : policy.protect) {
    if (!in.empty() && within(fs::absolute(in), tp)) {
      throw error(errc::invalid_input, "refusing to replace '" + t + "': it holds '" + in +
                                       "', an input of this command; give --out another directory");
    }
  }
  if (!fs::is_directory(st)) {
    if (policy.force) return t;
    throw error(errc::invalid_input, "refusing to replace '" + t + "': it is a file, not " + what +
                                     "; give --out another path, or pass --force to replace it");
  }
  std::size_t entries = 0;
  const std::string sample = listing_sample(tp, &entries);
  if (entries == 0) return t;
  if (policy.is_same_kind && policy.is_same_kind(t)) return t;
  if (policy.force) return t;
  throw error(errc::invalid_input,
              "refusing to replace '" + t + "': it is not " + what +
                  (policy.how.empty() ? "" : " (made by " + policy.how + ")") + " but holds " +
                  std::to_string(entries) + (entries == 1 ? " entry (" : " entries (") + sample +
                  "); give --out another directory, or pass --force to replace it and delete what it holds");
}

std::string make_staging_directory(const std::string& target) {
  const fs::path t(normalize_output_path(target));
  std::error_code ec;
  fs::create_directories(t.parent_path(), ec);
  if (ec) throw error(errc::io, "cannot create directory '" + t.parent_path().string() + "': " + ec.message());
  const fs::path staged = t.parent_path() / ("." + t.filename().string() + ".staging-" + std::to_string(::getpid()));
  fs::remove_all(staged, ec);
  if (!fs::create_directory(staged, ec)) {
    throw error(errc::io, "cannot create staging directory '" + staged.string() + "': " +
                              (ec ? ec.message() : std::string("it exists")));
  }
  return staged.string();
}

void replace_directory_atomically(const std::string& staged, const std::string& target, const replace_policy& policy) {
  replace_directory_atomically(staged, check_replaceable(target, policy));
}

void replace_directory_atomically(const std::string& staged, const std::string& target) {
  const std::string t = normalize_output_path(target);
  const std::string parent = fs::path(t).parent_path().string();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(t, ec))) {
    if (::rename(staged.c_str(), t.c_str()) != 0) throw_io("cannot rename '" + staged + "' to", t);
  } else {
    if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, t.c_str(), RENAME_EXCHANGE) != 0) {
      throw_io("cannot exchange '" + staged + "' with", t);
    }
    fs::remove_all(staged, ec);  // `staged` now holds the old content, checked above; leftovers are harmless
  }
  fsync_directory(parent);
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
