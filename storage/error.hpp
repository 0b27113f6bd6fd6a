#pragma once
// The project's error type outside actor handlers: a category plus a message that names what and where.
#include <stdexcept>
#include <string>

namespace hllm {

enum class errc {
  io,             // a file could not be opened, read, written or synced
  format,         // bytes on disk or on the wire are not what the format says
  checksum,       // a checksum does not match
  invalid_input,  // user-provided data (CSV, config, options) is malformed
  version,        // a format or schema version this build does not understand
  not_found,      // a requested file, tensor, item or actor does not exist
  mismatch,       // two things that must agree do not (shapes, hashes, configs)
};

const char* to_string(errc c);

class error : public std::runtime_error {
 public:
  error(errc code, const std::string& what) : std::runtime_error(what), code_(code) {}
  errc code() const { return code_; }

 private:
  errc code_;
};

}  // namespace hllm
