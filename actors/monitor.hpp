#pragma once
// Monitor: the job's bounded time series of every actor's status (ARCHITECTURE.md: one per job, feeds the
// console). Two parts:
// - `monitor`, the plain core (no CAF): a ring of the last `history` snapshots per polled address, the latest
//   snapshot of all of them as JSON, and the monitor's own status. It answers status_request like every actor.
// - `monitor_service`, the running part: enrolls the core with the router under options.name and polls every
//   target with a status_request through the router every `interval` on its own thread (never on CAF's scheduler,
//   whose two threads run the job's actors), then writes the latest snapshot to `status_file` atomically
//   (temporary file + rename), so `cat <out>/status.json` is always a whole document while the job runs.
// An address that answers with an error (unknown receiver, timeout, refusal) or not at all is recorded as
// unreachable; its last good snapshot stays in the ring so the operator still sees what it last reported.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/actors.hpp"
#include "actors/router.hpp"
#include "messages/bodies.hpp"

namespace caf {
class actor_system;
}

namespace hllm {

struct monitor_options {
  std::string name = "monitor";                 // its own address (and the sender of its requests)
  job_ref job;
  std::vector<std::string> targets;             // addresses to poll; add_target/remove_target change them later
  std::chrono::milliseconds interval{1000};     // between the starts of two poll rounds
  std::chrono::milliseconds timeout{2000};      // per status_request; longer means unreachable
  std::size_t history = 120;                    // snapshots kept per address (the ring's length, >= 1)
  std::string status_file;                      // latest snapshot as JSON; empty: no file
};

// One poll of one address.
struct status_snapshot {
  bool reachable = false;
  msg::status_reply reply;                      // what it answered (reachable only)
  std::string error;                            // why not (unreachable only)
  std::chrono::steady_clock::time_point taken;  // for ages
  std::int64_t taken_unix_ms = 0;               // for people
};

// The core: thread-safe (the poller records from its thread, the actor answers from CAF's).
class monitor {
 public:
  explicit monitor(monitor_options o);

  // Answers status_request with the monitor's own status; anything else gets an error body.
  msg::body handle(const msg::body& request);
  msg::status_reply status() const;

  void add_target(const std::string& address);
  // Stops polling the address and drops its ring (an actor the job retired on purpose, e.g. an encoder).
  void remove_target(const std::string& address);
  std::vector<std::string> targets() const;

  // Appends one poll result to the address's ring, dropping the oldest beyond options.history.
  void record(const std::string& address, status_snapshot s);
  // Marks the end of a poll round (counted in the monitor's status).
  void round_done();
  // The monitor's own state as it reports it (running while polling, stopped after monitor_service::stop).
  void set_state(msg::actor_state s);
  // The ring of one address, oldest first (empty when never polled).
  std::vector<status_snapshot> history(const std::string& address) const;

  // The latest snapshot of every target plus the monitor's own counters (the status_file document):
  // {"monitor": {...}, "written_at_unix_ms": N, "actors": [{"name", "kind", "state", "reachable", "counters",
  //   "last_error", "restarts", "step", "uptime_s", "queue_depth", "in_flight", "age_s", "last_seen_age_s",
  //   "poll_error", "failed_polls"}, ...]} in target order.
  nlohmann::json snapshot_json() const;
  // Writes snapshot_json() to options.status_file through a temporary file and a rename. Throws hllm::error.
  void write_status_file();

  const monitor_options& options() const { return opt_; }

 private:
  struct ring {
    std::deque<status_snapshot> snapshots;
    std::uint64_t failed_in_a_row = 0;
  };

  monitor_options opt_;
  mutable std::mutex mu_;
  std::vector<std::string> targets_;
  std::map<std::string, ring> rings_;
  std::chrono::steady_clock::time_point started_;
  msg::actor_state state_ = msg::actor_state::starting;
  std::uint64_t rounds_ = 0, polls_ = 0, unreachable_ = 0, files_written_ = 0, write_failures_ = 0;
  std::string last_error_;
};

// The running monitor: the core enrolled with the router plus the polling thread.
class monitor_service {
 public:
  // Enrolls the monitor under options.name and starts polling (the first round at once). Throws hllm::error when
  // the router refuses the name.
  monitor_service(caf::actor_system& sys, router_actor router, monitor_options o);
  ~monitor_service();  // stop()
  monitor_service(const monitor_service&) = delete;
  monitor_service& operator=(const monitor_service&) = delete;

  // One poll round now, on the calling thread: every target asked in parallel, then the file written. Rounds are
  // serialised with the thread's.
  void poll_once();
  // Stops the thread (waits for a round in progress, at most one timeout), writes the file a last time, removes the
  // monitor from the router. Idempotent; call it before the actor system goes away.
  void stop();

  monitor& core() { return *core_; }

 private:
  void loop();

  caf::actor_system& sys_;
  router_actor router_;
  std::shared_ptr<monitor> core_;
  addressable_actor actor_;
  struct thread_state;
  std::unique_ptr<thread_state> thread_;
};

// Formats a status_file document as a fixed-width text table, one line per actor after a header
// (NAME KIND STATE AGE RESTARTS STEP COUNTERS LAST_ERROR), long cells cut with "~". For `hllm top`.
std::string render_status_table(const nlohmann::json& status);

}  // namespace hllm
