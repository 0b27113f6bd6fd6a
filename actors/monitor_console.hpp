#pragma once
// The monitor's console over HTTP (cpp-httplib; docs/operations.md "Monitor the job", docs/protocol.md "The console's
// HTTP surface"):
//   GET /            the page (console/, embedded at build time; works offline), polls /api/status every second
//   GET /api/status  monitor::console_json() as JSON
//   GET /metrics     the same as Prometheus text (format 0.0.4)
// Anything else: 404; another method: 405; a body over max_body_bytes: 413; a request head over 64 KiB: 431; a
// request line over 8 KiB or malformed: 400/414 (cpp-httplib).
//
// With a token every request needs one of
//   `Authorization: Bearer TOKEN`  (hllm top, curl, Prometheus)
//   the session cookie `hllm_session_PORT`, which a request with `?token=TOKEN` gets in exchange: the answer is
//   `303 See Other` to the same path without the query, with `Set-Cookie: hllm_session_PORT=...; HttpOnly;
//   SameSite=Strict; Path=/`. The cookie's value is a random key of this console (not the token), valid until the
//   console stops; the port in its name keeps two jobs on one host apart (browsers share cookies across ports).
// otherwise 401 with an empty body (a wrong `?token=` too). Without a token the server binds loopback only. Neither
// the token nor the session key is ever logged.
//
// Connections (slow clients cannot hold the server): one poll thread accepts and reads request heads without
// blocking; a worker thread only runs a request whose head is complete, and writes its answer within
// write_timeout. At most max_connections are open at once; one more is answered `503` at once and closed. A
// connection that sends nothing for idle_timeout is closed; one that takes longer than head_timeout from its first
// byte to the end of its head gets `408` and is closed.
//
// Handlers only copy the strings the monitor's poll thread rendered last (monitor::publish): a request never takes
// the monitor's main mutex, never talks to CAF and never waits for a poll, so the console cannot slow the job beyond
// the CPU its own threads use.
#include <memory>
#include <string>

#include "actors/monitor.hpp"
#include "actors/monitor_console_token.hpp"  // load_monitor_token

namespace hllm {

// The console's connection limits (the defaults are what a job uses).
struct console_limits {
  std::size_t max_connections = 32;  // open at once; one more gets 503 and is closed
  int idle_timeout_ms = 5000;        // no byte of a (next) request for this long: closed
  int head_timeout_ms = 2000;        // first byte to the end of the request head: 408 and closed
  int write_timeout_ms = 5000;       // an answer not written by then: closed
};

class monitor_console {
 public:
  // Binds and starts serving on its own threads. Throws hllm::error when the port cannot be bound, the host is not
  // a loopback address and there is no token, or the options are invalid.
  monitor_console(std::shared_ptr<const monitor> core, console_options o, console_limits limits = {});
  ~monitor_console();  // stop()
  monitor_console(const monitor_console&) = delete;
  monitor_console& operator=(const monitor_console&) = delete;

  int port() const;
  std::string url() const;  // http://HOST:PORT/
  // Connections open now (reading, queued or being answered): for tests and benches.
  std::size_t open_connections() const;
  // Stops accepting and joins the server thread. Idempotent.
  void stop();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

}  // namespace hllm
