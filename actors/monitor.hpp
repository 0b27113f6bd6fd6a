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
//
// The console (issue 11): with a job directory the core also tails its metrics.jsonl (loss and validation curves,
// phases, respawns) and lists its checkpoints, and after every round it renders the console document
// (console_json: /api/status) and its Prometheus text (/metrics) once; `monitor_console` (monitor_console.hpp)
// serves those copies over HTTP from its own threads, so no request ever touches CAF or waits for a poll round.
// Everything it keeps is bounded: `history` snapshots per actor, `curve_points` per curve, `dead_kept` dead actors,
// a fixed number of validations, phases and checkpoints.
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
#include "actors/monitor_view.hpp"
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
  // The console's sources (all optional):
  std::string job_dir;                          // tails JOB/metrics.jsonl, lists JOB/checkpoints and JOB/*/best
  std::map<std::string, std::int64_t> samples_per_step;  // per trained stage (batch size x ranks): samples/s
  std::map<std::string, std::string> locations; // address -> the process (and host) it lives in
  std::size_t curve_points = 1000;              // points kept per loss curve (one curve per trained stage)
  std::size_t dead_kept = 50;                   // dead, lost or retired actors kept for the console
};

// The console's HTTP server (monitor_console.hpp); monitor_service starts one when port >= 0.
struct console_options {
  int port = -1;                                // -1: no console; 0: any free port (logged and in url())
  std::string host = "127.0.0.1";               // anything but loopback needs a token
  std::string token;                            // bearer token; empty: none (then loopback only)
  std::size_t threads = 2;                      // HTTP worker threads (the job's cores are busy training)
  std::size_t max_body_bytes = 16 * 1024;       // larger request bodies get 413
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

  // WHERE: the process (and host) it lives in, for the console; empty keeps what options.locations says.
  void add_target(const std::string& address, const std::string& where = "");
  // Stops polling the address and drops its ring (an actor the job retired on purpose, e.g. an encoder). The
  // console keeps it among the dead actors with CAUSE.
  void remove_target(const std::string& address, const std::string& cause = "retired by the job");
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
  // The console document (/api/status): snapshot_json() plus, per actor, "where", "messages_total" and
  // "messages_per_s", and "job" (phase, stage, epoch, step, steps_total, steps_per_s, samples_per_s, eta_s, loss,
  // top10, best validation per stage, respawns), "curves" ({stage: {step, loss, top10}}), "validation", "cache"
  // (coverage per shard), "checkpoints" (name, kind, bytes, mtime_unix_ms, age_s, latest, write_s), "dead",
  // "phases", "limits". docs/protocol.md "The console's HTTP surface".
  nlohmann::json console_json() const;

  // One metrics.jsonl line (a step, validation, phase, checkpoint, respawn or resume event) into the curves and
  // panels. Lines of other shapes are ignored.
  void ingest_metrics_line(const nlohmann::json& line);
  // Reads the complete lines appended to JOB/metrics.jsonl since the last call (at most 4 MiB a call; a first call
  // on a long file starts at its last 4 MiB). No-op without options.job_dir.
  void tail_metrics();
  // Lists JOB/checkpoints/* and JOB/<stage>/best with sizes and times. No-op without options.job_dir.
  void scan_checkpoints();
  // Renders console_json() and prometheus_text() once; the console serves these copies until the next call.
  void publish();
  // The copies of the last publish() (never null: the constructor publishes once).
  std::shared_ptr<const std::string> published_status() const;
  std::shared_ptr<const std::string> published_metrics() const;
  // Writes snapshot_json() to options.status_file through a temporary file and a rename. Throws hllm::error.
  void write_status_file();

  const monitor_options& options() const { return opt_; }

 private:
  struct ring {
    std::deque<status_snapshot> snapshots;
    std::uint64_t failed_in_a_row = 0;
  };
  struct curve {
    std::deque<std::int64_t> step;
    std::deque<double> loss, top10;
  };
  struct dead_actor {
    std::string name, kind, where, cause, last_state, last_error;
    std::int64_t at_unix_ms = 0;
  };
  struct checkpoint_info {
    std::string name, kind;  // kind: "checkpoint" (JOB/checkpoints/NAME) or "best" (JOB/STAGE/best)
    std::uint64_t bytes = 0;
    std::int64_t mtime_unix_ms = 0;
    bool latest = false;
  };

  void bury(const std::string& name, const std::string& cause, const ring* r);  // mu_ held
  nlohmann::json job_panel(const nlohmann::json& actors) const;                // mu_ held

  monitor_options opt_;
  mutable std::mutex mu_;
  std::vector<std::string> targets_;
  std::map<std::string, ring> rings_;
  std::chrono::steady_clock::time_point started_;
  msg::actor_state state_ = msg::actor_state::starting;
  std::uint64_t rounds_ = 0, polls_ = 0, unreachable_ = 0, files_written_ = 0, write_failures_ = 0;
  std::string last_error_;
  // The console's state (mu_).
  std::map<std::string, std::string> where_;
  std::map<std::string, curve> curves_;
  std::vector<std::string> curve_order_;         // stages in the order their first step arrived
  std::deque<nlohmann::json> validations_, phases_, respawns_;
  std::map<std::string, double> checkpoint_write_s_;  // from checkpoint events, for the checkpoints on disk
  std::deque<dead_actor> dead_;
  std::vector<checkpoint_info> checkpoints_;
  std::string last_stage_;
  nlohmann::json last_step_;
  std::uint64_t metrics_offset_ = 0, metrics_lines_ = 0, metrics_bad_lines_ = 0;
  bool metrics_started_ = false;
  std::string metrics_partial_;
  mutable std::mutex published_mu_;
  std::shared_ptr<const std::string> published_status_, published_metrics_;
};

class monitor_console;

// The running monitor: the core enrolled with the router plus the polling thread.
class monitor_service {
 public:
  // Enrolls the monitor under options.name and starts polling (the first round at once). Throws hllm::error when
  // the router refuses the name.
  // With console.port >= 0 it also serves the console: throws hllm::error (invalid_input) when the host is not
  // loopback and there is no token or the port is out of range; a port that cannot be bound is logged and the
  // monitor runs without a console (console_url() is then "").
  monitor_service(caf::actor_system& sys, router_actor router, monitor_options o, console_options console = {});
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
  std::shared_ptr<monitor> shared_core() { return core_; }
  // The console's address (http://HOST:PORT/) when options.console.port >= 0, else "".
  std::string console_url() const;
  int console_port() const;

 private:
  void loop();

  caf::actor_system& sys_;
  router_actor router_;
  std::shared_ptr<monitor> core_;
  addressable_actor actor_;
  struct thread_state;
  std::unique_ptr<thread_state> thread_;
  std::unique_ptr<monitor_console> console_;
};

}  // namespace hllm
