// Actor job pipeline benchmark (issue 5): what the actor plumbing costs the trainer, what the embedding cache buys,
// how fast one cache shard serves rows, and what a second data-parallel rank gives.
//
// (a) Pipeline efficiency: the same model::trainer, in the same run, fed alternately by the actor pipeline (a
//     step_feed asking data_loader and negative_sampler actors through a router, and in stage 2 the
//     embedding-cache shards for every step's distinct ids, as actors/job.cpp does) and by batches built beforehand
//     in memory (model::make_train_batch / sample_negatives, and in stage 2 the rows of the same ids from the same
//     matrix the shards were filled with, so the same bytes). Blocks of steps alternate so machine load hits both
//     alike. Samples/s is wall time around `next batch + step`. Stage 1 (text items) and stage 2 (cache items: a
//     trainer without an item matrix, reading each batch's rows). Twice: the loaders, sampler and cache shards in
//     this process (in-process router), and in a worker process (`hllm-train --worker`, started by
//     hllm::worker_pool as the job does with placement.workers > 0; both routers on tcp loopback).
// (b) Stage 2 vs stage 1: time per sample of the trainer at the same sequence length, item_source text against
//     item_source cache (rows carried by the batch), on the same pre-built batches, alternating blocks.
// (c) Cache lookup rows/s of one embedding_cache_shard actor, through an in-process router and over tcp loopback
//     (two routers in this process, each with its own ZeroMQ context and I/O thread).
// (d) Scaling: the real `hllm train` (child processes), stage 1 only, one epoch on a smaller dataset of the same
//     kind, with --world 1 and --world 2 (per-rank batch the same; job.threads = 0 shares the cores among ranks),
//     alternating; total samples/s = the trainer's samples/s (results.json) times the world size.
// Model: the embedded default job config ([model], [stage1], [stage2]; model config built as actors/job.cpp does).
//
// usage: job_bench [--data DIR] [--work DIR] [--seconds S] [--scaling-users N] [--scaling-rounds R] [--only PARTS]
//   --data: a prepared dataset; default: `hllm synth` + `hllm prepare --train-tokenizer 2000 --max-text-tokens 32`
//   into WORK/prepared (default WORK: bench-out/job), run as child processes (sentencepiece never loads here).
//   --seconds: time budget of the stage-1 efficiency measurement (default 30); the others take shares of it.
//   --scaling-users: users of the scaling dataset (default 2560: 40 steps at world 1); --scaling-rounds: world 1
//   and world 2 runs each (default 2; 0 skips the scaling).
//   --only PARTS: comma-separated parts to run (stage1, stage2, polling, worker1, worker2, cost, lookups, scaling).
// CAF is configured as in the job's processes (configure_actor_system: idle workers do not poll), except in the
// `polling` part, which measures stage 2 with CAF's default polling for comparison.
// Prints a Markdown table (docs/benchmarks.md, section "Actor job pipeline").
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <map>
#include <string>
#include <vector>

#include "actors/job.hpp"
#include "bench/child_process.hpp"
#include "actors/data_loader.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "messages/shard.hpp"
#include "actors/negative_sampler.hpp"
#include "actors/router.hpp"
#include "actors/step_feed.hpp"
#include "actors/worker_pool.hpp"
#include "launch/default_job.hpp"
#include "launch/job_config.hpp"
#include "model/batching.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "storage/net.hpp"
#include "storage/random.hpp"

namespace {

using namespace hllm;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string bin_dir() { return std::filesystem::read_symlink("/proc/self/exe").parent_path().string(); }

// CPU seconds (user + system) of this process, all threads.
double process_cpu_s() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

// CPU seconds of another process (utime + stime of /proc/PID/stat, clock ticks); 0 when it is gone.
double process_cpu_s(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(text.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int k = 3; k <= 15 && fields >> f; ++k) {
    if (k == 14) utime = std::stod(f);
    if (k == 15) stime = std::stod(f);
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Generated once into WORK; rerunning the bench reuses it. users > 0: `hllm synth --users` (else its default).
std::string make_dataset(const std::string& work, int users = 0) {
  std::string bin = bin_dir();
  std::string prepared = work + "/prepared";
  if (std::filesystem::exists(prepared + "/manifest.json")) return prepared;
  std::fprintf(stderr, "generating the embedded synthetic dataset into %s (hllm synth + hllm prepare) ...\n",
               work.c_str());
  std::vector<std::string> synth = {bin + "/hllm", "synth", "--out", work + "/csv"};
  if (users > 0) synth.insert(synth.end(), {"--users", std::to_string(users)});
  if (bench::run_child(synth).status != 0 ||
      bench::run_child({bin + "/hllm", "prepare", "--interactions", work + "/csv/interactions.csv", "--items",
                        work + "/csv/items.csv", "--out", prepared, "--train-tokenizer", "2000", "--max-text-tokens", "32",
                        "--quiet"}).status != 0) {
    throw error(errc::io, "could not generate the benchmark dataset in '" + work + "'");
  }
  return prepared;
}

// Runs a command as a child process with its stdout and stderr appended to `log` (the bench's stdout is the table).
bench::child_result run_logged(const std::vector<std::string>& args, const std::string& log) {
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw error(errc::io, "cannot open '" + log + "'");
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  auto t0 = clock_type::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fd);
  int status = 0;
  struct rusage ru {};
  ::wait4(pid, &status, 0, &ru);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, since(t0), ru.ru_maxrss};
}

struct stage_shape {
  std::uint8_t stage = 1;
  std::uint32_t batch = 64, seq_len = 10, negatives = 256;
  model::train_config train;
};

stage_shape shape_of(const json& cfg, const char* name, std::uint8_t stage) {
  const json& s = cfg.at(name);
  stage_shape out;
  out.stage = stage;
  out.batch = s.at("batch_size").get<uint32_t>();
  out.seq_len = s.at("seq_len").get<uint32_t>();
  out.negatives = s.at("negatives").get<uint32_t>();
  out.train.lr = s.at("lr").get<double>();
  out.train.weight_decay = s.at("weight_decay").get<double>();
  out.train.warmup_share = s.at("warmup_share").get<double>();
  out.train.clip_norm = s.at("clip_norm").get<double>();
  out.train.bf16 = s.at("bf16").get<bool>();
  out.train.threads = cfg.at("job").at("threads").get<int>();
  out.train.total_steps = 100000;  // the learning-rate schedule does not change the cost of a step
  return out;
}

// The item matrix the cache shards are filled with and the pre-built stage-2 batches read their rows from:
// (num_items + 1) x hidden, row 0 zeros, fixed random rows (the cost does not depend on their values).
struct item_matrix {
  std::int64_t hidden = 0, num_items = 0;
  std::vector<float> data;
  const float* row(std::int64_t id) const { return data.data() + id * hidden; }
};

// What the step feed attaches in stage 2: the batch's distinct nonzero ids, ascending, and their rows.
void attach_rows(model::train_batch& b, const item_matrix& m) {
  b.row_ids.clear();
  for (const auto* v : {&b.items, &b.negatives}) {
    for (std::int32_t id : *v) {
      if (id > 0) b.row_ids.push_back(id);
    }
  }
  std::sort(b.row_ids.begin(), b.row_ids.end());
  b.row_ids.erase(std::unique(b.row_ids.begin(), b.row_ids.end()), b.row_ids.end());
  const auto h = static_cast<std::size_t>(m.hidden);
  b.rows.resize(b.row_ids.size() * h);
  for (std::size_t k = 0; k < b.row_ids.size(); ++k) std::memcpy(b.rows.data() + k * h, m.row(b.row_ids[k]), h * sizeof(float));
}

// What data_loader::batch_of and negative_sampler::negatives_of answer for rank 0 of world 1, built directly.
class batch_maker {
 public:
  batch_maker(const model::interaction_table& t, std::uint64_t seed)
      : table_(t), seed_(seed), trainable_(model::trainable_users(t)), candidates_(model::training_items(t)) {}

  std::int64_t steps_per_epoch(std::uint32_t batch) const {
    return static_cast<std::int64_t>(trainable_.size()) / batch;
  }

  model::train_batch make(const stage_shape& s, std::uint32_t epoch, std::uint64_t step) {
    auto key = std::make_pair(s.stage, epoch);
    auto it = orders_.find(key);
    if (it == orders_.end()) {
      it = orders_.emplace(key, model::epoch_order(trainable_, stream_seed({seed_, s.stage}), epoch)).first;
    }
    auto first = it->second.begin() + static_cast<std::ptrdiff_t>(step * s.batch);
    std::vector<std::int64_t> users(first, first + s.batch);
    auto b = model::make_train_batch(table_, users, s.seq_len);
    b.negatives = model::sample_negatives(candidates_, s.negatives, seed_, s.stage, epoch,
                                          static_cast<std::int64_t>(step), 0);
    return b;
  }

 private:
  const model::interaction_table& table_;
  std::uint64_t seed_;
  std::vector<std::int64_t> trainable_;
  std::vector<std::int32_t> candidates_;
  std::map<std::pair<std::uint8_t, std::uint32_t>, std::vector<std::int64_t>> orders_;
};

std::vector<std::string> endpoints_of(caf::scoped_actor& self, const router_actor& r) {
  std::vector<std::string> out;
  self->request(r, caf::infinite, atom::endpoints_v).receive([&](std::vector<std::string>& e) { out = e; },
                                                             [](const caf::error&) {});
  if (out.empty()) throw error(errc::io, "router has no endpoint");
  return out;
}

// Puts rows into the shard `name` (reachable through `router`), 4096 ids per request, from "bench-client".
void put_rows(caf::actor_system& sys, router_actor router, const std::string& name, const std::string& version,
              const std::vector<std::int32_t>& ids, std::uint32_t dim,
              const std::function<const float*(std::int32_t)>& row_of) {
  caf::scoped_actor self{sys};
  const std::size_t chunk = 4096;
  for (std::size_t first = 0; first < ids.size(); first += chunk) {
    msg::cache_put p;
    p.model_version = version;
    p.item_ids.assign(ids.begin() + static_cast<std::ptrdiff_t>(first),
                      ids.begin() + static_cast<std::ptrdiff_t>(std::min(first + chunk, ids.size())));
    p.rows.type = msg::dtype::f32;
    p.rows.shape = {static_cast<std::int64_t>(p.item_ids.size()), dim};
    p.rows.data.resize(p.item_ids.size() * dim * sizeof(float));
    for (std::size_t k = 0; k < p.item_ids.size(); ++k) {
      std::memcpy(p.rows.data.data() + k * dim * sizeof(float), row_of(p.item_ids[k]), dim * sizeof(float));
    }
    std::string failure = "no reply";
    self->request(router, caf::infinite, atom::request_v,
                  make_request("bench-client", name, p, {}, std::chrono::milliseconds(30000)))
        .receive([&](const msg::buffer& b) { failure = reply_failure(b); },
                 [&](const caf::error& e) { failure = caf::to_string(e); });
    if (!failure.empty()) throw error(errc::io, "filling " + name + " failed: " + failure);
  }
}

const char* const bench_version = "bench";

// Where the loaders, samplers and cache shards of (a) live and how many there are.
struct setup_options {
  std::string data;
  std::uint64_t seed = 0;
  int loaders = 2, samplers = 1;
  std::uint32_t shards = 2;        // cache shards (cache-shard-<i>, ids i mod shards), filled from `matrix`
  const item_matrix* matrix = nullptr;
  // CAF's default scheduler (idle workers poll: 500 sleeps of 50 us, i.e. ~20k wake-ups/s per worker for ~30 ms
  // after every message) instead of the job's (configure_actor_system: no moderate polling). Comparison only.
  bool caf_default_polling = false;
  // Non-empty: loaders, samplers and shards in one worker process (`hllm-train --worker DIR/workers/worker-0.json`,
  // started and watched by a worker_pool, as actors/job.cpp does with placement.workers = 1); its router and this
  // process's router on tcp loopback. Empty: in this process, one router without endpoints (the one-process job).
  std::string worker_dir;
};

struct actor_setup {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  router_actor router;
  std::vector<addressable_actor> actors;
  std::vector<std::string> loaders, samplers;
  std::uint32_t shards = 0;
  std::unique_ptr<worker_pool> pool;
  int worker_pid = 0;

  explicit actor_setup(const setup_options& o) : shards(o.shards) {
    configure_actor_system(cfg);
    if (o.caf_default_polling) cfg.set("work-stealing.moderate-poll-attempts", std::size_t{500});  // CAF's default
    sys = std::make_unique<caf::actor_system>(cfg);
    router_config rc;
    if (o.worker_dir.empty()) rc.bind = {};  // one process, as the single-process job
    else rc.bind = {"tcp://127.0.0.1:*"};
    router = spawn_router(*sys, rc);
    for (int i = 0; i < o.loaders; ++i) loaders.push_back("loader-" + std::to_string(i));
    for (int i = 0; i < o.samplers; ++i) samplers.push_back("sampler-" + std::to_string(i));
    std::vector<std::string> shard_names;
    for (std::uint32_t i = 0; i < o.shards; ++i) shard_names.push_back(msg::shard_name(i));
    if (o.worker_dir.empty()) {
      for (const auto& n : loaders) actors.push_back(spawn_data_loader(*sys, router, {n, o.data, o.seed}));
      for (const auto& n : samplers) actors.push_back(spawn_negative_sampler(*sys, router, {n, o.data, o.seed}));
      for (std::uint32_t i = 0; i < o.shards; ++i) {
        embedding_cache_shard_options so;
        so.name = shard_names[i];
        so.shard = i;
        so.shard_count = o.shards;
        so.num_items = o.matrix->num_items;
        actors.push_back(spawn_embedding_cache_shard(*sys, router, so));
      }
    } else {
      start_worker(o, shard_names);
    }
    // The rows the job's cache fill would have put there: ids with id % shards == shard.
    for (std::uint32_t i = 0; i < o.shards; ++i) {
      std::vector<std::int32_t> ids;
      for (std::int64_t id = i == 0 ? o.shards : i; id <= o.matrix->num_items; id += o.shards) {
        ids.push_back(static_cast<std::int32_t>(id));
      }
      put_rows(*sys, router, shard_names[i], bench_version, ids, static_cast<std::uint32_t>(o.matrix->hidden),
               [&](std::int32_t id) { return o.matrix->row(id); });
    }
  }

  // The spec format of actors/job.cpp (worker_spec_of / run_worker).
  void start_worker(const setup_options& o, const std::vector<std::string>& shard_names) {
    namespace fs = std::filesystem;
    const std::string dir = fs::absolute(o.worker_dir).string();
    fs::remove_all(dir);  // no shard files of an earlier run (a shard reloads DIR/cache on start)
    fs::create_directories(dir + "/workers");
    caf::scoped_actor self{*sys};
    const std::string mine = endpoints_of(self, router).at(0);
    const std::string ep = "tcp://127.0.0.1:" + std::to_string(storage::free_tcp_port());
    std::vector<std::string> hosted = loaders;
    hosted.insert(hosted.end(), samplers.begin(), samplers.end());
    hosted.insert(hosted.end(), shard_names.begin(), shard_names.end());
    for (const auto& a : hosted) add_route(*sys, router, a, ep);
    // Replies travel by address: the feed ("trainer-0"), the pool's heartbeats ("coordinator") and the fill.
    json routes{{"trainer-0", mine}, {"coordinator", mine}, {"bench-client", mine}};
    json spec{{"name", "worker-0"},
              {"bind", ep},
              {"job_id", 0},
              {"job_epoch", 0},
              {"data", fs::absolute(o.data).string()},
              {"out", dir},
              {"seed", o.seed},
              {"cache_shards", o.shards},
              {"threads", 1},
              {"actors", hosted},
              {"routes", routes}};
    const std::string spec_path = dir + "/workers/worker-0.json";
    std::ofstream(spec_path) << spec.dump(1) << "\n";
    worker_spec w;
    w.name = "worker-0";
    w.endpoint = ep;
    w.actors = hosted;
    w.command = {bin_dir() + "/hllm-train", "--worker", spec_path};
    w.log_file = dir + "/workers/worker-0.log";
    worker_pool_options po;
    po.sender = "coordinator";
    pool = std::make_unique<worker_pool>(*sys, router, po);
    pool->start(w);
    worker_pid = pool->pid_of(w.name);
  }

  ~actor_setup() {
    pool.reset();  // stops the worker
    for (auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
  }
};

struct efficiency {
  double pipeline_sps = 0, direct_sps = 0;
  std::int64_t steps_each = 0;
  std::vector<double> round_ratios;  // per round: pre-built time / actor time of two adjacent blocks
  double ids_per_row = 0;            // stage 2: ids in the steps / distinct ids looked up
  int respawns = 0;                  // of the worker (must stay 0)
  // Where the actor blocks' time goes, per step: waiting in feed.next(), and in net.step() (against the pre-built
  // blocks' step); CPU seconds of this process (all threads) and of the worker process per step, both paths.
  double wait_ms = 0, step_ms = 0, direct_step_ms = 0;
  double cpu_ms = 0, direct_cpu_ms = 0, worker_cpu_ms = 0, direct_worker_cpu_ms = 0;
  double ratio() const { return direct_sps > 0 ? pipeline_sps / direct_sps : 0; }
  double median() const {
    auto r = round_ratios;
    std::sort(r.begin(), r.end());
    return r.empty() ? 0 : r.size() % 2 ? r[r.size() / 2] : (r[r.size() / 2 - 1] + r[r.size() / 2]) / 2;
  }
};

// (a): blocks of `block` steps, alternately pre-built and through the actors (which one first alternates too),
// until `budget` seconds have passed. Stage 2: the feed looks the rows up in the shards; the pre-built batches
// carry the same rows from `matrix`.
efficiency pipeline_efficiency(actor_setup& actors, const json& job, model::trainer& net, batch_maker& maker,
                               const stage_shape& s, const item_matrix& matrix, std::uint32_t window, int block,
                               double budget, const char* label) {
  step_feed_options f;
  f.name = "trainer-0";
  f.loaders = actors.loaders;
  f.samplers = actors.samplers;
  f.stage = s.stage;
  f.batch_size = s.batch;
  f.max_length = s.seq_len;
  f.negatives = s.negatives;
  f.window = window;
  f.timeout = std::chrono::milliseconds(job.at("train").at("request_timeout_ms").get<int64_t>());
  if (s.stage == 2) {
    f.cache_shards = actors.shards;
    f.cache_version = bench_version;
  }
  step_feed feed(*actors.sys, actors.router, f);
  const std::int64_t spe = maker.steps_per_epoch(s.batch) / block * block;
  if (spe < block) throw error(errc::invalid_input, "dataset too small for a block of steps");
  auto prebuilt_step = [&](std::uint32_t epoch, std::uint64_t step) {
    auto b = maker.make(s, epoch, step);
    if (s.stage == 2) attach_rows(b, matrix);
    return b;
  };

  // The two paths must do the same work: same bytes for a step.
  feed.start_epoch(0, 0, 1);
  auto via_actors = feed.next();
  auto direct = prebuilt_step(0, 0);
  if (via_actors.items != direct.items || via_actors.negatives != direct.negatives ||
      via_actors.row_ids != direct.row_ids || via_actors.rows != direct.rows) {
    throw error(errc::mismatch, "the pre-built batch differs from the actors' batch: the comparison would be unfair");
  }
  if (s.stage == 2 && direct.rows.empty()) throw error(errc::mismatch, "stage 2 without cached rows");
  for (int w = 0; w < 2; ++w) net.step(direct);  // warm-up (first-step allocations)

  efficiency e;
  double t_pipe = 0, t_direct = 0, wait_s = 0, step_s = 0, cpu[2] = {0, 0}, wcpu[2] = {0, 0};
  const int worker = actors.worker_pid;
  auto t_start = clock_type::now();
  for (std::int64_t round = 0; round < 2 || since(t_start) < budget; ++round) {
    std::int64_t at = round * block;
    auto epoch = static_cast<std::uint32_t>(at / spe);
    auto first = static_cast<std::uint64_t>(at % spe);
    std::vector<model::train_batch> prebuilt;
    for (int k = 0; k < block; ++k) prebuilt.push_back(prebuilt_step(epoch, first + k));
    double block_s[2] = {0, 0};  // actors, pre-built
    for (int half = 0; half < 2; ++half) {
      bool actors_now = (half == 0) == (round % 2 == 0);
      const double cpu0 = process_cpu_s(), wcpu0 = process_cpu_s(worker);
      auto t0 = clock_type::now();
      if (actors_now) {
        feed.start_epoch(epoch, first, first + static_cast<std::uint64_t>(block));
        for (int k = 0; k < block; ++k) {
          auto tw = clock_type::now();
          auto b = feed.next();
          auto ts = clock_type::now();
          net.step(b);
          wait_s += std::chrono::duration<double>(ts - tw).count();
          step_s += since(ts);
        }
        block_s[0] = since(t0);
        cpu[0] += process_cpu_s() - cpu0;
        wcpu[0] += process_cpu_s(worker) - wcpu0;
      } else {
        for (int k = 0; k < block; ++k) net.step(prebuilt[static_cast<std::size_t>(k)]);
        block_s[1] = since(t0);
        cpu[1] += process_cpu_s() - cpu0;
        wcpu[1] += process_cpu_s(worker) - wcpu0;
      }
    }
    t_pipe += block_s[0];
    t_direct += block_s[1];
    e.round_ratios.push_back(block_s[1] / block_s[0]);
    // Per-block times on stderr: the spread shows how much the machine's load moved the result.
    std::fprintf(stderr, "  %s stage %u round %lld: actors %.3f s, pre-built %.3f s\n", label, s.stage,
                 static_cast<long long>(round), block_s[0], block_s[1]);
    e.steps_each += block;
  }
  e.pipeline_sps = static_cast<double>(e.steps_each * s.batch) / t_pipe;
  e.direct_sps = static_cast<double>(e.steps_each * s.batch) / t_direct;
  const double per_step = 1e3 / static_cast<double>(e.steps_each);
  e.wait_ms = wait_s * per_step;
  e.step_ms = step_s * per_step;
  e.direct_step_ms = t_direct * per_step;
  e.cpu_ms = cpu[0] * per_step;
  e.direct_cpu_ms = cpu[1] * per_step;
  e.worker_cpu_ms = wcpu[0] * per_step;
  e.direct_worker_cpu_ms = wcpu[1] * per_step;
  std::fprintf(stderr,
               "  %s stage %u per step: actors %.2f ms (waiting in next() %.2f, step %.2f), pre-built %.2f ms; CPU ms "
               "per step: this process %.2f vs %.2f, worker %.2f vs %.2f\n",
               label, s.stage, (t_pipe)*per_step, e.wait_ms, e.step_ms, e.direct_step_ms, e.cpu_ms, e.direct_cpu_ms,
               e.worker_cpu_ms, e.direct_worker_cpu_ms);
  const auto& c = feed.counters();
  if (c.ids_looked_up > 0) e.ids_per_row = static_cast<double>(c.ids_in_steps) / static_cast<double>(c.ids_looked_up);
  if (actors.pool) e.respawns = actors.pool->total_respawns();
  if (c.retries > 0 || e.respawns > 0) {
    std::fprintf(stderr, "  %s: %llu retries, %d worker respawns: the measurement includes them\n", label,
                 static_cast<unsigned long long>(c.retries), e.respawns);
  }
  return e;
}

struct per_sample {
  double stage1_ms = 0, stage2_ms = 0;
  std::int64_t steps1 = 0, steps2 = 0;
};

// (b): the same pre-built batches through the text trainer and the cache trainer, alternating blocks.
per_sample stage_cost(model::trainer& text_net, model::trainer& cache_net, batch_maker& maker, const stage_shape& s,
                      const item_matrix& matrix, double budget) {
  std::vector<model::train_batch> batches;
  for (std::uint64_t k = 0; k < 8; ++k) {
    batches.push_back(maker.make(s, 0, k));
    attach_rows(batches.back(), matrix);  // read by the cache trainer only
  }
  for (int w = 0; w < 2; ++w) {
    text_net.step(batches[0]);
    cache_net.step(batches[0]);
  }
  per_sample p;
  double t1 = 0, t2 = 0;
  auto t_start = clock_type::now();
  for (int round = 0; round < 2 || since(t_start) < budget; ++round) {
    auto t0 = clock_type::now();
    for (int k = 0; k < 2; ++k) text_net.step(batches[static_cast<std::size_t>((round * 2 + k) % 8)]);
    t1 += since(t0);
    p.steps1 += 2;
    t0 = clock_type::now();
    for (int k = 0; k < 8; ++k) cache_net.step(batches[static_cast<std::size_t>(k)]);
    t2 += since(t0);
    p.steps2 += 8;
  }
  p.stage1_ms = 1e3 * t1 / static_cast<double>(p.steps1 * s.batch);
  p.stage2_ms = 1e3 * t2 / static_cast<double>(p.steps2 * s.batch);
  return p;
}

struct lookup_rate {
  double rows_per_s = 0, mb_per_s = 0;
  std::int64_t requests = 0;
};

// Fills one shard (ids 1..num_items, dim) through `router` (where it is enrolled).
void fill_shard(caf::actor_system& sys, router_actor router, const std::string& name, std::int64_t num_items,
                std::uint32_t dim) {
  std::vector<float> v(dim);
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = static_cast<float>(k % 97) * 0.01f;
  std::vector<std::int32_t> ids;
  for (std::int64_t id = 1; id <= num_items; ++id) ids.push_back(static_cast<std::int32_t>(id));
  put_rows(sys, router, name, bench_version, ids, dim, [&](std::int32_t) { return v.data(); });
}

// `window` lookups of `ids_per_request` random ids in flight from `router` to `name`, for `budget` seconds.
lookup_rate lookups(caf::actor_system& sys, router_actor router, const std::string& name, std::int64_t num_items,
                    std::uint32_t dim, std::uint32_t ids_per_request, std::uint32_t window, double budget) {
  caf::scoped_actor self{sys};
  rng r({7, 11});
  auto ask = [&] {
    msg::cache_lookup l;
    l.model_version = bench_version;
    for (std::uint32_t k = 0; k < ids_per_request; ++k) {
      l.item_ids.push_back(static_cast<std::int32_t>(1 + r.below(static_cast<std::uint64_t>(num_items))));
    }
    return self->request(router, caf::infinite, atom::request_v,
                         make_request("bench-client", name, l, {}, std::chrono::milliseconds(30000)));
  };
  using handle_type = decltype(ask());
  std::deque<handle_type> flying;
  lookup_rate out;
  std::int64_t rows = 0;
  auto t0 = clock_type::now();
  bool sending = true;
  for (std::uint32_t k = 0; k < window; ++k) flying.push_back(ask());
  while (!flying.empty()) {
    auto h = std::move(flying.front());
    flying.pop_front();
    std::string failure;
    h.receive(
        [&](const msg::buffer& b) {
          auto env = msg::decode(b);
          if (!env) failure = env.error().what;
          else if (auto* c = std::get_if<msg::cache_rows>(&env->content)) rows += static_cast<std::int64_t>(c->item_ids.size());
          else failure = "unexpected reply";
        },
        [&](const caf::error& e) { failure = caf::to_string(e); });
    if (!failure.empty()) throw error(errc::io, "lookup from " + name + ": " + failure);
    ++out.requests;
    if (sending && since(t0) >= budget) sending = false;
    if (sending) flying.push_back(ask());
  }
  double s = since(t0);
  out.rows_per_s = static_cast<double>(rows) / s;
  out.mb_per_s = out.rows_per_s * dim * sizeof(float) / 1e6;
  return out;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// (d): one `hllm train` run, stage 1 only, one epoch.
struct scaling_run {
  int world = 1;
  double rank_sps = 0;  // results.json trainer_samples_per_second.stage1 (rank 0: steps x batch / step time)
  double wall_s = 0;    // the whole child: start, data, training, validation, checkpoint
  double median_step_s = 0;  // of rank 0's steps (metrics.jsonl "seconds": compute, collectives, update)
  std::uint32_t batch = 0;
  double total_sps() const { return rank_sps * world; }
  // Robust to bursts of load from other work on the machine: world x batch / median step time.
  double median_total_sps() const { return median_step_s > 0 ? world * batch / median_step_s : 0; }
};

scaling_run train_child(const std::string& data, const std::string& out, int world, std::uint32_t batch) {
  std::filesystem::remove_all(out);
  std::filesystem::create_directories(out);
  auto r = run_logged({bin_dir() + "/hllm", "train", "--data", data, "--out", out, "--world", std::to_string(world),
                       "--set", "job.stages=[\"stage1\"]", "--set", "stage1.epochs=1"},
                      out + "/train.log");
  if (r.status != 0) {
    throw error(errc::io, "hllm train --world " + std::to_string(world) + " failed (see " + out + "/train.log)");
  }
  std::ifstream in(out + "/results.json");
  json j = json::parse(in);
  scaling_run s;
  s.world = world;
  s.rank_sps = j.at("trainer_samples_per_second").at("stage1").get<double>();
  s.wall_s = r.seconds;
  s.batch = batch;
  std::ifstream metrics(out + "/metrics.jsonl");
  std::vector<double> steps;
  for (std::string line; std::getline(metrics, line);) {
    auto m = json::parse(line, nullptr, false);
    if (m.is_object() && m.value("event", "") == "step") steps.push_back(m.at("seconds").get<double>());
  }
  s.median_step_s = median_of(steps);
  return s;
}

std::string fmt_num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string data, work = "bench-out/job";
    double budget = 30;
    int scaling_users = 2560, scaling_rounds = 2;
    std::string only;  // comma-separated parts to run (for profiling one path); empty: all
    for (int i = 1; i + 1 < argc; i += 2) {
      if (std::strcmp(argv[i], "--data") == 0) data = argv[i + 1];
      if (std::strcmp(argv[i], "--work") == 0) work = argv[i + 1];
      if (std::strcmp(argv[i], "--seconds") == 0) budget = std::stod(argv[i + 1]);
      if (std::strcmp(argv[i], "--scaling-users") == 0) scaling_users = std::stoi(argv[i + 1]);
      if (std::strcmp(argv[i], "--scaling-rounds") == 0) scaling_rounds = std::stoi(argv[i + 1]);
      if (std::strcmp(argv[i], "--only") == 0) only = "," + std::string(argv[i + 1]) + ",";
    }
    // Parts: stage1, stage2, polling, worker1, worker2, cost, lookups, scaling.
    auto named = [&](const char* part) { return only.find("," + std::string(part) + ",") != std::string::npos; };
    auto want = [&](const char* part) { return only.empty() || named(part); };
    if (!want("scaling")) scaling_rounds = 0;
    auto t_all = clock_type::now();
    // stdout is the table: whatever else writes to fd 1 (library logs, child processes) goes to stderr.
    std::fflush(stdout);
    FILE* out = fdopen(::dup(1), "w");
    ::dup2(2, 1);
    if (out == nullptr) throw error(errc::io, "cannot keep stdout for the table");
    const auto job_cfg = launch::job_config::load("", {}, launch::default_job_toml);
    json job = job_cfg.tree();
    const spec::job_spec job_typed = job_cfg.spec();
    if (data.empty()) data = make_dataset(work);
    std::string scaling_data;
    std::int64_t scaling_steps = 0;  // per epoch at world 1
    if (scaling_rounds > 0) {
      scaling_data = make_dataset(work + "/scaling-" + std::to_string(scaling_users), scaling_users);
      auto d = storage::dataset::open(scaling_data);
      scaling_steps = static_cast<std::int64_t>(model::trainable_users(model::interactions_of(d)).size()) /
                      job.at("stage1").at("batch_size").get<std::int64_t>();
    }
    std::string load_before = load_average();
    const auto seed = job.at("job").at("seed").get<std::uint64_t>();
    const auto window = job.at("train").at("window").get<std::uint32_t>();
    auto dataset = storage::dataset::open(data);
    auto texts = model::item_texts_of(dataset);
    auto table = model::interactions_of(dataset);
    batch_maker maker(table, seed);
    auto s1 = shape_of(job, "stage1", 1);
    auto s2 = shape_of(job, "stage2", 2);
    std::fprintf(stderr, "dataset %s: %lld users, %lld items; load average %s\n", data.c_str(),
                 static_cast<long long>(dataset.num_users()), static_cast<long long>(dataset.num_items()),
                 load_before.c_str());

    item_matrix matrix;
    matrix.hidden = job.at("model").at("hidden_size").get<std::int64_t>();
    matrix.num_items = dataset.num_items();
    matrix.data.assign(static_cast<std::size_t>((matrix.num_items + 1) * matrix.hidden), 0.0f);
    rng mr({3, 5});
    for (std::size_t k = static_cast<std::size_t>(matrix.hidden); k < matrix.data.size(); ++k) {
      matrix.data[k] = static_cast<float>(static_cast<double>(mr.below(2001)) / 1000.0 - 1.0) * 0.1f;
    }
    setup_options so;
    so.data = data;
    so.seed = seed;
    so.loaders = job.at("placement").at("loaders").get<int>();
    so.samplers = job.at("placement").at("samplers").get<int>();
    so.shards = job.at("placement").at("cache_shards").get<std::uint32_t>();
    so.matrix = &matrix;

    model::trainer text_net(job_model_config(job_typed, dataset, model::item_source::text), s1.train, texts);
    if (text_net.hidden_size() != matrix.hidden) throw error(errc::mismatch, "hidden size");
    // Stage 2 as the job trains it: a cache trainer without an item matrix, reading each batch's rows.
    model::trainer cache_net(job_model_config(job_typed, dataset, model::item_source::cache), s2.train, texts);
    efficiency e1, e2, e2q, e1w, e2w;
    int worker_pid = 0;
    // Stage 1 and stage 2 through one actor setup, each when its part is wanted.
    auto both_stages = [&](actor_setup& actors, const char* part1, const char* part2, const char* where,
                           efficiency& out1, efficiency& out2) {
      if (want(part1)) {
        std::fprintf(stderr, "(a) stage 1 pipeline efficiency, %s ...\n", where);
        out1 = pipeline_efficiency(actors, job, text_net, maker, s1, matrix, window, 2, budget, where);
      }
      if (want(part2)) {
        std::fprintf(stderr, "(a) stage 2 pipeline efficiency, %s ...\n", where);
        out2 = pipeline_efficiency(actors, job, cache_net, maker, s2, matrix, window, 8, budget * 0.5, where);
      }
    };
    if (want("stage1") || want("stage2")) {
      actor_setup actors(so);
      both_stages(actors, "stage1", "stage2", "in-process", e1, e2);
    }
    if (want("polling")) {
      setup_options q = so;
      q.caf_default_polling = true;
      actor_setup polling(q);
      std::fprintf(stderr, "(a) stage 2 pipeline efficiency, in-process, CAF's default polling ...\n");
      e2q = pipeline_efficiency(polling, job, cache_net, maker, s2, matrix, window, 8, budget * 0.5, "polling");
    }
    if (want("worker1") || want("worker2")) {
      setup_options w = so;
      w.worker_dir = work + "/worker";
      actor_setup remote(w);
      worker_pid = remote.worker_pid;
      std::fprintf(stderr, "(a) worker process %d up\n", worker_pid);
      both_stages(remote, "worker1", "worker2", "worker", e1w, e2w);
    }
    // (b) stage 2 vs stage 1 at stage 1's sequence length.
    model::trainer cache_net_short(job_model_config(job_typed, dataset, model::item_source::cache), s2.train, texts);
    per_sample cost;
    if (want("cost")) {
      std::fprintf(stderr, "(b) stage 2 vs stage 1 ...\n");
      cost = stage_cost(text_net, cache_net_short, maker, s1, matrix, budget * 0.4);
    }

    // (c) cache lookups: one shard of 100k items (Pixel1M-sized catalogue), dim = the model's hidden size.
    const std::int64_t items = 100000;
    const auto dim = static_cast<std::uint32_t>(matrix.hidden);
    const std::uint32_t ids = 1024, in_flight = 8;
    lookup_rate local, tcp;
    if (want("lookups")) {
      caf::actor_system_config cfg;
      configure_actor_system(cfg);
      caf::actor_system sys{cfg};
      router_config rc;
      rc.bind = {};
      auto router = spawn_router(sys, rc);
      embedding_cache_shard_options lo;
      lo.name = "lookup-shard";
      lo.num_items = items;
      auto shard = spawn_embedding_cache_shard(sys, router, lo);
      fill_shard(sys, router, lo.name, items, dim);
      std::fprintf(stderr, "(c) cache lookups, in-process ...\n");
      local = lookups(sys, router, lo.name, items, dim, ids, in_flight, 4);
      router_config a, b;
      a.name = "router/a";
      b.name = "router/b";
      a.bind = b.bind = {"tcp://127.0.0.1:*"};
      auto front = spawn_router(sys, a);
      auto back = spawn_router(sys, b);
      auto remote_shard = spawn_embedding_cache_shard(sys, back, lo);
      caf::scoped_actor self{sys};
      add_route(sys, front, lo.name, endpoints_of(self, back).at(0));
      add_route(sys, back, "bench-client", endpoints_of(self, front).at(0));
      fill_shard(sys, back, lo.name, items, dim);
      std::fprintf(stderr, "(c) cache lookups, tcp loopback ...\n");
      tcp = lookups(sys, front, lo.name, items, dim, ids, in_flight, 4);
      for (auto* x : {&shard, &remote_shard}) self->send_exit(*x, caf::exit_reason::user_shutdown);
      for (auto* x : {&router, &front, &back}) self->send_exit(*x, caf::exit_reason::user_shutdown);
    }

    // (d) scaling: world 1 and world 2, alternating which goes first.
    std::vector<scaling_run> w1, w2;
    std::string scaling_load_before = load_average();
    for (int round = 0; round < scaling_rounds; ++round) {
      for (int k = 0; k < 2; ++k) {
        int world = (k == 0) == (round % 2 == 0) ? 1 : 2;
        std::fprintf(stderr, "(d) hllm train --world %d, round %d ...\n", world, round);
        auto r = train_child(scaling_data, work + "/scaling-runs/w" + std::to_string(world), world, s1.batch);
        std::fprintf(stderr, "  world %d: %.1f samples/s per rank, %.1f in all (median step %.3f s: %.1f in all), %.1f s "
                     "wall (load %s)\n", world, r.rank_sps, r.total_sps(), r.median_step_s, r.median_total_sps(),
                     r.wall_s, load_average().c_str());
        (world == 1 ? w1 : w2).push_back(r);
      }
    }
    std::string load_after = load_average();

    auto yes = [](bool b) { return b ? "yes" : "no"; };
    std::fprintf(out, "| measurement | result | target | met |\n|---|---|---|---|\n");
    auto eff_row = [&](const char* what, const stage_shape& s, const efficiency& e, double target) {
      if (e.steps_each == 0) return;
      auto [lo, hi] = std::minmax_element(e.round_ratios.begin(), e.round_ratios.end());
      std::string extra;
      if (e.ids_per_row > 0) extra = fmt_num("; %.1f ids per row looked up", e.ids_per_row);
      if (e.respawns > 0) extra += "; " + std::to_string(e.respawns) + " worker respawns";
      std::fprintf(out, "| pipeline efficiency, %s, seq %u, batch %u: actor pipeline / pre-built batches, %lld steps each "
                  "| %.2f (%.0f vs %.0f samples/s); per-round median %.2f, range %.2f-%.2f over %zu rounds%s | >= %.1f "
                  "| %s |\n",
                  what, s.seq_len, s.batch, static_cast<long long>(e.steps_each), e.ratio(), e.pipeline_sps,
                  e.direct_sps, e.median(), *lo, *hi, e.round_ratios.size(), extra.c_str(), target,
                  yes(e.ratio() >= target));
    };
    eff_row("stage 1 (text items), one process", s1, e1, 0.9);
    eff_row("stage 2 (cache rows looked up per step), one process", s2, e2, 0.9);
    eff_row("stage 2 (cache rows looked up per step), one process, CAF's default polling (comparison: the job turns "
            "it off)", s2, e2q, 0.9);
    eff_row("stage 1 (text items), loaders, sampler and cache shards in a worker process (tcp loopback)", s1, e1w,
            0.8);
    eff_row("stage 2 (cache rows looked up per step), loaders, sampler and cache shards in a worker process (tcp "
            "loopback)", s2, e2w, 0.8);
    double speedup = cost.stage2_ms > 0 ? cost.stage1_ms / cost.stage2_ms : 0;
    if (cost.steps1 > 0) std::fprintf(out, "| stage 2 vs stage 1 time per sample, both seq %u, batch %u, pre-built batches (stage 2: cached "
                "rows in the batch) | %.1fx (%.3f vs %.3f ms/sample; %lld and %lld steps) | >= 5x | %s |\n",
                s1.seq_len, s1.batch, speedup, cost.stage1_ms, cost.stage2_ms, static_cast<long long>(cost.steps1),
                static_cast<long long>(cost.steps2), yes(speedup >= 5));
    if (local.requests > 0) std::fprintf(out, "| cache lookup, one shard, in-process router (%u ids/request, %u in flight, dim %u) | %s rows/s "
                "(%.0f MB/s, %lld requests) | - | - |\n",
                ids, in_flight, dim, fmt_num("%.2e", local.rows_per_s).c_str(), local.mb_per_s,
                static_cast<long long>(local.requests));
    if (tcp.requests > 0) std::fprintf(out, "| cache lookup, one shard, tcp loopback (two routers in one process) | %s rows/s (%.0f MB/s, %lld "
                "requests) | - | - |\n",
                fmt_num("%.2e", tcp.rows_per_s).c_str(), tcp.mb_per_s, static_cast<long long>(tcp.requests));
    if (!w1.empty() && !w2.empty()) {
      auto list = [](const std::vector<scaling_run>& v, bool median) {
        std::string out;
        for (const auto& r : v) out += (out.empty() ? "" : ", ") + fmt_num("%.0f", median ? r.median_total_sps() : r.total_sps());
        return out;
      };
      std::vector<double> t1, t2, m1, m2, ratios, mratios;
      for (std::size_t k = 0; k < w1.size(); ++k) {
        t1.push_back(w1[k].total_sps());
        t2.push_back(w2[k].total_sps());
        m1.push_back(w1[k].median_total_sps());
        m2.push_back(w2[k].median_total_sps());
        ratios.push_back(t2.back() / t1.back());
        mratios.push_back(m2.back() / m1.back());
      }
      std::string rs, ms;
      for (double r : ratios) rs += (rs.empty() ? "" : ", ") + fmt_num("%.2f", r);
      for (double r : mratios) ms += (ms.empty() ? "" : ", ") + fmt_num("%.2f", r);
      std::fprintf(out, "| scaling, 1 -> 2 trainer ranks: `hllm train --world N`, stage 1, 1 epoch, batch %u per rank, "
                  "job.threads 0 (%lld steps at world 1, %lld per rank at world 2), %zu runs each | %.2fx (samples/s "
                  "in all, results.json x world: %.0f at world 1 [%s], %.0f at world 2 [%s]; per-round ratios %s). "
                  "From the median step time: %.2fx (%.0f [%s] vs %.0f [%s]; per round %s) | - | - |\n",
                  s1.batch, static_cast<long long>(scaling_steps), static_cast<long long>(scaling_steps / 2), w1.size(),
                  median_of(ratios), median_of(t1), list(w1, false).c_str(), median_of(t2), list(w2, false).c_str(),
                  rs.c_str(), median_of(mratios), median_of(m1), list(w1, true).c_str(), median_of(m2),
                  list(w2, true).c_str(), ms.c_str());
    }
    std::time_t now = std::time(nullptr);
    char date[32];
    std::strftime(date, sizeof date, "%Y-%m-%d %H:%M", std::localtime(&now));
    std::fprintf(out, "\n%s; load average before %s, before the scaling runs %s, after %s; %.0f s in all; dataset %s (%lld "
                "users, %lld items); worker pid %d\n",
                date, load_before.c_str(), scaling_load_before.c_str(), load_after.c_str(), since(t_all), data.c_str(),
                static_cast<long long>(dataset.num_users()), static_cast<long long>(dataset.num_items()), worker_pid);
    std::fclose(out);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "job_bench: %s\n", e.what());
    return 1;
  }
}
