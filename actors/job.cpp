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
#include "launch/job_checkpoint.hpp"
#include "messages/codec.hpp"
#include "model/batching.hpp"
#include "model/collective.hpp"
#include "model/ranking.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/number.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/net.hpp"

namespace hllm {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

struct result_row {
  std::string model;
  std::optional<model::ranking_metrics> all, cold;
};

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

std::string hex(uint64_t h) { return storage::hash_hex(h); }

// job.threads = 0: the cores of this host shared by the ranks running on it (oversubscribed OpenMP threads spin
// and slow every rank down many times).
int torch_threads(const spec::job_spec& cfg, int local_ranks) {
  int t = cfg.job.threads;
  if (t > 0) return t;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, local_ranks));
}

model::train_config train_config_of(const spec::stage_settings& s, int threads) {
  model::train_config t;
  t.lr = s.lr;
  t.weight_decay = s.weight_decay;
  t.warmup_share = s.warmup_share;
  t.clip_norm = s.clip_norm;
  t.bf16 = s.bf16;
  t.threads = threads;
  return t;
}

stage_spec stage_spec_of(const spec::job_spec& cfg, const std::string& name, std::uint8_t stage, int threads) {
  const spec::stage_settings& s = cfg.schedule(name);
  stage_spec spec;
  spec.name = name;
  spec.stage = stage;
  spec.epochs = s.epochs;
  spec.batch_size = s.batch_size;
  spec.seq_len = s.seq_len;
  spec.negatives = s.negatives;
  spec.train = train_config_of(s, threads);
  spec.validate_every_epoch = cfg.eval.validate_every_epoch;
  return spec;
}


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
                                  const actor_home& h) {
  auto index = [&] { return storage::parse_int<uint32_t>(name.substr(name.rfind('-') + 1), "actor name '" + name + "'"); };
  if (name.rfind("loader-", 0) == 0) {
    data_loader_options lo{name, h.data_dir, h.seed};
    lo.verify_dataset = false;
    return spawn_data_loader(sys, router, lo);
  }
  if (name.rfind("sampler-", 0) == 0) {
    negative_sampler_options no{name, h.data_dir, h.seed};
    no.verify_dataset = false;
    return spawn_negative_sampler(sys, router, no);
  }
  if (name.rfind("cache-shard-", 0) == 0) {
    embedding_cache_shard_options so;
    so.name = name;
    so.shard = index();
    so.shard_count = h.cache_shards;
    so.num_items = h.num_items;
    so.directory = h.out_dir + "/cache";
    return spawn_embedding_cache_shard(sys, router, so);
  }
  if (name.rfind("encoder-", 0) == 0) {
    item_encoder_options eo;
    eo.name = name;
    eo.dataset_dir = h.data_dir;
    eo.checkpoint_dir = h.checkpoint;
    eo.model_version = h.version;
    eo.cache_shards = h.cache_shards;
    eo.job = h.job;
    eo.threads = h.threads;
    eo.verify_dataset = false;
    eo.device = h.device;
    return spawn_item_encoder(sys, router, eo);
  }
  throw error(errc::invalid_input, "no actor kind named like '" + name + "'");
}

std::string metrics_cell(const std::optional<model::ranking_metrics>& m, int k, bool ndcg) {
  if (!m || m->users == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", ndcg ? m->ndcg[k] : m->recall[k]);
  return buf;
}

class job_runner {
 public:
  explicit job_runner(const job_options& o)
      : opt_(o),
        cfg_(o.spec),
        data_(storage::dataset::open(o.data_dir)),
        texts_(model::item_texts_of(data_)),
        table_(model::interactions_of(data_)) {
    fs::create_directories(opt_.out_dir);
    chief_ = opt_.rank == 0;
    threads_ = torch_threads(cfg_, opt_.local_ranks);
    seed_ = cfg_.job.seed;
    job_.id = opt_.config_hash;
    const spec::placement_settings& p = cfg_.placement;
    n_loaders_ = p.loaders;
    n_samplers_ = p.samplers;
    n_encoders_ = p.encoders;
    n_shards_ = p.cache_shards;
    spread_ = p.spread;
    spread_over_hosts_ = p.spread_over == "hosts";
    encoder_ranks_.assign(p.encoder_ranks.begin(), p.encoder_ranks.end());
    for (int r : encoder_ranks_) {
      if (r < 0 || r >= opt_.world_size) {
        throw error(errc::invalid_input, "config: placement.encoder_ranks names rank " + std::to_string(r) +
                                             ", the job has ranks 0.." + std::to_string(opt_.world_size - 1));
      }
    }
    n_workers_ = p.workers;
    max_history_ = cfg_.eval.max_history;
    checkpoint_every_ = cfg_.train.checkpoint_every_steps;
    keep_checkpoints_ = cfg_.train.keep_checkpoints;
    valid_ = model::make_eval_set(table_, model::split::valid, max_history_);
    test_ = model::make_eval_set(table_, model::split::test, max_history_);
    for (int32_t t : test_.targets) test_cold_.push_back(data_.is_cold(t));
    if (opt_.world_size > 1) {
      model::process_group_options po;
      po.master_addr = opt_.master_addr;
      po.master_port = opt_.master_port;
      po.rank = opt_.rank;
      po.world_size = opt_.world_size;
      po.interface_host = opt_.host;
      po.timeout = std::chrono::seconds(cfg_.train.collective_timeout_s);
      po.device = opt_.device;
      spdlog::info("rank {}/{}: joining the process group at {}:{}", opt_.rank, opt_.world_size, opt_.master_addr,
                   opt_.master_port);
      group_ = std::make_unique<model::process_group>(po);
      check_same_config();
    }
    // Opened only after the rendezvous: rank 0 checks the job directory (and with --fresh sets an earlier run's
    // files aside, metrics included) before it starts the store, so no rank appends to an earlier run's log.
    metrics_path_ = opt_.out_dir + (chief_ ? std::string("/metrics.jsonl")
                                           : "/metrics.rank-" + std::to_string(opt_.rank) + ".jsonl");
    // Read before the log appends to it: did an earlier run of this job directory train anything?
    earlier_steps_logged_ = logged_a_step(metrics_path_);
    log_ = std::make_unique<metrics_log>(metrics_path_);
    job_.epoch = next_job_epoch();
    caf_cfg_ = std::make_unique<caf::actor_system_config>();
    configure_actor_system(*caf_cfg_);
    sys_ = std::make_unique<caf::actor_system>(*caf_cfg_);
  }

  ~job_runner() {
    pool_.reset();  // stops the worker processes while the router still runs
    if (monitor_) monitor_->stop();
    // The actor system waits for every actor at destruction: stop them all first.
    for (auto& a : actors_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    if (router_) caf::anon_send_exit(router_, caf::exit_reason::user_shutdown);
  }

  int run() {
    auto t0 = clock_type::now();
    start_actors();
    choose_resume();
    const std::vector<std::string>& stages = cfg_.job.stages;
    auto wants = [&](const char* s) { return cfg_.job.runs(s); };
    spdlog::info("job {}: {} users, {} items ({} cold), stages: {}", hex(job_.id), data_.num_users(),
                 data_.num_items(), data_.info().cold_items, json(stages).dump());
    if (wants("popularity") && chief_) phase("popularity", [&] { popularity(); });
    if (wants("baseline")) phase("baseline", [&] { baseline(); });
    if (wants("stage1")) phase("stage1", [&] { stage1(); });
    if (wants("cache")) phase("cache fill", [&] { cache_fill(); });
    if (wants("stage2")) phase("stage2", [&] { stage2(); });
    if (wants("test") && chief_) phase("test", [&] { test(); });
    // Rank 0 hosts actors the others use: nobody leaves before everybody is done.
    barrier();
    if (pool_) {
      log_->write(json{{"event", "workers"}, {"respawns", pool_->total_respawns()}}.dump());
      pool_.reset();
    }
    if (chief_) write_results();
    spdlog::info("job finished in {:.1f}s; outputs in {}", since(t0), opt_.out_dir);
    return 0;
  }

 private:
  void barrier() {
    if (group_) group_->barrier();
  }

  // Which rank's process hosts the i-th actor of a kind: rank 0, or with placement.spread the i-th rank of the
  // spread order (0..N-1, or with spread_over = "hosts" the ranks taken round-robin over the hosts).
  int home(int i) const {
    if (!spread_) return 0;
    return spread_order_.empty() ? i % opt_.world_size : spread_order_[static_cast<std::size_t>(i) % spread_order_.size()];
  }
  // The i-th item encoder: on placement.encoder_ranks (where the accelerators are) when set, else as home(i).
  int encoder_home(int i) const {
    return encoder_ranks_.empty() ? home(i) : encoder_ranks_[static_cast<std::size_t>(i) % encoder_ranks_.size()];
  }

  // This process's host as the placement names it: HLLM_HOST_NAME (hllm launch sets it), else the host name.
  std::string host_label() const {
    std::string name;
    if (const char* h = std::getenv("HLLM_HOST_NAME"); h != nullptr && *h != '\0') {
      name = h;
    } else {
      char buf[256] = {};
      ::gethostname(buf, sizeof buf - 1);
      name = buf;
    }
    return name + " (" + opt_.host + ")";
  }

  // Hosts read their own --config and --set: every rank publishes the hash of its whole effective config and its
  // host, and a mismatch stops every rank with one line naming both ranks and hosts (instead of training two
  // different jobs into one directory). Then the spread order over hosts is known.
  void check_same_config() {
    const std::string mine = hex(opt_.config_hash) + " " + hex(opt_.effective_hash);
    const std::string me = std::to_string(opt_.rank);
    group_->publish("config/" + me, mine);
    group_->publish("host/" + me, host_label());
    auto check = [&](int r) {
      const std::string theirs = group_->lookup("config/" + std::to_string(r));
      if (theirs == mine) return;
      const bool job_differs = theirs.substr(0, theirs.find(' ')) != mine.substr(0, mine.find(' '));
      throw error(errc::invalid_input,
                  "config mismatch between hosts: rank " + std::to_string(r) + " on " +
                      group_->lookup("host/" + std::to_string(r)) + " runs config " + theirs + ", rank " + me +
                      " on " + host_label() + " runs " + mine + " (" +
                      (job_differs ? "the job's config hash differs" : "the same job hash, other operational keys") +
                      "); every host must run the same --config and --set values");
    };
    if (chief_) {
      for (int r = 1; r < opt_.world_size; ++r) check(r);
    } else {
      check(0);
    }
    std::vector<std::string> host_order;
    std::vector<std::vector<int>> by_host;
    for (int r = 0; r < opt_.world_size; ++r) {
      std::string h = group_->lookup("host/" + std::to_string(r));
      rank_hosts_.push_back(h);
      auto it = std::find(host_order.begin(), host_order.end(), h);
      if (it == host_order.end()) {
        host_order.push_back(h);
        by_host.emplace_back();
        it = host_order.end() - 1;
      }
      by_host[static_cast<std::size_t>(it - host_order.begin())].push_back(r);
    }
    if (spread_over_hosts_) {
      for (std::size_t k = 0; spread_order_.size() < static_cast<std::size_t>(opt_.world_size); ++k) {
        for (const auto& ranks : by_host) {
          if (k < ranks.size()) spread_order_.push_back(ranks[k]);
        }
      }
    }
  }

  // Rank 0 prints which host runs what at the start ("placement: ..." lines).
  void print_placement() const {
    std::map<int, std::vector<std::string>> at;
    for (int r = 0; r < opt_.world_size; ++r) at[r].push_back("trainer-" + std::to_string(r));
    at[0].push_back("coordinator");
    std::vector<std::string> workers;
    if (n_workers_ > 0) {
      workers.push_back(std::to_string(n_workers_) + " worker processes (loaders, samplers, cache shards) and " +
                        std::to_string(n_encoders_) + " encoder processes during the cache fill");
    } else {
      for (int i = 0; i < n_loaders_; ++i) at[home(i)].push_back("loader-" + std::to_string(i));
      for (int i = 0; i < n_samplers_; ++i) at[home(i)].push_back("sampler-" + std::to_string(i));
      for (int i = 0; i < n_shards_; ++i) at[home(i)].push_back("cache-shard-" + std::to_string(i));
      for (int i = 0; i < n_encoders_; ++i) at[encoder_home(i)].push_back("encoder-" + std::to_string(i) + " (cache fill)");
    }
    std::set<std::string> hosts(rank_hosts_.begin(), rank_hosts_.end());
    spdlog::info("placement: {} ranks on {} hosts", opt_.world_size, std::max<std::size_t>(1, hosts.size()));
    for (const auto& [r, names] : at) {
      std::string line;
      for (const auto& n : names) line += (line.empty() ? "" : ", ") + n;
      if (r == 0 && !workers.empty()) line += ", " + workers.front();
      spdlog::info("placement: rank {} on {}: {}", r,
                   static_cast<std::size_t>(r) < rank_hosts_.size() ? rank_hosts_[static_cast<std::size_t>(r)] : host_label(),
                   line);
    }
  }

  // The i-th actor of a kind: spawned here when this process is its home (its spawn enrolls it), else its name is
  // routed to the router of the process that hosts it.
  void place(const std::string& name, int i) {
    if (home(i) == opt_.rank) {
      actors_.push_back(spawn_job_actor(*sys_, router_, name, home_of_actors()));
    } else {
      route_remote(name, home(i));
    }
  }

  // What this process's data-side actors are spawned with (the dataset was verified once, by data_).
  actor_home home_of_actors() const {
    actor_home h;
    h.data_dir = opt_.data_dir;
    h.out_dir = opt_.out_dir;
    h.seed = seed_;
    h.cache_shards = static_cast<uint32_t>(n_shards_);
    h.num_items = data_.num_items();
    h.job = job_;
    h.threads = static_cast<uint32_t>(threads_);
    h.device = opt_.device;
    return h;
  }

  // Local actors are enrolled by their spawn; remote names are routed to their process's router.
  void route_remote(const std::string& name, int rank) {
    if (rank != opt_.rank) add_route(*sys_, router_, name, endpoints_.at(rank));
  }

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
  uint32_t next_job_epoch() {
    std::string v;
    if (chief_) {
      const std::string path = opt_.out_dir + "/job_epoch";
      uint32_t e = 0;
      if (fs::exists(path)) {
        std::string text = storage::read_text_file(path);
        while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
        try {
          e = storage::parse_int<uint32_t>(text, "'" + path + "'", 0, std::numeric_limits<uint32_t>::max() - 1);
        } catch (const std::exception& x) {
          throw error(errc::format, std::string(x.what()) + ": it does not hold a job epoch; remove it to start at 0");
        }
        ++e;
      }
      std::string text = std::to_string(e) + "\n";
      storage::write_file_durably(path, text.data(), text.size());  // atomic: a unique temporary, then rename
      v = std::to_string(e);
      if (group_) group_->publish("job_epoch", v);
    } else {
      v = group_->lookup("job_epoch");
    }
    spdlog::info("rank {}: job epoch {}", opt_.rank, v);
    return storage::parse_int<uint32_t>(v, "the job epoch rank 0 published");
  }

  void start_actors() {
    router_config rc;
    rc.job_id = job_.id;
    rc.job_epoch = job_.epoch;
    // One process without workers: every actor is local. Otherwise each router binds a port; ranks publish theirs
    // in the store.
    const bool bound = group_ || n_workers_ > 0;
    rc.bind = bound ? std::vector<std::string>{"tcp://" + opt_.host + ":*"} : std::vector<std::string>{};
    router_ = spawn_router(*sys_, rc);
    if (bound) {
      caf::scoped_actor self{*sys_};
      std::vector<std::string> mine;
      self->request(router_, caf::infinite, atom::endpoints_v).receive(
          [&](const std::vector<std::string>& e) { mine = e; }, [](const caf::error&) {});
      if (mine.empty()) throw error(errc::io, "router has no bound endpoint");
      if (group_) {
        group_->publish("router/" + std::to_string(opt_.rank), mine.front());
        for (int r = 0; r < opt_.world_size; ++r) endpoints_.push_back(group_->lookup("router/" + std::to_string(r)));
      } else {
        endpoints_.push_back(mine.front());
      }
    }
    if (group_) {
      for (int r = 0; r < opt_.world_size; ++r) route_remote("trainer-" + std::to_string(r), r);
      route_remote("coordinator", 0);
    }
    for (int i = 0; i < n_loaders_; ++i) loaders_.push_back("loader-" + std::to_string(i));
    for (int i = 0; i < n_samplers_; ++i) samplers_.push_back("sampler-" + std::to_string(i));
    if (n_workers_ > 0) {
      start_workers();
    } else {
      for (int i = 0; i < n_loaders_; ++i) place(loaders_[i], i);
      for (int i = 0; i < n_samplers_; ++i) place(samplers_[i], i);
      for (int i = 0; i < n_shards_; ++i) place("cache-shard-" + std::to_string(i), i);
      for (int i = 0; i < n_encoders_; ++i) route_remote("encoder-" + std::to_string(i), encoder_home(i));
    }
    trainer_board_ = std::make_shared<status_board>("trainer-" + std::to_string(opt_.rank), "user_trainer");
    spawn_addressable(*sys_, router_, "trainer-" + std::to_string(opt_.rank), trainer_board_);
    if (chief_) {
      coordinator_board_ = std::make_shared<status_board>("coordinator", "coordinator");
      coordinator_board_->set_state(msg::actor_state::running);
      spawn_addressable(*sys_, router_, "coordinator", coordinator_board_);
    }
    start_monitor();
    barrier();  // every rank's actors are up before anybody sends them work
    if (chief_) print_placement();
    spdlog::info("rank {}: actors up ({} loaders, {} samplers, {} cache shards in the job; placement {})", opt_.rank,
                 n_loaders_, n_samplers_, n_shards_,
                 n_workers_ > 0 ? std::to_string(n_workers_) + " worker processes"
                                : spread_ ? "spread over ranks" : "all on rank 0");
  }

  // ---- worker processes (placement.workers > 0; actors/worker_pool.hpp) ----

  // Where others connect to a port of rank 0's host.
  std::string connect_host() const {
    if (opt_.host != "0.0.0.0") return opt_.host;
    return opt_.master_addr == "localhost" ? "127.0.0.1" : opt_.master_addr;
  }

  // Loaders, samplers and cache shards in placement.workers processes on rank 0's host (actor i of a kind on
  // worker i % workers), started and watched by rank 0; every rank routes their names to the workers' endpoints,
  // which stay the same when a worker is started again.
  void start_workers() {
    std::vector<std::vector<std::string>> hosted(static_cast<std::size_t>(n_workers_));
    for (int i = 0; i < n_loaders_; ++i) hosted[i % n_workers_].push_back(loaders_[i]);
    for (int i = 0; i < n_samplers_; ++i) hosted[i % n_workers_].push_back(samplers_[i]);
    for (int i = 0; i < n_shards_; ++i) hosted[i % n_workers_].push_back("cache-shard-" + std::to_string(i));
    // The encoders' processes start only for the cache fill, but their ports are chosen now: replies travel by
    // address, so the shards must know where the encoders are from the start.
    for (int i = 0; i < n_encoders_; ++i) hosted.push_back({"encoder-" + std::to_string(i)});
    const int processes = n_workers_ + n_encoders_;
    json ports;
    if (chief_) {
      for (int w = 0; w < processes; ++w) ports.push_back(storage::free_tcp_port());
      if (group_) group_->publish("worker_ports", ports.dump());
    } else {
      ports = json::parse(group_->lookup("worker_ports"));
    }
    for (int w = 0; w < processes; ++w) {
      std::string ep = "tcp://" + connect_host() + ":" + std::to_string(ports[w].get<int>());
      for (const auto& a : hosted[w]) {
        add_route(*sys_, router_, a, ep);
        worker_endpoint_[a] = ep;
      }
    }
    if (!chief_) return;
    pool_ = std::make_unique<worker_pool>(*sys_, router_, pool_options());
    for (int w = 0; w < n_workers_; ++w) {
      workers_.push_back("worker-" + std::to_string(w));
      pool_->start(worker_spec_of(workers_.back(), ports[w].get<int>(), hosted[w], json::object()));
    }
    for (int i = 0; i < n_encoders_; ++i) encoder_ports_.push_back(ports[n_workers_ + i].get<int>());
  }

  worker_pool_options pool_options() {
    const spec::placement_settings& p = cfg_.placement;
    worker_pool_options po;
    po.sender = "coordinator";
    po.job = job_;
    po.heartbeat_interval = std::chrono::milliseconds(p.heartbeat_ms);
    po.heartbeat_timeout = std::chrono::milliseconds(p.heartbeat_timeout_ms);
    po.start_timeout = std::chrono::milliseconds(p.start_timeout_ms);
    po.max_respawns = p.max_respawns;
    po.on_respawn = [this](const worker_spec& w, int n, const std::string& why) {
      log_->write(json{{"event", "respawn"}, {"worker", w.name}, {"actors", w.actors}, {"respawns", n},
                       {"reason", why}}.dump());
      if (coordinator_board_) coordinator_board_->set_counter("workers.respawns", pool_ ? pool_->total_respawns() : n);
    };
    return po;
  }

  // Writes OUT/workers/NAME.json (what the worker hosts, its endpoint and routes) and the command that runs it.
  worker_spec worker_spec_of(const std::string& name, int port, const std::vector<std::string>& actors,
                             const json& extra) {
    if (opt_.worker_executable.empty()) {
      throw error(errc::invalid_input, "placement.workers > 0 needs the hllm-train executable (job_options)");
    }
    json routes = json::object();
    for (int r = 0; r < opt_.world_size; ++r) routes["trainer-" + std::to_string(r)] = endpoints_.at(r);
    routes["coordinator"] = endpoints_.at(0);
    routes["monitor"] = endpoints_.at(0);
    for (const auto& [a, ep] : worker_endpoint_) {
      if (std::find(actors.begin(), actors.end(), a) == actors.end()) routes[a] = ep;
    }
    json spec{{"name", name},
              {"bind", "tcp://" + opt_.host + ":" + std::to_string(port)},
              {"job_id", job_.id},
              {"job_epoch", job_.epoch},
              {"data", opt_.data_dir},
              {"out", opt_.out_dir},
              {"seed", seed_},
              {"cache_shards", n_shards_},
              {"threads", threads_},
              {"device", opt_.device},
              {"actors", actors},
              {"routes", routes}};
    spec.update(extra);
    const std::string dir = opt_.out_dir + "/workers";
    fs::create_directories(dir);
    std::string text = spec.dump(1) + "\n";
    storage::write_file_durably(dir + "/" + name + ".json", text.data(), text.size());
    worker_spec w;
    w.name = name;
    w.endpoint = "tcp://" + connect_host() + ":" + std::to_string(port);
    w.actors = actors;
    w.command = {opt_.worker_executable, "--worker", dir + "/" + name + ".json"};
    w.log_file = dir + "/" + name + ".log";
    return w;
  }

  // Rank 0 watches every actor of the job and keeps `status.json` current (docs/operations.md).
  void start_monitor() {
    if (!chief_) return;
    monitor_options mo;
    mo.job = job_;
    mo.status_file = opt_.out_dir + "/status.json";
    mo.targets = {"router", "coordinator"};
    for (int r = 0; r < opt_.world_size; ++r) mo.targets.push_back("trainer-" + std::to_string(r));
    for (auto* v : {&loaders_, &samplers_}) mo.targets.insert(mo.targets.end(), v->begin(), v->end());
    for (int i = 0; i < n_shards_; ++i) mo.targets.push_back("cache-shard-" + std::to_string(i));
    for (const auto& w : workers_) mo.targets.push_back(worker_router_name(w));
    // The console (issue 11; docs/operations.md "Monitor the job"): curves from metrics.jsonl, where each actor
    // lives, and the HTTP server of [monitor].
    mo.job_dir = opt_.out_dir;
    const spec::monitor_settings& mc = cfg_.monitor;
    mo.curve_points = static_cast<std::size_t>(mc.curve_points);
    mo.dead_kept = static_cast<std::size_t>(mc.dead_kept);
    for (const char* s : {"baseline", "stage1", "stage2"}) {
      mo.samples_per_step[s] = static_cast<int64_t>(cfg_.schedule(s).batch_size) * opt_.world_size;
    }
    char hostname[256] = {};
    ::gethostname(hostname, sizeof hostname - 1);
    auto rank_at = [&](int r) {
      std::string host = hostname;
      if (r > 0 && static_cast<std::size_t>(r) < endpoints_.size()) {  // tcp://HOST:PORT of its router
        const std::string& ep = endpoints_[static_cast<std::size_t>(r)];
        auto a = ep.find("://"), b = ep.rfind(':');
        if (a != std::string::npos && b != std::string::npos && b > a + 3) host = ep.substr(a + 3, b - a - 3);
      }
      return "rank " + std::to_string(r) + (r == 0 ? " (pid " + std::to_string(::getpid()) + ")" : "") + " @ " + host;
    };
    for (const char* n : {"router", "coordinator", "monitor"}) mo.locations[n] = rank_at(0);
    for (int r = 0; r < opt_.world_size; ++r) mo.locations["trainer-" + std::to_string(r)] = rank_at(r);
    auto data_side = [&](const std::string& name, int i) {
      mo.locations[name] = n_workers_ > 0 ? "worker-" + std::to_string(i % n_workers_) + " @ " + hostname : rank_at(home(i));
    };
    for (int i = 0; i < n_loaders_; ++i) data_side(loaders_[i], i);
    for (int i = 0; i < n_samplers_; ++i) data_side(samplers_[i], i);
    for (int i = 0; i < n_shards_; ++i) data_side("cache-shard-" + std::to_string(i), i);
    for (const auto& w : workers_) mo.locations[worker_router_name(w)] = w + " @ " + hostname;
    for (int i = 0; i < n_encoders_ && n_workers_ > 0; ++i) {
      mo.locations["encoder-" + std::to_string(i)] = "worker-encoder-" + std::to_string(i) + " @ " + hostname;
    }
    console_options co;
    co.port = mc.port;
    co.host = mc.host;
    // The token: --monitor-token-file, else monitor.token, else HLLM_MONITOR_TOKEN. Never logged; JOB/job.toml
    // records only whether one was set (launch/train_main.cpp).
    co.token = !opt_.monitor_token.empty() ? opt_.monitor_token : mc.token;
    if (const char* t = std::getenv("HLLM_MONITOR_TOKEN"); co.token.empty() && t != nullptr) co.token = t;
    std::error_code stale;
    fs::remove(opt_.out_dir + "/console.json", stale);  // an earlier run's console is gone
    monitor_ = std::make_unique<monitor_service>(*sys_, router_, mo, co);
    if (monitor_->console_port() > 0) {
      const std::string url = monitor_->console_url();
      const std::string at = url.substr(7, url.size() - 8);  // HOST:PORT of http://HOST:PORT/
      spdlog::info("console: {}  (terminal: hllm top --connect {}; Prometheus: {}metrics)", url, at, url);
      json c{{"url", url}, {"connect", at}, {"port", monitor_->console_port()}, {"token", !co.token.empty()}};
      std::string text = c.dump(1) + "\n";
      storage::write_file_durably(opt_.out_dir + "/console.json", text.data(), text.size());
    }
  }

  step_feed_options feed_options(const stage_spec& spec) const {
    step_feed_options f;
    f.name = "trainer-" + std::to_string(opt_.rank);
    f.world_size = static_cast<uint32_t>(opt_.world_size);
    f.rank = static_cast<uint32_t>(opt_.rank);
    f.job = job_;
    f.loaders = loaders_;
    f.samplers = samplers_;
    f.stage = spec.stage;
    f.batch_size = spec.batch_size;
    f.max_length = spec.seq_len;
    f.negatives = spec.negatives;
    f.window = cfg_.train.window;
    f.timeout = std::chrono::milliseconds(cfg_.train.request_timeout_ms);
    if (spec.stage == 2) {
      // Stage 2 reads item embeddings per batch from the cache shards (deduplicated ids, one step ahead).
      f.cache_shards = static_cast<uint32_t>(n_shards_);
      f.cache_version = version_;
    }
    return f;
  }

  int64_t steps_per_epoch(const stage_spec& spec) const {
    auto users = static_cast<int64_t>(model::trainable_users(table_).size());
    int64_t steps = users / (static_cast<int64_t>(spec.batch_size) * opt_.world_size);
    if (steps < 1) throw error(errc::invalid_input, spec.name + ": fewer trainable users than one batch");
    return steps;
  }

  // ---- checkpoints and resume (docs/operations.md "Checkpoints and resume", launch/job_checkpoint.hpp) ----

  // Picks the checkpoint this run continues from: rank 0 decides (skipping, and reporting, truncated, corrupt and
  // foreign ones) and tells the other ranks through the rendezvous store, so every rank restores the same one.
  void choose_resume() {
    const std::string root = job_checkpoint::root_of(opt_.out_dir);
    // New checkpoints must sort after every one on disk, valid or not, even without a resume: retention removes
    // the lowest serials.
    if (chief_ && fs::is_directory(root)) {
      for (const auto& d : checkpoints_by_serial(root)) serial_ = std::max(serial_, d.first);
    }
    if (opt_.resume == "never") return;
    std::string chosen;
    if (chief_) {
      // Leftovers of a write that was killed: never a checkpoint (no rename happened).
      if (fs::is_directory(root)) {
        for (const auto& e : fs::directory_iterator(root)) {
          if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path());
        }
      }
      auto all = job_checkpoint::list(opt_.out_dir, hex(opt_.config_hash));
      if (opt_.resume == "auto") {
        for (const auto& c : all) {
          std::string problem = c.problem.empty() ? cache_problem(c.state) : c.problem;
          if (problem.empty()) {
            chosen = c.dir;
            break;
          }
          spdlog::warn("resume: skipping checkpoint {}: {}", c.name, problem);
          log_->write(json{{"event", "checkpoint_skipped"}, {"checkpoint", c.name}, {"reason", problem}}.dump());
        }
        if (chosen.empty()) spdlog::info("resume: no valid checkpoint under {}; starting from the beginning", root);
      } else {
        json st;
        std::string problem = job_checkpoint::check(opt_.resume, &st, hex(opt_.config_hash));
        if (problem.empty()) problem = cache_problem(st);
        if (!problem.empty()) throw error(errc::invalid_input, "--resume " + opt_.resume + ": " + problem);
        chosen = opt_.resume;
      }
    }
    if (group_) {
      if (chief_) group_->publish("resume", chosen.empty() ? "-" : chosen);
      else chosen = group_->lookup("resume");
      if (chosen == "-") chosen.clear();
    }
    if (chosen.empty()) {
      // Starting over after a run that was killed before its first checkpoint: its step lines are superseded just
      // as after a resume, so say so with a resume line that rolls back everything (steps_done 0 of the first
      // trained stage). Without it the metrics ledger would count those batches twice.
      if (opt_.resume == "auto" && earlier_steps_logged_) {
        log_->write(json{{"event", "resume"}, {"checkpoint", ""}, {"model", first_trained_stage()},
                         {"epoch", 0}, {"epoch_step", 0}, {"steps_done", 0}, {"rank", opt_.rank}}
                        .dump());
      }
      return;
    }
    resume_dir_ = chosen;
    resume_state_ = json::parse(storage::read_text_file(chosen + "/" + job_checkpoint::state_name));
    serial_ = std::max(serial_, resume_state_.at("serial").get<int64_t>());
    completed_ = resume_state_.at("completed_stages").get<std::vector<std::string>>();
    spdlog::info("resume: continuing from checkpoint {} ({} epoch {} step {}; completed stages {})", chosen,
                 resume_state_.at("stage").get<std::string>(), resume_state_.at("epoch").get<int64_t>(),
                 resume_state_.at("epoch_step").get<int64_t>(), json(completed_).dump());
    // Step lines after this one supersede the lines of the same batches written before it (metrics ledger).
    log_->write(json{{"event", "resume"},
                     {"checkpoint", fs::path(chosen).filename().string()},
                     {"model", resume_state_.at("stage")},
                     {"epoch", resume_state_.at("epoch")},
                     {"epoch_step", resume_state_.at("epoch_step")},
                     {"steps_done", resume_state_.at("steps_done")},
                     {"rank", opt_.rank}}
                    .dump());
  }

  std::string first_trained_stage() const {
    for (const auto& st : cfg_.job.stages) {
      if (st == "baseline" || st == "stage1" || st == "stage2") return st;
    }
    return "stage1";
  }

  static bool logged_a_step(const std::string& metrics_path) {
    std::ifstream in(metrics_path);
    for (std::string line; std::getline(in, line);) {
      if (line.find("\"event\":\"step\"") != std::string::npos) return true;
    }
    return false;
  }

  // A stage-2 checkpoint trained against another cache version than the stage-1 best on disk is unusable.
  std::string cache_problem(const json& state) {
    std::string v = state.value("cache_version", "");
    std::string s1 = opt_.out_dir + "/stage1/best";
    if (v.empty() || !fs::exists(s1 + "/model.safetensors")) return "";
    std::string now = checkpoint_version_hex(s1);
    return now == v ? "" : "cache version " + v + " is not the stage-1 best's " + now;
  }

  enum class stage_start { fresh, resume, done };

  // What this run does with a trainer stage: skip it (completed before), continue it from the checkpoint, or
  // train it from the start.
  stage_start start_of(const stage_spec& spec) {
    if (std::find(completed_.begin(), completed_.end(), spec.name) != completed_.end()) return stage_start::done;
    if (resume_dir_.empty() || resume_state_.at("stage").get<std::string>() != spec.name) return stage_start::fresh;
    if (resume_state_.at("epoch").get<int64_t>() >= spec.epochs) {
      completed_.push_back(spec.name);
      return stage_start::done;
    }
    return stage_start::resume;
  }

  train_progress resumed_progress() const {
    train_progress p;
    p.epoch = resume_state_.at("epoch").get<int64_t>();
    p.epoch_step = resume_state_.at("epoch_step").get<int64_t>();
    const json& b = resume_state_.at("best");
    p.best_ndcg200 = b.at("ndcg200").get<double>();
    p.best_epoch = b.at("epoch").get<int64_t>();
    p.valid_ndcg200 = b.at("valid_ndcg200").get<std::vector<double>>();
    return p;
  }

  // One checkpoint as an atomic unit: written under checkpoints/.tmp-NAME, fsynced, hashed into a manifest,
  // renamed to checkpoints/NAME; `latest` is replaced last. Any failure (unwritable directory, full disk) stops the
  // job with the previous checkpoints untouched.
  void write_checkpoint(const model::trainer& net, const stage_spec& spec, const train_progress& p) {
    auto t0 = clock_type::now();
    const std::string root = job_checkpoint::root_of(opt_.out_dir);
    const std::string name = spec.name + "-e" + std::to_string(p.epoch) + "-s" + std::to_string(net.steps_done());
    const std::string tmp = root + "/.tmp-" + name;
    uint64_t bytes = 0;
    try {
      fs::create_directories(root);
      std::error_code ec;
      fs::remove_all(tmp, ec);
      fs::create_directories(tmp + "/trainer");
      net.save(tmp + "/trainer");
      json state{{"format", job_checkpoint::state_format},
                 {"version", job_checkpoint::state_version},
                 {"serial", serial_ + 1},
                 {"stage", spec.name},
                 {"epoch", p.epoch},
                 {"epoch_step", p.epoch_step},
                 {"steps_done", net.steps_done()},
                 {"epochs", spec.epochs},
                 {"steps_per_epoch", steps_per_epoch(spec)},
                 {"world_size", opt_.world_size},
                 {"lr", p.lr},
                 {"logit_scale", p.logit_scale},
                 {"config_hash", hex(opt_.config_hash)},
                 {"cache_version", spec.stage == 2 ? version_ : std::string()},
                 {"best", {{"ndcg200", p.best_ndcg200}, {"epoch", p.best_epoch}, {"valid_ndcg200", p.valid_ndcg200}}},
                 {"completed_stages", completed_}};
      std::string text = state.dump(1) + "\n";
      storage::write_file_durably(tmp + "/" + job_checkpoint::state_name, text.data(), text.size());
      storage::fsync_directory(tmp + "/trainer");
      job_checkpoint::write_manifest(tmp);
      storage::fsync_directory(tmp);
      for (const auto& rel : job_checkpoint::files_under(tmp)) bytes += fs::file_size(tmp + "/" + rel);
      storage::replace_directory_atomically(tmp, root + "/" + name);
      storage::fsync_directory(root);
      std::string latest = name + "\n";
      storage::write_file_durably(root + "/latest", latest.data(), latest.size());  // atomic replace
    } catch (const std::exception& e) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw error(errc::io, "cannot write checkpoint " + name + " under '" + root + "': " + e.what() +
                                " (the job stops; earlier checkpoints are intact)");
    }
    ++serial_;
    retain_checkpoints(root, name);
    double s = since(t0);
    spdlog::info("checkpoint {}: {:.1f} MB in {:.2f}s", name, static_cast<double>(bytes) / 1e6, s);
    log_->write(json{{"event", "checkpoint"}, {"checkpoint", name}, {"bytes", bytes}, {"seconds", s}}.dump());
  }

  // (serial, directory) of every checkpoint directory under root, newest first; -1 when its state is unreadable.
  // Cheap: no checksums.
  static std::vector<std::pair<int64_t, std::string>> checkpoints_by_serial(const std::string& root,
                                                                            const std::string& except = "") {
    std::vector<std::pair<int64_t, std::string>> dirs;
    for (const auto& e : fs::directory_iterator(root)) {
      std::string n = e.path().filename().string();
      if (!e.is_directory() || n.empty() || n[0] == '.' || n == except) continue;
      int64_t serial = -1;
      try {
        serial = json::parse(storage::read_text_file(e.path().string() + "/" + job_checkpoint::state_name))
                     .value("serial", int64_t{-1});
      } catch (const std::exception&) {
      }
      dirs.emplace_back(serial, e.path().string());
    }
    std::sort(dirs.rbegin(), dirs.rend());
    return dirs;
  }

  // Keeps the newest train.keep_checkpoints checkpoints (by serial); stage bests live in STAGE/best.
  void retain_checkpoints(const std::string& root, const std::string& newest) {
    auto dirs = checkpoints_by_serial(root, newest);
    for (std::size_t i = static_cast<std::size_t>(keep_checkpoints_ - 1); i < dirs.size(); ++i) {
      std::error_code ec;
      fs::remove_all(dirs[i].second, ec);
      if (ec) spdlog::warn("checkpoint retention: cannot remove {}: {}", dirs[i].second, ec.message());
    }
  }

  stage_outcome train(model::trainer& net, const stage_spec& spec, const train_progress* from = nullptr) {
    step_feed feed(*sys_, router_, feed_options(spec));
    trainer_board_->set_state(msg::actor_state::running);
    auto validate = [&](model::trainer& t) { return model::summarize_ranks(t.ranks(valid_)); };
    resume_options ro;
    ro.from = from;
    ro.checkpoint_every = checkpoint_every_;
    ro.rank = opt_.rank;
    if (chief_) ro.checkpoint = [&](const model::trainer& t, const train_progress& p) { write_checkpoint(t, spec, p); };
    stage_spec with_times = spec;  // timestamp features: every batch gets its timestamps from this rank's table
    if (cfg_.model.time_buckets > 0) with_times.times = &table_;
    auto out = run_user_trainer(feed, net, with_times, steps_per_epoch(spec), validate,
                                opt_.out_dir + "/" + spec.name, *log_, group_.get(), trainer_board_.get(), ro);
    completed_.push_back(spec.name);
    trainer_board_->set_state(msg::actor_state::idle);
    if (chief_) {
      spdlog::info("{}: {} steps, {:.0f} samples/s in this trainer, best epoch {} (validation N@200 {:.2f}), retries {}",
                   spec.name, out.steps, out.samples_per_second, out.best_epoch + 1, out.best_ndcg200,
                   feed.counters().retries);
      const auto& c = feed.counters();
      if (c.lookups > 0) {
        spdlog::info("{}: {} cache lookups for {} distinct ids of {} in the batches ({:.1f}x fewer rows moved)",
                     spec.name, c.lookups, c.ids_looked_up, c.ids_in_steps,
                     static_cast<double>(c.ids_in_steps) / static_cast<double>(std::max<uint64_t>(c.ids_looked_up, 1)));
      }
    }
    speeds_[spec.name] = out.samples_per_second;
    return out;
  }

  void record(const std::string& name, const std::vector<int64_t>& ranks) {
    result_row r;
    r.model = name;
    r.all = model::summarize_ranks(ranks);
    r.cold = model::summarize_ranks(ranks, test_cold_);
    rows_[name] = r;
  }

  void popularity() { record("popularity", model::popularity_ranks(table_, test_)); }

  void baseline() {
    auto spec = stage_spec_of(cfg_, "baseline", 0, threads_);
    spec.train.total_steps = spec.epochs * steps_per_epoch(spec);
    auto start = start_of(spec);
    std::string best_dir = opt_.out_dir + "/baseline/best";
    if (start == stage_start::done) {
      spdlog::info("baseline: completed before this run (checkpoint {}); not trained again", resume_dir_);
    } else if (start == stage_start::resume) {
      auto net = model::trainer::load(resume_dir_ + "/trainer", texts_, {}, opt_.device);
      auto from = resumed_progress();
      best_dir = train(net, spec, &from).best_dir;
    } else {
      model::trainer net(job_model_config(cfg_, data_, model::item_source::id), spec.train, texts_, {},
                         opt_.device);
      best_dir = train(net, spec).best_dir;
    }
    if (!chief_) return;
    auto best = model::trainer::load(best_dir, texts_, {}, opt_.device);
    record("id-baseline", best.ranks(test_));
  }

  void stage1() {
    auto spec = stage_spec_of(cfg_, "stage1", 1, threads_);
    spec.train.total_steps = spec.epochs * steps_per_epoch(spec);
    auto start = start_of(spec);
    if (start == stage_start::done) {
      spdlog::info("stage1: completed before this run (checkpoint {}); not trained again", resume_dir_);
      stage1_dir_ = opt_.out_dir + "/stage1/best";
    } else if (start == stage_start::resume) {
      auto net = model::trainer::load(resume_dir_ + "/trainer", texts_, {}, opt_.device);
      auto from = resumed_progress();
      stage1_dir_ = train(net, spec, &from).best_dir;
    } else {
      model::trainer net(job_model_config(cfg_, data_, model::item_source::text), spec.train, texts_, {},
                         opt_.device);
      stage1_dir_ = train(net, spec).best_dir;
    }
  }

  std::string stage1_checkpoint() {
    if (stage1_dir_.empty()) stage1_dir_ = opt_.out_dir + "/stage1/best";
    if (!fs::exists(stage1_dir_ + "/model.safetensors")) {
      throw error(errc::not_found, "no stage-1 checkpoint at '" + stage1_dir_ + "' (run the stage1 stage first)");
    }
    return stage1_dir_;
  }

  // Coordinator side of the cache fill: work units of item ids, dispatched to encoders (one unit in flight per
  // encoder), recorded in a ledger when their rows are in the shards, so an interrupted fill resumes.
  void cache_fill() {
    std::string ckpt = stage1_checkpoint();
    version_ = checkpoint_version_hex(ckpt);
    if (n_workers_ > 0) {
      cache_fill_in_workers(ckpt);
      return;
    }
    std::vector<addressable_actor> local_encoders;
    actor_home h = home_of_actors();
    h.checkpoint = ckpt;
    h.version = version_;
    for (int i = 0; i < n_encoders_; ++i) {
      if (encoder_home(i) == opt_.rank) local_encoders.push_back(spawn_job_actor(*sys_, router_, "encoder-" + std::to_string(i), h));
    }
    barrier();  // encoders everywhere are up
    if (monitor_) {
      for (int i = 0; i < n_encoders_; ++i) monitor_->core().add_target("encoder-" + std::to_string(i));
    }
    if (chief_) dispatch_cache_fill();
    barrier();  // the fill is complete
    if (monitor_) {
      for (int i = 0; i < n_encoders_; ++i) monitor_->core().remove_target("encoder-" + std::to_string(i));
    }
    // The encoders' frozen Item LLM is not needed any more: free it.
    caf::scoped_actor self{*sys_};
    for (std::size_t e = 0; e < local_encoders.size(); ++e) self->send_exit(local_encoders[e], caf::exit_reason::user_shutdown);
  }

  // With worker processes, each item encoder runs in a process of its own for the fill (watched and respawned like
  // the other workers; a unit lost with it is re-queued), then stops: the frozen Item LLM is not needed any more.
  void cache_fill_in_workers(const std::string& ckpt) {
    if (chief_) {
      std::vector<std::string> names;
      for (int i = 0; i < n_encoders_; ++i) {
        std::string encoder = "encoder-" + std::to_string(i);
        names.push_back("worker-" + encoder);
        pool_->start(worker_spec_of(names.back(), encoder_ports_.at(static_cast<std::size_t>(i)), {encoder},
                                    json{{"checkpoint", ckpt}, {"version", version_}}));
        if (monitor_) {
          monitor_->core().add_target(encoder);
          monitor_->core().add_target(worker_router_name(names.back()));
        }
      }
      dispatch_cache_fill();
      for (int i = 0; i < n_encoders_; ++i) {
        pool_->stop(names[i]);
        if (monitor_) {
          monitor_->core().remove_target("encoder-" + std::to_string(i));
          monitor_->core().remove_target(worker_router_name(names[i]));
        }
      }
    }
    barrier();  // the fill is complete
  }

  void dispatch_cache_fill() {
    cache_fill_options fo;
    fo.job = job_;
    for (int i = 0; i < n_encoders_; ++i) fo.encoders.push_back("encoder-" + std::to_string(i));
    fo.shards = n_shards_;
    fo.num_items = data_.num_items();
    fo.unit_items = cfg_.cache.unit_items;
    fo.version = version_;
    fo.ledger_path = opt_.out_dir + "/cache/ledger.json";
    fo.persist_every_units = cfg_.cache.persist_every_units;
    fo.unit_timeout = std::chrono::seconds(cfg_.cache.unit_timeout_s);
    // A cache shard being respawned misses a few requests: ask again for as long as a respawn may take.
    if (pool_) fo.retry_for = std::chrono::milliseconds(cfg_.placement.heartbeat_timeout_ms) +
                              std::chrono::seconds(60);
    fo.on_progress = [this](int64_t done) {
      if (coordinator_board_) coordinator_board_->set_counter("cache.units_done", done);
    };
    auto r = fill_cache(*sys_, router_, fo);
    spdlog::info("cache: {} rows of version {} in {} shards; {} of {} units encoded now ({:.0f} items/s)", r.rows,
                 version_, n_shards_, r.units_encoded, r.units_total,
                 static_cast<double>(r.units_encoded * fo.unit_items) / std::max(r.seconds, 1e-9));
  }

  // The version tag of the cached rows: the hash of stage 1's checkpoint, computed once (it reads the whole file).
  const std::string& cache_version() {
    if (version_.empty()) version_ = checkpoint_version_hex(stage1_checkpoint());
    return version_;
  }

  // The item matrix [(num_items + 1) x hidden] from the cache shards (row 0 zeros): stage 2 and evaluation read
  // item embeddings only from here, never from the Item LLM.
  std::vector<float> cache_matrix() {
    // Replies travel back by the sender's address: only rank 0 is reachable as "coordinator".
    std::string from = chief_ ? "coordinator" : "trainer-" + std::to_string(opt_.rank);
    uint32_t dim = 0;
    return fetch_cache_matrix(*sys_, router_, from, job_, n_shards_, data_.num_items(), cache_version(), dim);
  }

  void stage2() {
    auto spec = stage_spec_of(cfg_, "stage2", 2, threads_);
    spec.train.total_steps = spec.epochs * steps_per_epoch(spec);
    auto start = start_of(spec);
    if (start == stage_start::done) {
      spdlog::info("stage2: completed before this run (checkpoint {}); not trained again", resume_dir_);
      stage2_dir_ = opt_.out_dir + "/stage2/best";
      return;
    }
    cache_version();  // the step feed's lookups and results.json name it
    // Training reads each batch's rows from the shards (the step feed); only rank 0 validates, against the whole
    // cached matrix.
    auto with_matrix = [&](model::trainer& net) {
      if (!chief_) return;
      auto matrix = cache_matrix();
      net.set_item_cache(span<const float>(matrix.data(), matrix.size()));
    };
    if (start == stage_start::resume) {
      auto net = model::trainer::load(resume_dir_ + "/trainer", texts_, {}, opt_.device);
      with_matrix(net);
      auto from = resumed_progress();
      stage2_dir_ = train(net, spec, &from).best_dir;
    } else {
      model::trainer net(job_model_config(cfg_, data_, model::item_source::cache), spec.train, texts_, {},
                         opt_.device);
      net.load_weights_from(stage1_checkpoint());  // stage 2 continues the stage-1 User LLM
      with_matrix(net);
      stage2_dir_ = train(net, spec).best_dir;
    }
  }

  // Test metrics of the HLLM models, evaluated against the cached item matrix.
  void test() {
    auto matrix = cache_matrix();
    span<const float> cache(matrix.data(), matrix.size());
    auto stage1_cfg = job_model_config(cfg_, data_, model::item_source::cache);
    model::train_config tc;
    tc.threads = threads_;
    model::trainer s1(stage1_cfg, tc, texts_, cache);
    s1.load_weights_from(stage1_checkpoint());
    record("hllm-stage1", s1.ranks(test_));
    std::string s2 = stage2_dir_.empty() ? opt_.out_dir + "/stage2/best" : stage2_dir_;
    if (fs::exists(s2 + "/model.safetensors")) {
      auto net = model::trainer::load(s2, texts_, cache, opt_.device);
      record("hllm-stage2", net.ranks(test_));
    }
  }

  void write_results() {
    std::ostringstream md;
    md << "| model | split | R@10 | R@50 | R@200 | N@10 | N@50 | N@200 |\n"
       << "|---|---|---|---|---|---|---|---|\n";
    json rows = json::array();
    for (const char* name : {"popularity", "id-baseline", "hllm-stage1", "hllm-stage2"}) {
      auto it = rows_.find(name);
      if (it == rows_.end()) continue;
      for (const auto& [split, m] : {std::pair{"all", it->second.all}, std::pair{"cold", it->second.cold}}) {
        md << "| " << name << " | " << split;
        json j{{"model", name}, {"split", split}, {"users", m ? m->users : 0}};
        for (int k : {1, 2, 3}) md << " | " << metrics_cell(m, k, false);
        for (int k : {1, 2, 3}) md << " | " << metrics_cell(m, k, true);
        md << " |\n";
        if (m && m->users > 0) {
          for (int k = 0; k < 4; ++k) {
            j["R@" + std::to_string(model::ranking_ks[k])] = m->recall[k];
            j["N@" + std::to_string(model::ranking_ks[k])] = m->ndcg[k];
          }
        }
        rows.push_back(j);
      }
    }
    std::string table = md.str();
    json out{{"split", "test"}, {"scale", "x100"}, {"rows", rows}, {"trainer_samples_per_second", speeds_},
             {"config_hash", hex(opt_.config_hash)}, {"cache_version", version_}};
    std::string text = out.dump(2) + "\n";
    storage::write_file_durably(opt_.out_dir + "/results.json", text.data(), text.size());
    storage::write_file_durably(opt_.out_dir + "/results.md", table.data(), table.size());
    std::printf("\nTest results (x100; %zu users, %lld with a cold target):\n\n%s\n", test_.targets.size(),
                static_cast<long long>(std::count(test_cold_.begin(), test_cold_.end(), true)), table.c_str());
    std::fflush(stdout);
  }

  job_options opt_;
  spec::job_spec cfg_;
  storage::dataset data_;
  model::item_text_table texts_;
  model::interaction_table table_;
  std::string metrics_path_;
  bool earlier_steps_logged_ = false;
  std::unique_ptr<metrics_log> log_;
  uint64_t seed_ = 0;
  bool chief_ = true;
  int threads_ = 1;
  bool spread_ = false;
  int n_workers_ = 0;
  std::unique_ptr<worker_pool> pool_;              // rank 0 with placement.workers > 0
  std::vector<std::string> workers_;               // names of the long-lived workers (rank 0)
  std::map<std::string, std::string> worker_endpoint_;  // actor hosted by a worker -> its router's endpoint
  std::vector<int> encoder_ports_;                 // of the encoders' processes (started for the cache fill)
  std::unique_ptr<model::process_group> group_;
  std::unique_ptr<monitor_service> monitor_;
  std::shared_ptr<status_board> trainer_board_, coordinator_board_;
  std::vector<std::string> endpoints_;
  job_ref job_;
  int n_loaders_ = 1, n_samplers_ = 1, n_encoders_ = 1, n_shards_ = 1;
  bool spread_over_hosts_ = false;
  std::vector<int> encoder_ranks_;       // placement.encoder_ranks
  std::vector<int> spread_order_;        // with spread_over = "hosts": ranks round-robin over hosts
  std::vector<std::string> rank_hosts_;  // "name (address)" of every rank's host (several ranks only)
  int64_t max_history_ = 50;
  model::eval_set valid_, test_;
  std::vector<bool> test_cold_;
  std::unique_ptr<caf::actor_system_config> caf_cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  router_actor router_;
  std::vector<addressable_actor> actors_;
  std::vector<std::string> loaders_, samplers_;
  std::string stage1_dir_, stage2_dir_, version_;
  int64_t checkpoint_every_ = 0, keep_checkpoints_ = 3;
  int64_t serial_ = 0;                  // of the newest checkpoint on disk; the next one gets serial_ + 1
  std::vector<std::string> completed_;  // trainer stages of the plan finished (the coordinator's ledger)
  std::string resume_dir_;              // the checkpoint this run continues from ("" none)
  json resume_state_;
  std::map<std::string, result_row> rows_;
  std::map<std::string, double> speeds_;
};

}  // namespace

model::hllm_config job_model_config(const spec::job_spec& cfg, const storage::dataset& data,
                                    model::item_source source) {
  const spec::model_settings& m = cfg.model;
  auto c = model::default_hllm_config(data.info().vocab_size, data.num_items(), data.info().max_text_tokens);
  c.source = source;
  for (auto* l : {&c.item_llm, &c.user_llm}) {
    l->hidden_size = m.hidden_size;
    l->intermediate_size = m.intermediate_size;
    l->num_attention_heads = m.heads;
    l->num_key_value_heads = m.kv_heads;
    l->rms_norm_eps = m.rms_norm_eps;
    l->rope_theta = m.rope_theta;
  }
  c.item_llm.num_hidden_layers = m.item_layers;
  c.user_llm.num_hidden_layers = m.user_layers;
  c.pooling = m.pooling == "mean" ? model::item_pooling::mean : model::item_pooling::item_token;
  c.false_negative_cosine = m.false_negative_cosine;
  c.late_fusion = m.late_fusion;
  c.early_fusion = m.early_fusion;
  c.cls_lambda = m.cls_lambda;
  c.time_buckets = m.time_buckets;
  c.seed = cfg.job.seed;
  c.validate();
  return c;
}

int run_job(const job_options& o) {
  job_runner r(o);
  return r.run();
}

int run_worker(const std::string& spec_path) {
  json s;
  try {
    s = json::parse(storage::read_text_file(spec_path));
  } catch (const std::exception& e) {
    throw error(errc::format, "worker spec '" + spec_path + "': " + e.what());
  }
  const std::string name = s.at("name").get<std::string>();
  spdlog::set_pattern("[%H:%M:%S " + name + "] %v");
  // SIGTERM ends the worker; blocked before any thread starts so that only sigwait below receives it.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  const std::string data_dir = s.at("data").get<std::string>();
  auto data = storage::dataset::open(data_dir);  // verified once for every actor of this process
  const job_ref job{s.at("job_id").get<uint64_t>(), s.at("job_epoch").get<uint32_t>()};
  caf::actor_system_config cfg;
  configure_actor_system(cfg);
  caf::actor_system sys{cfg};
  router_config rc;
  rc.name = worker_router_name(name);
  rc.job_id = job.id;
  rc.job_epoch = job.epoch;
  rc.bind = {s.at("bind").get<std::string>()};
  auto router = spawn_router(sys, rc);
  std::vector<addressable_actor> actors;
  for (const auto& [to, ep] : s.at("routes").items()) add_route(sys, router, to, ep.get<std::string>());
  actor_home h;
  h.data_dir = data_dir;
  h.out_dir = s.at("out").get<std::string>();
  h.seed = s.at("seed").get<uint64_t>();
  h.cache_shards = s.at("cache_shards").get<uint32_t>();
  h.num_items = data.num_items();
  h.job = job;
  h.threads = s.at("threads").get<uint32_t>();
  h.checkpoint = s.value("checkpoint", "");
  h.version = s.value("version", "");
  h.device = s.value("device", "cpu");
  for (const auto& j : s.at("actors")) {
    try {
      actors.push_back(spawn_job_actor(sys, router, j.get<std::string>(), h));
    } catch (const error& e) {
      throw error(e.code(), "worker spec '" + spec_path + "': " + e.what());
    }
  }
  // OUT/workers/NAME.pid names the live incarnation (operators and the crash tests kill it by this).
  const std::string pid_file = h.out_dir + "/workers/" + name + ".pid";
  std::string pid_text = std::to_string(::getpid()) + "\n";
  storage::write_file_durably(pid_file, pid_text.data(), pid_text.size());  // atomic: a unique temporary name
  spdlog::info("up (pid {}, {}, job epoch {}): {} actors", static_cast<long>(::getpid()), rc.bind.front(), job.epoch,
               actors.size());
  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("stopping (signal {})", sig);
  std::error_code ec;
  fs::remove(pid_file, ec);
  for (auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
  return 0;
}

}  // namespace hllm
