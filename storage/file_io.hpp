#pragma once
// Small POSIX file helpers shared by every on-disk format: read-only memory maps, durable writes, atomic replace.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hllm::storage {

// A read-only memory map of a whole file. Empty files map to {nullptr, 0}.
class mapped_file {
 public:
  static mapped_file open(const std::string& path);
  mapped_file() = default;
  mapped_file(mapped_file&& other) noexcept;
  mapped_file& operator=(mapped_file&& other) noexcept;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file();

  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
};

// The project's one atomic-write primitive: writes the bytes to a temporary file with a unique name in the same
// directory (O_EXCL), fsyncs it, renames it over `path` and fsyncs the directory. A reader (or a crash at any
// moment) sees the old file or the new one, never a truncated mix; two writers of one path never share a temporary
// name. Returns the XXH3 64-bit hash of the bytes. Throws hllm::error(io) naming the path.
uint64_t write_file_durably(const std::string& path, const void* data, std::size_t size);
// A unique temporary name beside `path` (".NAME.tmp-PID-N-RANDOM"): for writers that produce a file by other means
// (a library writing through its own stream) and publish it with publish_file.
std::string temporary_path_beside(const std::string& path);
// fsyncs `tmp`, renames it to `path` and fsyncs the directory; removes `tmp` and throws on failure.
void publish_file(const std::string& tmp, const std::string& path);
void fsync_directory(const std::string& dir);
// XXH3 64-bit of a byte range, as the hex string used in manifests.
uint64_t hash_bytes(const void* data, std::size_t size);
std::string hash_hex(uint64_t h);
// XXH3 64-bit of a whole file, read through a memory map. Throws hllm::error(io) naming the path.
uint64_t hash_file(const std::string& path);

// `dir` as an output path: absolute, lexically normal, without a trailing slash ("out/", "./out" and "out" name the
// same directory).
std::string normalize_output_path(const std::string& dir);

// Whether an output directory (or file) may be replaced, and by what: the caller's artifact kind decides.
struct replace_policy {
  std::string what;  // the artifact, for messages: "a prepared dataset", "an ANN index"
  std::string how;   // how the artifact is made, for messages: "hllm prepare", "hllm index build"
  // True when the existing `target` holds an artifact this command may replace (its manifest says so). An empty
  // directory may always be replaced. Empty function: nothing but an empty directory may be replaced.
  std::function<bool(const std::string& target)> is_same_kind;
  // Replace whatever `target` holds (the --force flag). Never overrides `protect` and never the current directory
  // or a directory above it.
  bool force = false;
  // Paths this command reads (its inputs): `target` must not be one of them nor a directory holding one.
  std::vector<std::string> protect;
};

// Refuses (hllm::error(invalid_input), one line naming the path, what it holds and how to proceed) when replacing
// `target` would delete something that is not the same kind of artifact: a directory of other files, a file, the
// current directory or one above it, an input of the command. Called before the work starts (fail fast) and again
// by replace_directory_atomically. Returns the normalized target.
std::string check_replaceable(const std::string& target, const replace_policy& policy);

// Moves the complete directory `staged` to `target` atomically after check_replaceable: if target exists, the two
// are exchanged (renameat2 RENAME_EXCHANGE) and the old content is removed afterwards, so a crash at any moment
// leaves either the old or the new directory at `target`, never a mix.
void replace_directory_atomically(const std::string& staged, const std::string& target, const replace_policy& policy);
// The same for a directory the caller itself owns and names (a job's own checkpoint step directory): no check.
void replace_directory_atomically(const std::string& staged, const std::string& target);
// The sibling staging directory for `target` (normalized): ".NAME.staging-PID", created empty.
std::string make_staging_directory(const std::string& target);

std::string read_text_file(const std::string& path);
bool path_exists(const std::string& path);

}  // namespace hllm::storage
