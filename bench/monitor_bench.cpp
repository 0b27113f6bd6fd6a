// monitor_bench (issue 11): what the console costs.
//
//   monitor_bench [--hours H] [--actors N] [--steps-per-s S]
//     Memory: a monitor core fed one simulated hour of a long job (every second: a status snapshot of every actor,
//     S metrics step lines, the documents rendered once; every minute a validation and a checkpoint; every 5
//     minutes an encoder retired and a worker respawned) with its HTTP console answering /api/status and /metrics
//     once per simulated second. Prints RSS at 0, 1, 5, 10, 30, 60 simulated minutes (it must stay flat: every
//     history is a bounded ring) and the CPU cost of a round's render and of a request.
//
//   monitor_bench --job --data TINY [--pairs P] [--epochs E] [--bin DIR]
//     The job slowed by its console: the tiny job (one torch thread, E stage-1 epochs, the cache fill, 3 stage-2 epochs, a checkpoint
//     every 20 steps) run with the console off and on (on: a client reading /api/status and /metrics every 100 ms,
//     ten times a browser tab), alternating which goes first, P pairs; prints each run's wall and CPU time (the job
//     process, console threads included) and the ratios of the medians.
#include <httplib.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "actors/monitor.hpp"
#include "actors/monitor_console.hpp"

namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double rss_mib() {
  std::ifstream in("/proc/self/statm");
  long pages = 0, resident = 0;
  in >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

double cpu_seconds() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

const char* arg(int argc, char** argv, const char* name, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
  }
  return fallback;
}

bool flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return true;
  }
  return false;
}

hllm::status_snapshot snapshot_of(const std::string& name, std::int64_t t) {
  hllm::status_snapshot s;
  s.reachable = true;
  s.reply.name = name;
  s.reply.kind = name.substr(0, name.rfind('-'));
  s.reply.state = hllm::msg::actor_state::running;
  s.reply.step = static_cast<std::uint64_t>(t);
  for (const char* c : {"requests", "batches_served", "refused", "puts", "lookups", "rows_present", "rows_expected",
                        "retries"}) {
    s.reply.counters.push_back({c, t * 7});
  }
  s.reply.last_error = t % 97 == 0 ? "timeout: something took too long at t=" + std::to_string(t) : "";
  s.taken = clock_type::now();
  s.taken_unix_ms = t * 1000;
  return s;
}

int memory_bench(int argc, char** argv) {
  const double hours = std::atof(arg(argc, argv, "--hours", "1"));
  const int actors = std::atoi(arg(argc, argv, "--actors", "24"));
  const int steps_per_s = std::atoi(arg(argc, argv, "--steps-per-s", "20"));
  const auto seconds = static_cast<std::int64_t>(hours * 3600);
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("hllm-monitor-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir / "checkpoints");

  hllm::monitor_options mo;
  for (int i = 0; i < actors; ++i) mo.targets.push_back((i % 3 == 0 ? "loader-" : i % 3 == 1 ? "cache-shard-" : "sampler-") + std::to_string(i));
  mo.targets.push_back("trainer-0");
  mo.samples_per_step = {{"stage1", 64}};
  mo.job_dir = dir.string();  // only checkpoints are scanned: the lines below are fed directly
  auto core = std::make_shared<hllm::monitor>(mo);
  hllm::console_options co;
  co.port = 0;
  hllm::monitor_console console(core, co);
  httplib::Client cli("127.0.0.1", console.port());
  cli.set_keep_alive(true);

  std::printf("monitor_bench: %d actors + trainer, %d step lines/s, history %zu, curve_points %zu, dead_kept %zu; "
              "%.1f simulated hours; console on port %d\n",
              actors, steps_per_s, mo.history, mo.curve_points, mo.dead_kept, hours, console.port());
  std::printf("%-12s %10s %12s %14s %14s %10s\n", "simulated", "RSS MiB", "doc KiB", "render ms/round", "request ms",
              "rounds");
  const std::vector<std::int64_t> marks{0, 60, 300, 600, 1800, 3600, 7200, 14400, 21600, 43200, 86400};
  double render_cpu = 0, request_wall = 0;
  std::int64_t step = 0, requests = 0;
  auto report = [&](std::int64_t t) {
    double doc_kib = static_cast<double>(core->published_status()->size()) / 1024.0;
    std::printf("%-12s %10.1f %12.1f %14.3f %14.3f %10lld\n", (std::to_string(t / 60) + " min").c_str(), rss_mib(),
                doc_kib, t > 0 ? 1000.0 * render_cpu / static_cast<double>(t) : 0.0,
                requests > 0 ? 1000.0 * request_wall / static_cast<double>(requests) : 0.0, static_cast<long long>(t));
    std::fflush(stdout);
  };
  report(0);
  for (std::int64_t t = 1; t <= seconds; ++t) {
    for (const auto& a : core->targets()) core->record(a, snapshot_of(a, t));
    for (int k = 0; k < steps_per_s; ++k, ++step) {
      core->ingest_metrics_line(json{{"event", "step"}, {"model", "stage1"}, {"epoch", step / 1000},
                                     {"epoch_step", step % 1000}, {"rank", 0}, {"step", step},
                                     {"loss", 5.0 / (1.0 + static_cast<double>(step) * 1e-4)},
                                     {"nce_top10_acc", 0.5}, {"lr", 1e-3}});
    }
    if (t % 60 == 0) {
      core->ingest_metrics_line(json{{"event", "validation"}, {"model", "stage1"}, {"epoch", t / 60}, {"N@200", 20.0}});
      core->ingest_metrics_line(json{{"event", "checkpoint"}, {"checkpoint", "stage1-e" + std::to_string(t)},
                                     {"bytes", 4700000}, {"seconds", 0.04}});
    }
    if (t % 300 == 0) {
      std::string e = "encoder-" + std::to_string(t);
      core->add_target(e, "worker-encoder");
      core->record(e, snapshot_of(e, t));
      core->remove_target(e);
      core->ingest_metrics_line(json{{"event", "respawn"}, {"worker", "worker-0"}, {"actors", {"loader-0"}},
                                     {"respawns", t / 300}, {"reason", "exited with signal 9"}});
    }
    core->round_done();
    double c0 = cpu_seconds();
    core->publish();
    render_cpu += cpu_seconds() - c0;
    auto r0 = clock_type::now();
    auto a = cli.Get("/api/status");
    auto m = cli.Get("/metrics");
    request_wall += std::chrono::duration<double>(clock_type::now() - r0).count() / 2;
    requests += 1;
    if (!a || a->status != 200 || !m || m->status != 200) {
      std::fprintf(stderr, "monitor_bench: a console request failed at t=%lld\n", static_cast<long long>(t));
      return 1;
    }
    if (std::find(marks.begin(), marks.end(), t) != marks.end() || t == seconds) report(t);
  }
  console.stop();
  fs::remove_all(dir);
  return 0;
}

// ---- the job with the console off and on ----

struct job_time {
  double wall = 0, cpu = 0;  // cpu: user + system seconds of the job process (the console's threads included)
};

job_time run_job(const std::string& bin, const std::string& data, const std::string& out, bool console,
                 std::atomic<long>* served, int epochs) {
  namespace fs = std::filesystem;
  fs::remove_all(out);
  std::vector<std::string> args{bin + "/hllm-train", "--data", data, "--out", out, "--monitor-port",
                                console ? "0" : "-1"};
  args.push_back("--set");
  args.push_back("stage1.epochs=" + std::to_string(epochs));
  // One torch thread: on a shared 2-core machine two spinning OpenMP threads make the wall time swing several-fold
  // with the load of other processes, which would drown the console's share.
  args.push_back("--set");
  args.push_back("job.threads=1");
  for (const char* s : {"job.stages=[\"stage1\", \"cache\", \"stage2\"]", "stage1.batch_size=32",
                        "stage1.seq_len=6", "stage1.negatives=64", "stage2.epochs=3", "stage2.batch_size=32",
                        "stage2.seq_len=8", "stage2.negatives=64", "model.hidden_size=32",
                        "model.intermediate_size=64", "model.item_layers=1", "model.user_layers=1",
                        "cache.unit_items=50", "train.checkpoint_every_steps=20"}) {
    args.push_back("--set");
    args.push_back(s);
  }
  auto t0 = clock_type::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  std::atomic<bool> done{false};
  std::thread poller;
  if (console) {
    poller = std::thread([&] {
      int port = 0;
      while (!done && port == 0) {
        std::ifstream in(out + "/console.json");
        std::stringstream s;
        s << in.rdbuf();
        auto j = json::parse(s.str(), nullptr, false);
        if (!j.is_discarded() && j.contains("port")) port = j["port"].get<int>();
        else std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      httplib::Client cli("127.0.0.1", port);
      while (!done) {
        auto a = cli.Get("/api/status");
        auto m = cli.Get("/metrics");
        if (a && a->status == 200) ++*served;
        if (m && m->status == 200) ++*served;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
  }
  int status = 0;
  rusage ru{};
  ::wait4(pid, &status, 0, &ru);
  job_time s;
  s.wall = std::chrono::duration<double>(clock_type::now() - t0).count();
  s.cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
          static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  done = true;
  if (poller.joinable()) poller.join();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "monitor_bench: the job failed (exit status %d)\n", status);
    std::exit(1);
  }
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

int job_bench(int argc, char** argv) {
  const char* env_data = std::getenv("HLLM_TINY_DATA");
  std::string data = arg(argc, argv, "--data", env_data != nullptr ? env_data : "");
  if (data.empty()) {
    std::fprintf(stderr, "monitor_bench --job: --data DIR (a prepared dataset, e.g. build/test-data/tiny/prepared)\n");
    return 2;
  }
  std::string bin = arg(argc, argv, "--bin", HLLM_BIN_DIR);
  int pairs = std::atoi(arg(argc, argv, "--pairs", "6"));
  int epochs = std::atoi(arg(argc, argv, "--epochs", "8"));
  std::string out = (std::filesystem::temp_directory_path() / ("hllm-monitor-bench-job-" + std::to_string(::getpid()))).string();
  std::vector<double> off, on, off_cpu, on_cpu;
  std::atomic<long> served{0};
  for (int p = 0; p < pairs; ++p) {
    // Alternate which goes first, so a drift of the machine's load hits both arms alike.
    for (bool console : p % 2 == 0 ? std::vector<bool>{false, true} : std::vector<bool>{true, false}) {
      auto s = run_job(bin, data, out, console, &served, epochs);
      (console ? on : off).push_back(s.wall);
      (console ? on_cpu : off_cpu).push_back(s.cpu);
      std::printf("pair %d console %-3s wall %6.2f s  cpu %6.2f s\n", p + 1, console ? "on" : "off", s.wall, s.cpu);
      std::fflush(stdout);
    }
  }
  std::filesystem::remove_all(out);
  std::printf("median wall: off %.2f s, on %.2f s: on/off = %.3f\n", median(off), median(on),
              median(on) / median(off));
  std::printf("median cpu:  off %.2f s, on %.2f s: on/off = %.3f (%ld console requests answered)\n", median(off_cpu),
              median(on_cpu), median(on_cpu) / median(off_cpu), served.load());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (flag(argc, argv, "--help")) {
    std::printf("usage: monitor_bench [--hours H] [--actors N] [--steps-per-s S]\n"
                "       monitor_bench --job [--data DIR] [--pairs P] [--epochs E] [--bin DIR]\n");
    return 0;
  }
  try {
    return flag(argc, argv, "--job") ? job_bench(argc, argv) : memory_bench(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "monitor_bench: %s\n", e.what());
    return 1;
  }
}
