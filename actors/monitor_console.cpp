#include "actors/monitor_console.hpp"

#include <httplib.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "actors/console_assets.hpp"  // generated from console/ (actors/CMakeLists.txt)
#include "actors/monitor_console_io.hpp"
#include "storage/error.hpp"

namespace hllm {

// The connection layer (connection, connection_stream, console_server, answer_and_close, ...).
using namespace console_io;

namespace {

// Compares without an early exit, so the time taken does not tell how much of a guess was right.
bool same_secret(const std::string& given, const std::string& secret) {
  if (secret.empty()) return false;
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i] ^ secret[i % secret.size()]);
  }
  return diff == 0;
}

void no_store(httplib::Response& res) {
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
}

// 32 random bytes as hex: the session key a valid ?token= is exchanged for.
std::string random_session_key() {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string key;
  for (int i = 0; i < 32; ++i) {
    const unsigned v = rd() & 0xFFu;
    key.push_back(hex[v >> 4]);
    key.push_back(hex[v & 15]);
  }
  return key;
}

// The value of cookie NAME in a Cookie header ("" when absent).
std::string cookie_value(const std::string& header, const std::string& name) {
  std::size_t at = 0;
  while (at < header.size()) {
    std::size_t end = header.find(';', at);
    if (end == std::string::npos) end = header.size();
    std::size_t b = at;
    while (b < end && (header[b] == ' ' || header[b] == '\t')) ++b;
    const std::size_t eq = header.find('=', b);
    if (eq != std::string::npos && eq < end && header.compare(b, eq - b, name) == 0) {
      std::size_t e = end;
      while (e > eq + 1 && (header[e - 1] == ' ' || header[e - 1] == '\t')) --e;
      return header.substr(eq + 1, e - eq - 1);
    }
    at = end + 1;
  }
  return "";
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr a{};
  if (::inet_pton(AF_INET, host.c_str(), &a) != 1) return false;
  return (ntohl(a.s_addr) >> 24) == 127;
}

struct monitor_console::impl {
  std::shared_ptr<const monitor> core;
  console_options opt;
  console_limits limits;
  console_server server;
  int port = 0;
  int listen_fd = -1;
  int wake_fd = -1;
  std::string session_key;
  std::string cookie_name;
  std::size_t keep_alive_max = 100;  // requests per connection

  std::atomic<std::size_t> open{0};
  std::mutex mu;  // guards everything below
  bool stopping = false;
  bool stopped = false;
  std::deque<connection*> work;      // complete heads waiting for a worker
  std::vector<connection*> returned;  // answered, kept open: back to the poll thread
  std::condition_variable work_cv;
  std::thread poller;
  std::vector<std::thread> workers;

  void wake() {
    std::uint64_t one = 1;
    (void)::write(wake_fd, &one, sizeof one);
  }
  void close_connection(connection* c) {
    // The count drops before the close, so a client that has seen the connection end finds the slot free.
    open.fetch_sub(1);
    // What the client sent and nobody read would turn the close into a reset, which can cost it the answer.
    char scratch[4096];
    for (int i = 0; i < 16 && ::recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT) > 0; ++i) {
    }
    ::shutdown(c->fd, SHUT_RDWR);
    ::close(c->fd);
    delete c;
  }
  void poll_loop();
  void worker_loop();
};

void monitor_console::impl::poll_loop() {
  std::list<connection*> reading;
  auto dispatch_or_read = [&](connection* c) {
    if (head_end(c->in) != std::string::npos) {
      {
        std::lock_guard<std::mutex> lock(mu);
        work.push_back(c);
      }
      work_cv.notify_one();
      return;
    }
    reading.push_back(c);
  };
  std::vector<pollfd> fds;
  std::vector<connection*> polled;
  for (;;) {
    std::vector<connection*> back;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) break;
      back.swap(returned);
    }
    for (connection* c : back) dispatch_or_read(c);
    // Expired connections: a started head gets 408, an idle connection is just closed.
    const auto now = clock_type::now();
    for (auto it = reading.begin(); it != reading.end();) {
      connection* c = *it;
      if (c->deadline <= now) {
        if (c->started) {
          open.fetch_sub(1);
          answer_and_close(c->fd, "408 Request Timeout", "request head not complete in time\n");
          delete c;
        } else {
          close_connection(c);
        }
        it = reading.erase(it);
      } else {
        ++it;
      }
    }
    fds.clear();
    polled.clear();
    fds.push_back({wake_fd, POLLIN, 0});
    fds.push_back({listen_fd, POLLIN, 0});
    auto next = clock_type::time_point::max();
    for (connection* c : reading) {
      fds.push_back({c->fd, POLLIN, 0});
      polled.push_back(c);
      next = std::min(next, c->deadline);
    }
    int timeout = -1;
    if (next != clock_type::time_point::max()) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - clock_type::now()).count() + 1;
      timeout = static_cast<int>(std::clamp<long long>(ms, 0, 60000));
    }
    int ready = ::poll(fds.data(), fds.size(), timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0) {
      std::uint64_t n = 0;
      (void)::read(wake_fd, &n, sizeof n);
    }
    // Connections first: a client that closed one connection and then opens another finds its slot free.
    for (std::size_t i = 0; i < polled.size(); ++i) {
      if (fds[i + 2].revents == 0) continue;
      connection* c = polled[i];
      bool gone = false;
      char buf[4096];
      for (;;) {
        ssize_t n = ::recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          if (!c->started) {
            c->started = true;
            c->deadline = clock_type::now() + std::chrono::milliseconds(limits.head_timeout_ms);
          }
          c->in.append(buf, static_cast<std::size_t>(n));
          if (head_end(c->in) != std::string::npos) break;
          if (c->in.size() > max_head_bytes) {
            reading.remove(c);
            open.fetch_sub(1);
            answer_and_close(c->fd, "431 Request Header Fields Too Large", "request head over 64 KiB\n");
            delete c;
            gone = true;
            break;
          }
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        reading.remove(c);  // closed by the client, or an error
        close_connection(c);
        gone = true;
        break;
      }
      if (!gone && head_end(c->in) != std::string::npos) {
        reading.remove(c);
        dispatch_or_read(c);
      }
    }
    if (fds[1].revents != 0) {
      for (;;) {
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          break;  // EAGAIN; or out of descriptors: the next poll tries again
        }
        if (open.load() >= limits.max_connections) {
          answer_and_close(fd, "503 Service Unavailable",
                           "the console is at its connection limit; retry in a moment\n");
          continue;
        }
        open.fetch_add(1);
        auto* c = new connection;
        c->fd = fd;
        c->remote_ip = ip_of(peer, c->remote_port);
        sockaddr_storage self{};
        len = sizeof self;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&self), &len) == 0) c->local_ip = ip_of(self, c->local_port);
        int yes = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        c->deadline = clock_type::now() + std::chrono::milliseconds(limits.idle_timeout_ms);
        reading.push_back(c);
      }
    }
  }
  for (connection* c : reading) close_connection(c);
}

void monitor_console::impl::worker_loop() {
  for (;;) {
    connection* c = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu);
      work_cv.wait(lock, [&] { return stopping || !work.empty(); });
      if (work.empty()) return;  // stopping, nothing left
      c = work.front();
      work.pop_front();
      if (stopping) {
        lock.unlock();
        close_connection(c);
        continue;
      }
    }
    const auto deadline = clock_type::now() + std::chrono::milliseconds(limits.write_timeout_ms);
    connection_stream s(*c, deadline);
    const bool last = c->answered + 1 >= keep_alive_max;
    bool closed = false;
    const bool ok = server.answer(s, last, closed);
    c->in.erase(0, s.consumed());
    ++c->answered;
    bool keep = ok && !closed && !last && !s.answer_closes();
    if (keep) {
      std::lock_guard<std::mutex> lock(mu);
      if (stopping) {
        keep = false;
      } else {
        c->started = !c->in.empty();
        c->deadline = clock_type::now() +
                      std::chrono::milliseconds(c->started ? limits.head_timeout_ms : limits.idle_timeout_ms);
        returned.push_back(c);
      }
    }
    if (keep) wake();
    else close_connection(c);
  }
}

monitor_console::monitor_console(std::shared_ptr<const monitor> core, console_options o, console_limits limits)
    : impl_(std::make_unique<impl>()) {
  impl_->core = std::move(core);
  impl_->opt = std::move(o);
  impl_->limits = limits;
  const auto& opt = impl_->opt;
  if (opt.port < 0 || opt.port > 65535) {
    throw error(errc::invalid_input, "console: port " + std::to_string(opt.port) + " is not in 0..65535");
  }
  if (opt.token.empty() && !is_loopback_host(opt.host)) {
    throw error(errc::invalid_input, "console: host '" + opt.host +
                                         "' is not a loopback address; serving beyond this host needs a token "
                                         "(--monitor-token-file, HLLM_MONITOR_TOKEN or monitor.token)");
  }
  for (char ch : opt.token) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x21 || c > 0x7e) {
      throw error(errc::invalid_input, "console: the token holds a space, a control character or non-ASCII; a token "
                                       "is printable ASCII without spaces");
    }
  }
  if (limits.max_connections < 1 || limits.idle_timeout_ms < 1 || limits.head_timeout_ms < 1 ||
      limits.write_timeout_ms < 1) {
    throw error(errc::invalid_input, "console: connection limits must be positive");
  }
  auto& srv = impl_->server;
  // SO_REUSEADDR (a restarted job gets its port back at once) but not httplib's default SO_REUSEPORT, with which a
  // second job on the same fixed port would bind too and share the requests. Close-on-exec: a process the job
  // starts never inherits the port.
  srv.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    ::fcntl(sock, F_SETFD, FD_CLOEXEC);
  });
  srv.set_payload_max_length(opt.max_body_bytes);
  if (opt.port == 0) {
    impl_->port = srv.bind_to_any_port(opt.host);
    if (impl_->port <= 0) throw error(errc::io, "console: cannot listen on " + opt.host + " (any port)");
  } else {
    if (!srv.bind_to_port(opt.host, opt.port)) {
      throw error(errc::io, "console: cannot listen on " + opt.host + ":" + std::to_string(opt.port) +
                                " (in use, or not an address of this host)");
    }
    impl_->port = opt.port;
  }
  impl_->listen_fd = srv.listen_fd();
  srv.forget_listen_fd();  // ours now: httplib's own accept loop never runs
  ::fcntl(impl_->listen_fd, F_SETFL, ::fcntl(impl_->listen_fd, F_GETFL) | O_NONBLOCK);
  ::listen(impl_->listen_fd, 128);  // httplib listens with a backlog of 5
  impl_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl_->wake_fd < 0) {
    ::close(impl_->listen_fd);
    throw error(errc::io, "console: cannot create an eventfd");
  }
  impl_->session_key = random_session_key();
  impl_->cookie_name = "hllm_session_" + std::to_string(impl_->port);

  const std::string token = opt.token;
  const std::size_t max_body = opt.max_body_bytes;
  const impl* self = impl_.get();
  srv.set_pre_routing_handler([token, max_body, self](const httplib::Request& req, httplib::Response& res) {
    if (!token.empty()) {
      auto refuse = [&res] {
        // Nothing else: no body, no hint which paths exist. Any body the request carries is not read: close.
        res.status = 401;
        res.set_header("WWW-Authenticate", "Bearer realm=\"hllm\"");
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      };
      if (req.has_param("token")) {
        // The token once, for the session cookie; then the same path without the query, so the token leaves the
        // address bar and the history. Only the console's own paths are redirected to (no open redirect).
        if (!same_secret(req.get_param_value("token"), token)) return refuse();
        const std::string to = req.path == "/api/status" || req.path == "/metrics" ? req.path : "/";
        res.status = 303;
        res.set_header("Location", to);
        res.set_header("Set-Cookie", self->cookie_name + "=" + self->session_key + "; HttpOnly; SameSite=Strict; Path=/");
        res.set_header("Cache-Control", "no-store");
        res.set_header("Referrer-Policy", "no-referrer");
        return httplib::Server::HandlerResponse::Handled;
      }
      const std::string auth = req.get_header_value("Authorization");
      const std::string bearer = "Bearer ";
      const bool ok = (auth.rfind(bearer, 0) == 0 && same_secret(auth.substr(bearer.size()), token)) ||
                      same_secret(cookie_value(req.get_header_value("Cookie"), self->cookie_name), self->session_key);
      if (!ok) return refuse();
    }
    if (req.method != "GET" && req.method != "HEAD") {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
      res.set_header("Connection", "close");
      res.set_content("method not allowed: the console is read-only (GET)\n", "text/plain; charset=utf-8");
      return httplib::Server::HandlerResponse::Handled;
    }
    // A GET has no body; httplib would not read one and the next request on the connection would start inside it.
    const std::string length = req.get_header_value("Content-Length");
    if (req.has_header("Transfer-Encoding") || (!length.empty() && length != "0")) {
      char* end = nullptr;
      unsigned long long n = std::strtoull(length.c_str(), &end, 10);
      const bool too_large = !length.empty() && (end == nullptr || *end != '\0' || n > max_body);
      res.status = too_large ? 413 : 400;
      res.set_header("Connection", "close");
      res.set_content(too_large ? "request body too large\n" : "a GET request has no body\n", "text/plain; charset=utf-8");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  srv.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 401 || !res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const char* what = res.status == 404   ? "not found (the console serves /, /api/status and /metrics)\n"
                       : res.status == 413 ? "request body too large\n"
                       : res.status == 414 ? "request line too long\n"
                                           : "bad request\n";
    res.set_content(what, "text/plain; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  }));
  auto core_ptr = impl_->core;
  srv.Get("/", [](const httplib::Request&, httplib::Response& res) {
    no_store(res);
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
                   "connect-src 'self'");
    res.set_content(console_index_html, "text/html; charset=utf-8");
  });
  srv.Get("/api/status", [core_ptr](const httplib::Request&, httplib::Response& res) {
    auto doc = core_ptr->published_status();
    no_store(res);
    res.set_content(*doc, "application/json");
  });
  srv.Get("/metrics", [core_ptr](const httplib::Request&, httplib::Response& res) {
    auto doc = core_ptr->published_metrics();
    no_store(res);
    res.set_content(*doc, "text/plain; version=0.0.4; charset=utf-8");
  });
  impl_->poller = std::thread([this] { impl_->poll_loop(); });
  const std::size_t threads = std::max<std::size_t>(1, opt.threads);
  for (std::size_t i = 0; i < threads; ++i) impl_->workers.emplace_back([this] { impl_->worker_loop(); });
}

monitor_console::~monitor_console() { stop(); }

int monitor_console::port() const { return impl_->port; }

std::size_t monitor_console::open_connections() const { return impl_->open.load(); }

std::string monitor_console::url() const {
  const std::string& h = impl_->opt.host;
  std::string host = h == "0.0.0.0" ? "127.0.0.1" : h.find(':') != std::string::npos ? "[" + h + "]" : h;
  return "http://" + host + ":" + std::to_string(impl_->port) + "/";
}

void monitor_console::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
    impl_->stopping = true;
  }
  impl_->wake();
  impl_->work_cv.notify_all();
  if (impl_->poller.joinable()) impl_->poller.join();
  for (auto& t : impl_->workers) {
    if (t.joinable()) t.join();
  }
  // Connections a worker handed back after the poll thread left.
  for (connection* c : impl_->returned) impl_->close_connection(c);
  impl_->returned.clear();
  ::close(impl_->listen_fd);
  ::close(impl_->wake_fd);
}

}  // namespace hllm
