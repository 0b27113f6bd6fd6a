#include "actors/monitor_console_io.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace hllm::console_io {

std::size_t head_end(const std::string& in) {
  const std::size_t crlf = in.find("\r\n\r\n");
  const std::size_t lf = in.find("\n\n");
  std::size_t end = std::string::npos;
  if (crlf != std::string::npos) end = crlf + 4;
  if (lf != std::string::npos && lf + 2 < end) end = lf + 2;
  return end;
}

void answer_and_close(int fd, const char* status_line, const char* text) {
  char scratch[4096];
  while (::recv(fd, scratch, sizeof scratch, MSG_DONTWAIT) > 0) {
  }
  std::string body = text;
  std::string msg = std::string("HTTP/1.1 ") + status_line + "\r\nContent-Type: text/plain; charset=utf-8\r\n" +
                    "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" +
                    "Cache-Control: no-store\r\n" + (status_line[0] == '5' ? "Retry-After: 1\r\n" : "") + "\r\n" +
                    body;
  (void)::send(fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  ::close(fd);
}

std::string ip_of(const sockaddr_storage& a, int& port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    port = ntohs(v6->sin6_port);
  }
  return buf;
}

ssize_t connection_stream::write(const char* ptr, size_t size) {
  if (!header_done_) note_header(ptr, size);
  std::size_t sent = 0;
  while (sent < size) {
    ssize_t n = ::send(c_.fd, ptr + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - clock_type::now()).count();
      if (left <= 0) return -1;
      pollfd p{c_.fd, POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000))) < 0 && errno != EINTR) return -1;
      continue;
    }
    return -1;
  }
  return static_cast<ssize_t>(size);
}

void connection_stream::note_header(const char* ptr, std::size_t size) {
  head_.append(ptr, size);
  // An answer to a request cpp-httplib could not parse (400, 414, ...) or refused: the connection ends with it,
  // since what follows in it cannot be trusted to start a request.
  if (head_.size() >= 12 && head_.compare(0, 5, "HTTP/") == 0) {
    const char d = head_[9];
    if (d == '4' || d == '5') closes_ = true;
  }
  std::string lower = head_;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.find("\r\nconnection: close\r\n") != std::string::npos) closes_ = true;
  if (head_.find("\r\n\r\n") != std::string::npos || head_.size() > max_head_bytes) header_done_ = true;
}

}  // namespace hllm::console_io
