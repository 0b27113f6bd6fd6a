#include "storage/net.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "storage/error.hpp"

namespace hllm::storage {

std::uint16_t free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok) throw error(errc::io, "cannot find a free TCP port on 127.0.0.1");
  return ntohs(a.sin_port);
}

}  // namespace hllm::storage
