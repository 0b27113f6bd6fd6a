#include "actors/job_runner.hpp"

namespace hllm {
namespace job_internal {

// Spawns the actor `name` (loader-i, sampler-i, cache-shard-i or encoder-i) as a rank process or a worker does;
// the process has verified the dataset once, so the actors do not.
addressable_actor spawn_job_actor(caf::actor_system& sys, const router_actor& router, const std::string& name,
                                  const actor_home& h) {
  auto index = [&] {
    return storage::parse_int<uint32_t>(name.substr(name.rfind('-') + 1), "actor name '" + name + "'");
  };
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

void job_runner::barrier() {
  if (group_) group_->barrier();
}

// Which rank's process hosts the i-th actor of a kind: rank 0, or with placement.spread the i-th rank of the
// spread order (0..N-1, or with spread_over = "hosts" the ranks taken round-robin over the hosts).
int job_runner::home(int i) const {
  if (!cfg_.placement.spread) return 0;
  return spread_order_.empty() ? i % opt_.world_size
                               : spread_order_[static_cast<std::size_t>(i) % spread_order_.size()];
}

// The i-th item encoder: on placement.encoder_ranks (where the accelerators are) when set, else as home(i).
int job_runner::encoder_home(int i) const {
  return encoder_ranks_.empty() ? home(i) : encoder_ranks_[static_cast<std::size_t>(i) % encoder_ranks_.size()];
}

// This process's host as the placement names it: HLLM_HOST_NAME (hllm launch sets it), else the host name.
std::string job_runner::host_label() const {
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
void job_runner::check_same_config() {
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
void job_runner::print_placement() const {
  std::map<int, std::vector<std::string>> at;
  for (int r = 0; r < opt_.world_size; ++r) at[r].push_back("trainer-" + std::to_string(r));
  at[0].push_back("coordinator");
  std::vector<std::string> workers;
  if (cfg_.placement.workers > 0) {
    workers.push_back(std::to_string(cfg_.placement.workers) +
                      " worker processes (loaders, samplers, cache shards) and " +
                      std::to_string(cfg_.placement.encoders) + " encoder processes during the cache fill");
  } else {
    for (int i = 0; i < cfg_.placement.loaders; ++i) at[home(i)].push_back("loader-" + std::to_string(i));
    for (int i = 0; i < cfg_.placement.samplers; ++i) at[home(i)].push_back("sampler-" + std::to_string(i));
    for (int i = 0; i < cfg_.placement.cache_shards; ++i)
      at[home(i)].push_back(msg::shard_name(static_cast<uint32_t>(i)));
    for (int i = 0; i < cfg_.placement.encoders; ++i)
      at[encoder_home(i)].push_back("encoder-" + std::to_string(i) + " (cache fill)");
  }
  std::set<std::string> hosts(rank_hosts_.begin(), rank_hosts_.end());
  spdlog::info("placement: {} ranks on {} hosts", opt_.world_size, std::max<std::size_t>(1, hosts.size()));
  for (const auto& [r, names] : at) {
    std::string line;
    for (const auto& n : names) line += (line.empty() ? "" : ", ") + n;
    if (r == 0 && !workers.empty()) line += ", " + workers.front();
    spdlog::info(
        "placement: rank {} on {}: {}", r,
        static_cast<std::size_t>(r) < rank_hosts_.size() ? rank_hosts_[static_cast<std::size_t>(r)] : host_label(),
        line);
  }
}

// The i-th actor of a kind: spawned here when this process is its home (its spawn enrolls it), else its name is
// routed to the router of the process that hosts it.
void job_runner::place(const std::string& name, int i) {
  if (home(i) == opt_.rank) {
    actors_.push_back(spawn_job_actor(*sys_, router_, name, home_of_actors()));
  } else {
    route_remote(name, home(i));
  }
}

// What this process's data-side actors are spawned with (the dataset was verified once, by data_).
actor_home job_runner::home_of_actors() const {
  actor_home h;
  h.data_dir = opt_.data_dir;
  h.out_dir = opt_.out_dir;
  h.seed = cfg_.job.seed;
  h.cache_shards = static_cast<uint32_t>(cfg_.placement.cache_shards);
  h.num_items = data_.num_items();
  h.job = job_;
  h.threads = static_cast<uint32_t>(threads_);
  h.device = opt_.device;
  return h;
}

// Local actors are enrolled by their spawn; remote names are routed to their process's router.
void job_runner::route_remote(const std::string& name, int rank) {
  if (rank != opt_.rank) add_route(*sys_, router_, name, endpoints_.at(rank));
}

// The incarnation of this job directory: 0 for the first run, one more for every start after it (a resume, a
// restart after a failure). Every envelope carries it; routers drop envelopes of another epoch, so messages of a
// previous incarnation (a late reply, a worker left over) never reach this one.
uint32_t job_runner::next_job_epoch() {
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

void job_runner::start_actors() {
  router_config rc;
  rc.job_id = job_.id;
  rc.job_epoch = job_.epoch;
  // One process without workers: every actor is local. Otherwise each router binds a port; ranks publish theirs
  // in the store.
  const bool bound = group_ || cfg_.placement.workers > 0;
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
  for (int i = 0; i < cfg_.placement.loaders; ++i) loaders_.push_back("loader-" + std::to_string(i));
  for (int i = 0; i < cfg_.placement.samplers; ++i) samplers_.push_back("sampler-" + std::to_string(i));
  if (cfg_.placement.workers > 0) {
    start_workers();
  } else {
    for (int i = 0; i < cfg_.placement.loaders; ++i) place(loaders_[i], i);
    for (int i = 0; i < cfg_.placement.samplers; ++i) place(samplers_[i], i);
    for (int i = 0; i < cfg_.placement.cache_shards; ++i) place(msg::shard_name(static_cast<uint32_t>(i)), i);
    for (int i = 0; i < cfg_.placement.encoders; ++i) route_remote("encoder-" + std::to_string(i), encoder_home(i));
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
               cfg_.placement.loaders, cfg_.placement.samplers, cfg_.placement.cache_shards,
               cfg_.placement.workers > 0 ? std::to_string(cfg_.placement.workers) + " worker processes"
               : cfg_.placement.spread    ? "spread over ranks"
                                          : "all on rank 0");
}

// Where others connect to a port of rank 0's host.
std::string job_runner::connect_host() const {
  if (opt_.host != "0.0.0.0") return opt_.host;
  return opt_.master_addr == "localhost" ? "127.0.0.1" : opt_.master_addr;
}

// Loaders, samplers and cache shards in placement.workers processes on rank 0's host (actor i of a kind on
// worker i % workers), started and watched by rank 0; every rank routes their names to the workers' endpoints,
// which stay the same when a worker is started again.
void job_runner::start_workers() {
  std::vector<std::vector<std::string>> hosted(static_cast<std::size_t>(cfg_.placement.workers));
  for (int i = 0; i < cfg_.placement.loaders; ++i) hosted[i % cfg_.placement.workers].push_back(loaders_[i]);
  for (int i = 0; i < cfg_.placement.samplers; ++i) hosted[i % cfg_.placement.workers].push_back(samplers_[i]);
  for (int i = 0; i < cfg_.placement.cache_shards; ++i)
    hosted[i % cfg_.placement.workers].push_back(msg::shard_name(static_cast<uint32_t>(i)));
  // The encoders' processes start only for the cache fill, but their ports are chosen now: replies travel by
  // address, so the shards must know where the encoders are from the start.
  for (int i = 0; i < cfg_.placement.encoders; ++i) hosted.push_back({"encoder-" + std::to_string(i)});
  const int processes = cfg_.placement.workers + cfg_.placement.encoders;
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
  for (int w = 0; w < cfg_.placement.workers; ++w) {
    workers_.push_back("worker-" + std::to_string(w));
    pool_->start(worker_spec_of(workers_.back(), ports[w].get<int>(), hosted[w], json::object()));
  }
  for (int i = 0; i < cfg_.placement.encoders; ++i)
    encoder_ports_.push_back(ports[cfg_.placement.workers + i].get<int>());
}

worker_pool_options job_runner::pool_options() {
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
worker_spec job_runner::worker_spec_of(const std::string& name, int port, const std::vector<std::string>& actors,
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
            {"seed", cfg_.job.seed},
            {"cache_shards", cfg_.placement.cache_shards},
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
void job_runner::start_monitor() {
  if (!chief_) return;
  monitor_options mo;
  mo.job = job_;
  mo.status_file = opt_.out_dir + "/status.json";
  mo.targets = {"router", "coordinator"};
  for (int r = 0; r < opt_.world_size; ++r) mo.targets.push_back("trainer-" + std::to_string(r));
  for (auto* v : {&loaders_, &samplers_}) mo.targets.insert(mo.targets.end(), v->begin(), v->end());
  for (int i = 0; i < cfg_.placement.cache_shards; ++i) mo.targets.push_back(msg::shard_name(static_cast<uint32_t>(i)));
  for (const auto& w : workers_) mo.targets.push_back(worker_router_name(w));
  // The console (issue 11; docs/operations.md "Monitor the job"): curves from metrics.jsonl, where each actor
  // lives, and the HTTP server of [monitor].
  mo.job_dir = opt_.out_dir;
  const spec::monitor_settings& mc = cfg_.monitor;
  mo.curve_points = static_cast<std::size_t>(mc.curve_points);
  mo.dead_kept = static_cast<std::size_t>(mc.dead_kept);
  for (const auto& m : trained_models) {
    mo.samples_per_step[m.stage] = static_cast<int64_t>(cfg_.schedule(m.stage).batch_size) * opt_.world_size;
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
    mo.locations[name] = cfg_.placement.workers > 0
                             ? "worker-" + std::to_string(i % cfg_.placement.workers) + " @ " + hostname
                             : rank_at(home(i));
  };
  for (int i = 0; i < cfg_.placement.loaders; ++i) data_side(loaders_[i], i);
  for (int i = 0; i < cfg_.placement.samplers; ++i) data_side(samplers_[i], i);
  for (int i = 0; i < cfg_.placement.cache_shards; ++i) data_side(msg::shard_name(static_cast<uint32_t>(i)), i);
  for (const auto& w : workers_) mo.locations[worker_router_name(w)] = w + " @ " + hostname;
  for (int i = 0; i < cfg_.placement.encoders && cfg_.placement.workers > 0; ++i) {
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

}  // namespace job_internal

using namespace job_internal;

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
