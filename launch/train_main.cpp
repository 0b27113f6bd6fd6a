// `hllm train`: runs a training job (actors/job.hpp). Links libtorch, never sentencepiece.
//
// Processes: `--world N` starts N trainer ranks on this host (this process is rank 0 and starts the others, like
// torchrun's standalone mode). Under torchrun or Slurm the launcher starts every rank itself: RANK/WORLD_SIZE/
// MASTER_ADDR/MASTER_PORT (or SLURM_PROCID/SLURM_NTASKS) are read from the environment.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <spdlog/spdlog.h>

#include "actors/job.hpp"
#include "actors/monitor_console_token.hpp"
#include "launch/default_job.hpp"
#include "launch/job_config.hpp"
#include "launch/job_directory.hpp"
#include "model/trainer.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/net.hpp"
#include "storage/number.hpp"

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

// Starts ranks 1..world-1 as children running the same command; they die with this process.
std::vector<pid_t> start_local_ranks(int argc, char** argv, int world, std::uint16_t port) {
  std::vector<pid_t> pids;
  for (int r = 1; r < world; ++r) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(world).c_str(), 1);
      std::vector<char*> args;
      for (int i = 0; i < argc; ++i) args.push_back(argv[i]);
      args.push_back(nullptr);
      ::execv("/proc/self/exe", args.data());
      std::perror("hllm train: cannot start a rank");
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  return pids;
}

// The same command line with `--resume auto --max-restarts LEFT` in place of any --resume/--max-restarts, and
// without --fresh (the restarted job continues this run; it never sets this run's checkpoints aside).
std::vector<std::string> restart_args(int argc, char** argv, int left) {
  std::vector<std::string> out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--resume" || a == "--max-restarts") {
      ++i;  // and its value
      continue;
    }
    if (a.rfind("--resume=", 0) == 0 || a.rfind("--max-restarts=", 0) == 0 || a == "--fresh") continue;
    out.push_back(a);
  }
  for (std::string a : {"--resume", "auto", "--max-restarts"}) out.push_back(a);
  out.push_back(std::to_string(left));
  return out;
}

// Rank 0, before anything is written into --out: the job directory belongs to one job (launch/job_directory.hpp).
// Refuses (hllm::error, one line) a resume of another config or dataset and a new run over an earlier one unless
// `fresh`; with `fresh` the earlier run's files are moved to OUT/previous-<time>/. Then writes job.toml (without the
// token), OUT/dataset and OUT/dataset.json.
void claim_job_directory(const std::string& out_dir, const std::string& data_dir, const std::string& resume,
                         bool fresh, const hllm::launch::job_config& cfg, bool token_set) {
  namespace jd = hllm::job_directory;
  const auto data = jd::identify_dataset(data_dir);
  const auto earlier = jd::inspect(out_dir);
  if (earlier.any()) {
    const std::string differs = resume == "never" ? "" : jd::differences(earlier, cfg, data);
    const bool continue_it = resume != "never" && differs.empty();
    if (!continue_it && !fresh) {
      if (resume == "never") {
        throw hllm::error(hllm::errc::invalid_input,
                          "--out '" + out_dir + "' holds an earlier run (" + earlier.describe() +
                              "); continue it with --resume auto, or start over with --fresh (its files are moved "
                              "to '" + out_dir + "/previous-<time>/'); nothing was changed");
      }
      throw hllm::error(hllm::errc::mismatch,
                        "--out '" + out_dir + "' holds another job's run (" + earlier.describe() + "): " + differs +
                            "; resume with the same --config, --set and --data, or start over with --fresh (its "
                            "files are moved to '" + out_dir + "/previous-<time>/'); nothing was changed");
    }
    if (!continue_it) {
      const std::string aside = jd::set_aside(out_dir);
      spdlog::warn("--fresh: the earlier run in {} ({}) was moved to {}; this run starts from the beginning",
                   out_dir, earlier.describe(), aside);
    }
  }
  std::filesystem::create_directories(out_dir);
  std::string toml = jd::recorded(cfg, token_set).to_toml();
  hllm::storage::write_file_durably(out_dir + "/job.toml", toml.data(), toml.size());
  // The dataset's path, for the stage-3 commands (hllm export, hllm recommend), and its identity.
  const std::string path_line = data.path + "\n";
  hllm::storage::write_file_durably(out_dir + "/dataset", path_line.data(), path_line.size());
  const std::string id = data.to_json().dump(1) + "\n";
  hllm::storage::write_file_durably(out_dir + "/dataset.json", id.data(), id.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path, data_dir, out_dir = "hllm-job";
  std::vector<std::string> sets;
  int world = 1;
  bool print_config = false;
  std::string resume = "never";
  int max_restarts = 0;
  std::string worker_spec;
  CLI::App app{"hllm train: run a training job (stage 1, cache fill, stage 2, evaluation) on a prepared dataset",
               "hllm train"};
  app.add_option("--config", config_path, "job config (TOML); default: the embedded default job");
  app.add_option("--data", data_dir, "prepared dataset directory (hllm prepare)");
  app.add_option("--out", out_dir, "job directory: checkpoints, cache, metrics.jsonl, results")->capture_default_str();
  app.add_option("--set", sets,
                 "override a config value: section.key=value (repeatable). Not for secrets: every user of the host "
                 "can read a command line in /proc/PID/cmdline; give the console token with --monitor-token-file or "
                 "HLLM_MONITOR_TOKEN, not --set monitor.token=...");
  app.add_option("--world", world, "trainer processes to start on this host (data-parallel ranks; under torchrun "
                                   "or Slurm the environment decides)")
      ->capture_default_str();
  app.add_option("--resume", resume,
                 "auto: continue from the newest valid checkpoint in OUT/checkpoints (a truncated, corrupt or "
                 "foreign one is reported and skipped); never: start from the beginning; or a checkpoint directory. "
                 "A resume of another config (keys outside the operational ones) or another dataset is refused, "
                 "naming what differs, and changes nothing")
      ->capture_default_str();
  bool fresh = false;
  app.add_flag("--fresh", fresh,
               "start over in an --out that holds an earlier run (refused without this flag): the earlier run's "
               "files (checkpoints, metrics, stage bests, cache, results, job.toml) are moved, not deleted, to "
               "OUT/previous-<UTC time>/. With --resume auto a run of the same config and dataset is still "
               "continued");
  std::string monitor_token_file;
  app.add_option("--monitor-token-file", monitor_token_file,
                 "read the console's bearer token from this file (mode 600 or stricter; one line). Prefer it, or "
                 "the environment variable HLLM_MONITOR_TOKEN, to --set monitor.token=..., which any user of the "
                 "host can read in /proc/PID/cmdline. JOB/job.toml records only that a token was set");
  app.add_option("--max-restarts", max_restarts,
                 "when this process started the ranks itself (no torchrun/Slurm): after a failure (a rank died, a "
                 "collective timed out) stop every rank and start the job again with --resume auto, at most this "
                 "many times (like torchrun's --max-restarts)")
      ->capture_default_str();
  std::string device;
  app.add_option("--device", device,
                 "where the trainers and item encoders compute (same as --set train.device=...): auto (a GPU when "
                 "this build has CUDA and one is visible, else the CPU), cpu, cuda (cuda:LOCAL_RANK) or cuda:N");
  int monitor_port = -2;
  app.add_option("--monitor-port", monitor_port,
                 "HTTP port of the job's console (/, /api/status, /metrics; same as --set monitor.port=N): 0 picks a "
                 "free one and logs it, -1 turns the console off")
      ->check(CLI::Range(-1, 65535));
  app.add_flag("--print-config", print_config, "print the effective config as TOML and exit");
  app.add_option("--worker", worker_spec,
                 "run as a worker process of a job (placement.workers > 0): host the actors named in this spec "
                 "file, which rank 0 writes and runs this with; not for direct use");
  CLI11_PARSE(app, argc, argv);
  if (!worker_spec.empty()) {
    try {
      return hllm::run_worker(worker_spec);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hllm train --worker %s: error: %s\n", worker_spec.c_str(), e.what());
      return 1;
    }
  }
  if (data_dir.empty() && !print_config) {
    std::fprintf(stderr, "hllm train: --data is required (a prepared dataset directory, see hllm prepare)\n");
    return 2;
  }
  std::vector<pid_t> children;
  const bool launcher = env("RANK") == nullptr && env("SLURM_PROCID") == nullptr;
  int rc = 1;
  bool started = false;  // the job ran: only a failure while it runs is restarted (never a refused start)
  try {
    if (monitor_port != -2) sets.push_back("monitor.port=" + std::to_string(monitor_port));
    if (!device.empty()) sets.push_back("train.device=\"" + device + "\"");
    auto cfg = hllm::launch::job_config::load(config_path, sets, hllm::launch::default_job_toml);
    const char* env_token = env("HLLM_MONITOR_TOKEN");
    const bool token_set = !monitor_token_file.empty() || env_token != nullptr;
    if (print_config) {
      // As job.toml records it: a token is never printed.
      std::printf("%s", hllm::job_directory::recorded(cfg, token_set).to_toml().c_str());
      return 0;
    }
    hllm::job_options o;
    o.spec = cfg.spec();
    o.config_hash = cfg.hash();
    o.effective_hash = cfg.effective_hash();
    o.data_dir = data_dir;
    o.out_dir = out_dir;
    o.resume = resume;
    if (!monitor_token_file.empty()) o.monitor_token = hllm::load_monitor_token(monitor_token_file);
    // Workers run this very executable: "/proc/self/exe" (which the forked child execs) stays valid when the file
    // is replaced or deleted while the job runs (a rebuild, an upgrade), where its resolved path would then name
    // another build or nothing ("... (deleted)": every respawn failed with exit status 127).
    o.worker_executable = "/proc/self/exe";
    if (const char* r = env("RANK") ? env("RANK") : env("SLURM_PROCID")) {
      // Strict numbers (storage/number.hpp): "70000" is not silently port 4464, "1x" not rank 1.
      using hllm::storage::parse_int;
      const char* world_var = env("WORLD_SIZE") ? "WORLD_SIZE" : "SLURM_NTASKS";
      o.world_size = env(world_var) ? parse_int<int>(env(world_var), std::string("environment variable ") + world_var,
                                                     1, 1 << 20)
                                    : 1;
      o.rank = parse_int<int>(r, env("RANK") ? "environment variable RANK" : "environment variable SLURM_PROCID", 0,
                              o.world_size - 1);
      o.master_addr = env("MASTER_ADDR") ? env("MASTER_ADDR") : "127.0.0.1";
      o.master_port = env("MASTER_PORT") ? parse_int<std::uint16_t>(env("MASTER_PORT"),
                                                                    "environment variable MASTER_PORT", 1, 65535)
                                         : std::uint16_t{29500};
      if (const char* l = env("LOCAL_WORLD_SIZE")) {
        o.local_ranks = parse_int<int>(l, "environment variable LOCAL_WORLD_SIZE", 1, 1 << 20);
      } else if (const char* sl = env("SLURM_NTASKS_PER_NODE")) {
        // Slurm writes "2" or, for unequal nodes, "2(x3),1": this node's count is the first number.
        const std::string first(sl, std::strcspn(sl, "(,"));
        o.local_ranks = parse_int<int>(first, "environment variable SLURM_NTASKS_PER_NODE", 1, 1 << 20);
      } else if (o.master_addr == "127.0.0.1" || o.master_addr == "localhost") {
        o.local_ranks = o.world_size;
      }
      if (const char* h = env("HLLM_HOST")) o.host = h;
      else if (o.master_addr != "127.0.0.1" && o.master_addr != "localhost") o.host = "0.0.0.0";
    } else if (world > 1) {
      o.world_size = world;
      o.local_ranks = world;
      o.master_port = hllm::storage::free_tcp_port();
    } else if (world < 1) {
      throw hllm::error(hllm::errc::invalid_input, "--world must be at least 1");
    }
    spdlog::set_pattern(o.world_size > 1 ? "[%H:%M:%S r" + std::to_string(o.rank) + "] %v" : "[%H:%M:%S] %v");
    // The device, before anything else: `cuda` where this build or machine has none is one error line, at once.
    {
      int local_rank = o.rank % std::max(1, o.local_ranks);
      if (const char* lr = env("LOCAL_RANK")) {
        local_rank = hllm::storage::parse_int<int>(lr, "environment variable LOCAL_RANK", 0, 1 << 20);
      } else if (const char* sl = env("SLURM_LOCALID")) {
        local_rank = hllm::storage::parse_int<int>(sl, "environment variable SLURM_LOCALID", 0, 1 << 20);
      }
      o.device = hllm::model::resolve_device(o.spec.train.device, local_rank);
    }
    // Rank 0 decides whether this run may use --out, before any rank starts (ranks started by a launcher wait for
    // rank 0's store, which rank 0 opens only after this) and before anything in it changes.
    if (o.rank == 0) claim_job_directory(out_dir, data_dir, resume, fresh, cfg, token_set);
    std::filesystem::create_directories(out_dir);
    if (launcher && world > 1) children = start_local_ranks(argc, argv, world, o.master_port);
    started = true;
    rc = hllm::run_job(o);
    for (pid_t& pid : children) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::fprintf(stderr, "hllm train: rank process %d failed\n", static_cast<int>(pid));
        rc = 1;
      }
      pid = 0;  // reaped
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm train: error: %s\n", e.what());
    rc = 1;
  }
  // A refused start (bad arguments, a job directory of another job) is not restarted: a restart passes --resume
  // auto, which would turn a refused `--resume never` into a resume.
  if (rc == 0 || !started || !launcher || max_restarts <= 0) return rc;
  // The ranks of a failed incarnation may still wait in a collective: stop them before starting the next one.
  for (pid_t pid : children) {
    if (pid <= 0) continue;
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  std::fprintf(stderr, "hllm train: restarting the job from its newest checkpoint (%d restarts left after this)\n",
               max_restarts - 1);
  std::fflush(stderr);
  std::fflush(stdout);
  auto args = restart_args(argc, argv, max_restarts - 1);
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  ::execv("/proc/self/exe", cargs.data());
  std::perror("hllm train: cannot restart");
  return 1;
}
