#pragma once
// The console's connection layer (monitor_console.cpp): what the poll thread and the workers of monitor_console
// share about one client connection, and the bridge that lets cpp-httplib parse a request head read into memory and
// write its answer to a non-blocking socket with a deadline. Internal: include it from actors/monitor_console*.cpp.
#include <httplib.h>

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>

namespace hllm::console_io {

using clock_type = std::chrono::steady_clock;

// The largest request head read into memory; a longer one gets 431. Room for cpp-httplib's own limits (a request
// line over 8 KiB: 414; a header line over 8 KiB: 400) to answer first.
constexpr std::size_t max_head_bytes = 64 * 1024;

// Where a request line's head ends (the index after the blank line), or npos while it is incomplete.
std::size_t head_end(const std::string& in);

// Writes a short fixed answer on a non-blocking socket without waiting (the send buffer of a fresh connection takes
// it whole), after draining what the client already sent so closing does not reset the answer away.
void answer_and_close(int fd, const char* status_line, const char* text);

// The numeric address of A (empty for other families); its port into PORT.
std::string ip_of(const sockaddr_storage& a, int& port);

// One client connection. The poll thread owns it while it reads a head; a worker while it answers.
struct connection {
  int fd = -1;
  std::string in;                  // bytes read and not yet consumed (a complete head, maybe more)
  bool started = false;            // a byte of the current request has arrived
  clock_type::time_point deadline;  // idle or head deadline
  std::size_t answered = 0;         // requests answered on this connection
  std::string remote_ip, local_ip;
  int remote_port = 0, local_port = 0;
};

// The stream cpp-httplib parses a request from and writes its answer to: the head comes from memory (the poll thread
// read it), the answer goes to the socket, waiting at most until the write deadline.
class connection_stream : public httplib::Stream {
 public:
  connection_stream(connection& c, clock_type::time_point write_deadline) : c_(c), deadline_(write_deadline) {}

  bool is_readable() const override { return consumed_ < c_.in.size(); }
  bool is_writable() const override { return clock_type::now() < deadline_; }
  ssize_t read(char* ptr, size_t size) override {
    // Only the head read into memory: a GET has no body (any other request is answered before a body is read).
    const std::size_t n = std::min(size, c_.in.size() - consumed_);
    std::memcpy(ptr, c_.in.data() + consumed_, n);
    consumed_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override;
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.remote_ip;
    port = c_.remote_port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.local_ip;
    port = c_.local_port;
  }
  // cpp-httplib answers 500 to a descriptor >= FD_SETSIZE when built for select(); we never select() on it.
  socket_t socket() const override { return c_.fd < FD_SETSIZE ? c_.fd : 0; }

  // Bytes of the head cpp-httplib consumed (the rest belongs to the next request on the connection).
  std::size_t consumed() const { return consumed_; }
  // The answer said `Connection: close`.
  bool answer_closes() const { return closes_; }

 private:
  void note_header(const char* ptr, std::size_t size);

  connection& c_;
  clock_type::time_point deadline_;
  std::size_t consumed_ = 0;
  std::string head_;
  bool header_done_ = false;
  bool closes_ = false;
};

// cpp-httplib's routing and answer writing, fed by our own connection handling (its own accept loop would give each
// connection a thread for as long as the client likes, and queue the rest without bound).
class console_server : public httplib::Server {
 public:
  bool answer(httplib::Stream& s, bool close_connection, bool& connection_closed) {
    return process_request(s, close_connection, connection_closed, nullptr);
  }
  int listen_fd() const { return svr_sock_; }
  void forget_listen_fd() { svr_sock_ = INVALID_SOCKET; }
};

}  // namespace hllm::console_io
