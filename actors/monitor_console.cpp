#include "actors/monitor_console.hpp"

#include <httplib.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <atomic>
#include <chrono>
#include <spdlog/spdlog.h>
#include <cstdlib>
#include <thread>

#include "actors/console_assets.hpp"  // generated from console/ (actors/CMakeLists.txt)
#include "storage/error.hpp"

namespace hllm {
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
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  bool stopped = false;
  std::atomic<bool> listen_returned{false};
};

monitor_console::monitor_console(std::shared_ptr<const monitor> core, console_options o)
    : impl_(std::make_unique<impl>()) {
  impl_->core = std::move(core);
  impl_->opt = std::move(o);
  const auto& opt = impl_->opt;
  if (opt.port < 0 || opt.port > 65535) {
    throw error(errc::invalid_input, "console: port " + std::to_string(opt.port) + " is not in 0..65535");
  }
  if (opt.token.empty() && !is_loopback_host(opt.host)) {
    throw error(errc::invalid_input, "console: host '" + opt.host +
                                         "' is not a loopback address; serving beyond this host needs a token "
                                         "(monitor.token or HLLM_MONITOR_TOKEN)");
  }
  auto& srv = impl_->server;
  const std::size_t threads = std::max<std::size_t>(1, opt.threads);
  srv.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // SO_REUSEADDR (a restarted job gets its port back at once) but not httplib's default SO_REUSEPORT, with which a
  // second job on the same fixed port would bind too and share the requests. Close-on-exec: a process the job
  // starts never inherits the port.
  srv.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    ::fcntl(sock, F_SETFD, FD_CLOEXEC);
  });
  srv.set_payload_max_length(opt.max_body_bytes);
  srv.set_tcp_nodelay(true);  // small answers: no 40 ms of Nagle + delayed ACK per request
  srv.set_read_timeout(5, 0);
  srv.set_write_timeout(5, 0);
  srv.set_keep_alive_timeout(5);
  srv.set_keep_alive_max_count(100);
  const std::string token = opt.token;
  const std::size_t max_body = opt.max_body_bytes;
  srv.set_pre_routing_handler([token, max_body](const httplib::Request& req, httplib::Response& res) {
    if (!token.empty()) {
      std::string auth = req.get_header_value("Authorization");
      const std::string bearer = "Bearer ";
      bool ok = (auth.rfind(bearer, 0) == 0 && same_secret(auth.substr(bearer.size()), token)) ||
                (req.has_param("token") && same_secret(req.get_param_value("token"), token));
      if (!ok) {
        // Nothing else: no body, no hint which paths exist. Any body the request carries is not read: close.
        res.status = 401;
        res.set_header("WWW-Authenticate", "Bearer realm=\"hllm\"");
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
      }
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
  impl_->thread = std::thread([this] {
    impl_->server.listen_after_bind();
    impl_->listen_returned = true;
  });
}

monitor_console::~monitor_console() { stop(); }

int monitor_console::port() const { return impl_->port; }

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
  }
  // httplib's stop() does nothing before listen_after_bind() has started: wait for that first.
  for (int i = 0; i < 10000 && !impl_->server.is_running() && !impl_->listen_returned; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace hllm
