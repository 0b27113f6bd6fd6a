#pragma once
// The job driver's internals, shared by its parts (not an interface: actors/job.hpp is). One class, job_runner, whose
// members are defined by concern:
//   job.cpp              the stage plan: construction, run(), the trained stages, evaluation rows
//   job_placement.cpp    which process hosts which actor: rendezvous and config check, actors, worker processes,
//                        the monitor, and run_worker (the main of a worker process)
//   job_checkpoints.cpp  job checkpoints: choosing the one to resume, writing, retaining
//   job_cache.cpp        the embedding-cache fill and the cached item matrix
//   job_results.cpp      evaluation rows and the results table (results.json, results.md)
#include "actors/job.hpp"


#include <caf/all.hpp>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <pthread.h>
#include <unistd.h>
#include <signal.h>
#include <sstream>
#include <thread>
#include <spdlog/spdlog.h>

#include "actors/addressable.hpp"
#include "actors/cache_fill.hpp"
#include "actors/data_loader.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "actors/item_encoder.hpp"
#include "actors/monitor.hpp"
#include "actors/status_board.hpp"
#include "actors/negative_sampler.hpp"
#include "actors/router.hpp"
#include "actors/step_feed.hpp"
#include "actors/user_trainer.hpp"
#include "actors/worker_pool.hpp"
#include "messages/codec.hpp"
#include "messages/shard.hpp"
#include "model/batching.hpp"
#include "model/collective.hpp"
#include "model/ranking.hpp"
#include "model/text_baseline.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/number.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/job_checkpoint.hpp"
#include "storage/net.hpp"

namespace hllm::job_internal {

namespace fs = std::filesystem;
namespace job_checkpoint = storage::job_checkpoint;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

// The trained models, in plan order: the stage that trains one (its checkpoints and training.json under
// out/STAGE/, its [schedule] via job_spec::schedule) and its row in the results table. One list for every place
// that walks them: the resume point, the console's samples per step, the training table.
struct trained_model {
  const char* stage;
  const char* row;
};
inline constexpr trained_model trained_models[] = {{"baseline", "id-baseline"},
                                                   {"stage1", "hllm-stage1"},
                                                   {"scratch", "hllm-stage1-random"},
                                                   {"frozen", "hllm-frozen"},
                                                   {"stage2", "hllm-stage2"}};

struct result_row {
  std::string model;
  std::optional<model::ranking_metrics> all, cold;
};

inline double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

inline std::string hex(uint64_t h) { return storage::hash_hex(h); }

// job.threads = 0: the cores of this host shared by the ranks running on it (oversubscribed OpenMP threads spin
// and slow every rank down many times).
int torch_threads(const spec::job_spec& cfg, int local_ranks);

model::train_config train_config_of(const spec::stage_settings& s, int threads);

stage_spec stage_spec_of(const spec::job_spec& cfg, const std::string& name, std::uint8_t stage, int threads);

// What a process of the job needs to spawn any of the job's named data-side actors.
struct actor_home {
  std::string data_dir, out_dir;
  uint64_t seed = 0;
  uint32_t cache_shards = 1;
  int64_t num_items = 0;
  job_ref job;
  uint32_t threads = 1;
  std::string checkpoint, version;  // item encoders only: the stage-1 checkpoint and the rows' version
  std::string device = "cpu";       // item encoders only: where they compute (resolved)
};

// Spawns the actor `name` (loader-i, sampler-i, cache-shard-i or encoder-i) as a rank process or a worker does;
// the process has verified the dataset once, so the actors do not.
addressable_actor spawn_job_actor(caf::actor_system& sys, const router_actor& router, const std::string& name,
                                  const actor_home& h);

class job_runner {
 public:
  explicit job_runner(const job_options& o);

  ~job_runner();

  int run();

 private:
  void barrier();

  // Which rank's process hosts the i-th actor of a kind: rank 0, or with placement.spread the i-th rank of the
  // spread order (0..N-1, or with spread_over = "hosts" the ranks taken round-robin over the hosts).
  int home(int i) const;
  // The i-th item encoder: on placement.encoder_ranks (where the accelerators are) when set, else as home(i).
  int encoder_home(int i) const;

  // This process's host as the placement names it: HLLM_HOST_NAME (hllm launch sets it), else the host name.
  std::string host_label() const;

  // Hosts read their own --config and --set: every rank publishes the hash of its whole effective config and its
  // host, and a mismatch stops every rank with one line naming both ranks and hosts (instead of training two
  // different jobs into one directory). Then the spread order over hosts is known.
  void check_same_config();

  // Rank 0 prints which host runs what at the start ("placement: ..." lines).
  void print_placement() const;

  // The i-th actor of a kind: spawned here when this process is its home (its spawn enrolls it), else its name is
  // routed to the router of the process that hosts it.
  void place(const std::string& name, int i);

  // What this process's data-side actors are spawned with (the dataset was verified once, by data_).
  actor_home home_of_actors() const;

  // Local actors are enrolled by their spawn; remote names are routed to their process's router.
  void route_remote(const std::string& name, int rank);

  template <class F>
  void phase(const char* name, F&& f) {
    auto t0 = clock_type::now();
    if (coordinator_board_) coordinator_board_->set_counter(std::string("phase.") + name + ".started", 1);
    spdlog::info("== {} ==", name);
    f();
    if (pool_ && !pool_->failure().empty()) throw error(errc::io, pool_->failure());
    double s = since(t0);
    log_->write(json{{"event", "phase"}, {"phase", name}, {"seconds", s}}.dump());
    if (coordinator_board_) coordinator_board_->set_counter(std::string("phase.") + name + ".ms", static_cast<int64_t>(s * 1000));
    spdlog::info("== {} done in {:.1f}s ==", name, s);
  }

  // The incarnation of this job directory: 0 for the first run, one more for every start after it (a resume, a
  // restart after a failure). Every envelope carries it; routers drop envelopes of another epoch, so messages of a
  // previous incarnation (a late reply, a worker left over) never reach this one.
  uint32_t next_job_epoch();

  void start_actors();

  // ---- worker processes (placement.workers > 0; actors/worker_pool.hpp) ----

  // Where others connect to a port of rank 0's host.
  std::string connect_host() const;

  // Loaders, samplers and cache shards in placement.workers processes on rank 0's host (actor i of a kind on
  // worker i % workers), started and watched by rank 0; every rank routes their names to the workers' endpoints,
  // which stay the same when a worker is started again.
  void start_workers();

  worker_pool_options pool_options();

  // Writes OUT/workers/NAME.json (what the worker hosts, its endpoint and routes) and the command that runs it.
  worker_spec worker_spec_of(const std::string& name, int port, const std::vector<std::string>& actors,
                             const json& extra);

  // Rank 0 watches every actor of the job and keeps `status.json` current (docs/operations.md).
  void start_monitor();

  step_feed_options feed_options(const stage_spec& spec) const;

  int64_t steps_per_epoch(const stage_spec& spec) const;

  // ---- checkpoints and resume (docs/operations.md "Checkpoints and resume", storage/job_checkpoint.hpp) ----

  // Picks the checkpoint this run continues from: rank 0 decides (skipping, and reporting, truncated, corrupt and
  // foreign ones) and tells the other ranks through the rendezvous store, so every rank restores the same one.
  void choose_resume();

  std::string first_trained_stage() const;

  static bool logged_a_step(const std::string& metrics_path);

  // A stage-2 checkpoint trained against another cache version than the stage-1 best on disk is unusable.
  std::string cache_problem(const json& state);

  enum class stage_start { fresh, resume, done };

  // What this run does with a trainer stage: skip it (completed before), continue it from the checkpoint, or
  // train it from the start.
  stage_start start_of(const stage_spec& spec);

  train_progress resumed_progress() const;

  // One checkpoint as an atomic unit: written under checkpoints/.tmp-NAME, fsynced, hashed into a manifest,
  // renamed to checkpoints/NAME; `latest` is replaced last. Any failure (unwritable directory, full disk) stops the
  // job with the previous checkpoints untouched.
  void write_checkpoint(const model::trainer& net, const stage_spec& spec, const train_progress& p);

  stage_outcome train(model::trainer& net, const stage_spec& spec, const train_progress* from = nullptr);

  void record(const std::string& name, const std::vector<int64_t>& ranks);

  void popularity() { record("popularity", model::popularity_ranks(table_, test_)); }

  stage_spec schedule_of(const std::string& name, std::uint8_t key) const;
  std::string train_stage(const std::string& name, std::uint8_t key, const model::hllm_config& fresh);
  void train_and_record(const std::string& name, std::uint8_t key, model::item_source source, const std::string& row);
  model::hllm_config model_config_of(const std::string& name, model::item_source source) const;
  void baseline();
  void frozen();
  void scratch();
  void text_only();

  void stage1();

  std::string stage1_checkpoint();

  // Coordinator side of the cache fill: work units of item ids, dispatched to encoders (one unit in flight per
  // encoder), recorded in a ledger when their rows are in the shards, so an interrupted fill resumes.
  void cache_fill();

  // With worker processes, each item encoder runs in a process of its own for the fill (watched and respawned like
  // the other workers; a unit lost with it is re-queued), then stops: the frozen Item LLM is not needed any more.
  void cache_fill_in_workers(const std::string& ckpt);

  void dispatch_cache_fill();

  // The version tag of the cached rows: the hash of stage 1's checkpoint, computed once (it reads the whole file).
  const std::string& cache_version();

  // The item matrix [(num_items + 1) x hidden] from the cache shards (row 0 zeros): stage 2 and evaluation read
  // item embeddings only from here, never from the Item LLM.
  std::vector<float> cache_matrix();

  void stage2();

  // Test metrics of the HLLM models, evaluated against the cached item matrix.
  void test();

  void write_results();

  job_options opt_;
  spec::job_spec cfg_;
  storage::dataset data_;
  model::item_text_table texts_;
  model::interaction_table table_;
  std::string metrics_path_;
  bool earlier_steps_logged_ = false;
  std::unique_ptr<metrics_log> log_;
  bool chief_ = true;
  int threads_ = 1;
  std::unique_ptr<worker_pool> pool_;              // rank 0 with placement.workers > 0
  std::vector<std::string> workers_;               // names of the long-lived workers (rank 0)
  std::map<std::string, std::string> worker_endpoint_;  // actor hosted by a worker -> its router's endpoint
  std::vector<int> encoder_ports_;                 // of the encoders' processes (started for the cache fill)
  std::unique_ptr<model::process_group> group_;
  std::unique_ptr<monitor_service> monitor_;
  std::shared_ptr<status_board> trainer_board_, coordinator_board_;
  std::vector<std::string> endpoints_;
  job_ref job_;
  bool spread_over_hosts_ = false;
  std::vector<int> encoder_ranks_;       // placement.encoder_ranks
  std::vector<int> spread_order_;        // with spread_over = "hosts": ranks round-robin over hosts
  std::vector<std::string> rank_hosts_;  // "name (address)" of every rank's host (several ranks only)
  model::eval_set valid_, test_;
  std::vector<bool> test_cold_;
  std::unique_ptr<caf::actor_system_config> caf_cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  router_actor router_;
  std::vector<addressable_actor> actors_;
  std::vector<std::string> loaders_, samplers_;
  std::string stage1_dir_, stage2_dir_, version_;
  int64_t serial_ = 0;                  // of the newest checkpoint on disk; the next one gets serial_ + 1
  std::vector<std::string> completed_;  // trainer stages of the plan finished (the coordinator's ledger)
  std::string resume_dir_;              // the checkpoint this run continues from ("" none)
  json resume_state_;
  std::map<std::string, result_row> rows_;
  std::map<std::string, double> speeds_;
};

}  // namespace hllm::job_internal
