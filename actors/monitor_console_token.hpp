#pragma once
// The console's bearer token from a file (issue 20: a token never reaches the command line, job.toml or a log).
// Header-only and free of torch and CAF, so `hllm train` and `hllm top` read token files the same way.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "storage/error.hpp"

namespace hllm {

// The largest token file accepted (a token is one line; this is far more than any generator writes).
inline constexpr std::size_t max_monitor_token_bytes = 4096;

// Reads the console token from FILE. Refuses (hllm::error naming FILE) a file that cannot be opened, is not a
// regular file, grants any permission to group or others (mode & 077: the message names the mode and the chmod that
// fixes it), is larger than max_monitor_token_bytes, or whose token is empty or holds anything but printable ASCII
// without spaces. Trailing CR/LF are trimmed. The token's value never appears in an error message.
inline std::string load_monitor_token(const std::string& file) {
  const std::string what = "monitor token file '" + file + "'";
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) throw error(errc::io, what + ": cannot open: " + std::strerror(errno));
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } close_on_exit{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw error(errc::io, what + ": cannot stat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw error(errc::invalid_input, what + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw error(errc::invalid_input, what + " has mode " + mode +
                                         ": group or others may read or change it; make it private with "
                                         "chmod 600 '" + file + "'");
  }
  std::string token;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw error(errc::io, what + ": cannot read: " + std::strerror(errno));
    if (n == 0) break;
    token.append(buf, static_cast<std::size_t>(n));
    if (token.size() > max_monitor_token_bytes) {
      throw error(errc::invalid_input, what + " is larger than " + std::to_string(max_monitor_token_bytes) +
                                           " bytes: it must hold the token alone, on one line");
    }
  }
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
  if (token.empty()) throw error(errc::invalid_input, what + " is empty: write the token into it (one line)");
  for (std::size_t i = 0; i < token.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(token[i]);
    if (c < 0x21 || c > 0x7e) {
      throw error(errc::invalid_input, what + ": byte " + std::to_string(i + 1) +
                                           " of the token is a space, a control character or not ASCII; a token "
                                           "is printable ASCII without spaces, on one line");
    }
  }
  return token;
}

}  // namespace hllm
