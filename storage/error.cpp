#include "storage/error.hpp"

namespace hllm {

const char* to_string(errc c) {
  switch (c) {
    case errc::io: return "io";
    case errc::format: return "format";
    case errc::checksum: return "checksum";
    case errc::invalid_input: return "invalid_input";
    case errc::version: return "version";
    case errc::not_found: return "not_found";
    case errc::mismatch: return "mismatch";
  }
  return "unknown";
}

}  // namespace hllm
