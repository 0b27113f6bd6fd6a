#pragma once
// Worker processes of a job (docs/operations.md "Worker processes and respawn"). With `placement.workers > 0` the
// coordinator (rank 0) starts loaders, samplers and cache shards in worker processes on its host, and item encoders
// in their own processes during the cache fill. Each worker runs its own router bound to an endpoint chosen once,
// so every other process's routes stay valid across respawns.
//
// The pool watches its workers from one thread: a worker that exits (kill -9, a crash) is started again at once;
// one whose router stops answering heartbeats for `heartbeat_timeout` (hung, stopped) is killed with SIGKILL and
// started again. Requests lost with a worker fail at their senders by timeout and are re-issued there (the step feed
// asks the next loader or sampler, or the same shard again; the cache fill re-queues the unit and refills rows a
// restarted shard lost). A worker that needs more than `max_respawns` respawns fails the job.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "actors/router.hpp"

namespace caf {
class actor_system;
}

namespace hllm {

struct worker_spec {
  std::string name;                  // "worker-0"; its router answers as router_name(name)
  std::string endpoint;              // where others connect to its router (the same for every incarnation)
  std::vector<std::string> actors;   // the actors it hosts (logs, status)
  std::vector<std::string> command;  // argv of the process; command[0] is the executable
  std::string log_file;              // its stdout and stderr are appended here ("": inherited)
};

// The address of a worker's router.
std::string worker_router_name(const std::string& worker);

struct worker_pool_options {
  std::string sender = "coordinator";  // the address heartbeats are sent from (replies come back to it)
  job_ref job;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds heartbeat_timeout{10000};
  std::chrono::milliseconds start_timeout{60000};   // from exec until its router answers; then it is killed and
                                                    // started again (a respawn never blocks the watching of others)
  int max_respawns = 10;                            // per worker
  // Called (on the pool's thread) after a worker was started again.
  std::function<void(const worker_spec& w, int respawns, const std::string& why)> on_respawn;
};

class worker_pool {
 public:
  worker_pool(caf::actor_system& sys, router_actor router, worker_pool_options o);
  ~worker_pool();  // stop_all()
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  // Routes worker_router_name(spec.name) to its endpoint, starts the process and waits until its router answers.
  // Throws hllm::error when the process cannot start or does not answer within start_timeout.
  void start(const worker_spec& spec);
  // Stops one worker (SIGTERM, SIGKILL after two seconds) and stops watching it.
  void stop(const std::string& name);
  void stop_all();

  int total_respawns() const;
  int pid_of(const std::string& name) const;  // 0 when unknown or down
  // Empty while every worker is up or being restarted; else why the pool gave up (a worker exceeded max_respawns).
  std::string failure() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hllm
