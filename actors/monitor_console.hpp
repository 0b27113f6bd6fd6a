#pragma once
// The monitor's console over HTTP (cpp-httplib; docs/operations.md "Monitor the job", docs/protocol.md "The console's
// HTTP surface"):
//   GET /            the page (console/, embedded at build time; works offline), polls /api/status every second
//   GET /api/status  monitor::console_json() as JSON
//   GET /metrics     the same as Prometheus text (format 0.0.4)
// Anything else: 404; another method: 405; a body over max_body_bytes: 413; a request line or header over 8 KiB or
// malformed: 400/414 (cpp-httplib). With a token every request needs `Authorization: Bearer TOKEN` (or
// `?token=TOKEN`, which the page forwards): otherwise 401 with an empty body. Without a token the server binds
// loopback only.
//
// Handlers only copy the strings the monitor's poll thread rendered last (monitor::publish): a request never takes
// the monitor's main mutex, never talks to CAF and never waits for a poll, so the console cannot slow the job beyond
// the CPU its own threads use.
#include <memory>
#include <string>

#include "actors/monitor.hpp"

namespace hllm {

class monitor_console {
 public:
  // Binds and starts serving on its own threads. Throws hllm::error when the port cannot be bound, the host is not
  // a loopback address and there is no token, or the options are invalid.
  monitor_console(std::shared_ptr<const monitor> core, console_options o);
  ~monitor_console();  // stop()
  monitor_console(const monitor_console&) = delete;
  monitor_console& operator=(const monitor_console&) = delete;

  int port() const;
  std::string url() const;  // http://HOST:PORT/
  // Stops accepting and joins the server thread. Idempotent.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

}  // namespace hllm
