// The crash test (issue 6), in the spirit of RocksDB's: for a given duration, run the tiny two-rank job with worker
// processes again and again and kill random processes of it at random times: rank 0 (SIGKILL: the whole job dies
// and is started again with --resume auto), rank 1 (SIGKILL, or SIGSTOP: the launcher restarts every rank from the
// newest checkpoint), a worker hosting loaders, the sampler and cache shards (SIGKILL, or SIGSTOP: only heartbeats
// notice), or the item encoder's process during the cache fill. Each job ("cycle") is then let finish and must end
// with exit status 0, the digest of an uninterrupted reference run, valid checkpoints, and a sample ledger that holds
// every batch of each rank exactly once. Deterministic for a given --seed apart from timing (which processes are
// alive when a kill is due). docs/operations.md "Crash test".
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../job/job_check.hpp"

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ---- The live process tree of a job ----------------------------------------------------------------------------

enum class kind { rank0, rank1, worker, encoder, other };
const char* kind_name(kind k) {
  switch (k) {
    case kind::rank0: return "rank 0";
    case kind::rank1: return "rank 1";
    case kind::worker: return "worker";
    case kind::encoder: return "encoder";
    default: return "other";
  }
}

struct proc {
  pid_t pid = 0;
  kind k = kind::other;
  std::string name;  // worker-0, worker-encoder-0, rank 1, ...
  char state = '?';
};

// Children of PID over all its threads (a child forked by a thread is listed under that thread only).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::istringstream in(read_file(t.path().string() + "/children"));
    for (long c; in >> c;) out.push_back(static_cast<pid_t>(c));
  }
  return out;
}

char state_of(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

std::vector<std::string> cmdline_of(pid_t pid) {
  std::string raw = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> out;
  std::string cur;
  for (char c : raw) {
    if (c == '\0') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  return out;
}

// Whether NAME=VALUE is in the environment PID started with.
bool has_env(pid_t pid, const std::string& entry) {
  std::string env = std::string(1, '\0') + read_file("/proc/" + std::to_string(pid) + "/environ");
  return env.find(std::string(1, '\0') + entry + std::string(1, '\0')) != std::string::npos;
}

// Rank 0 and every descendant that is not a zombie, classified by its command line.
std::vector<proc> job_tree(pid_t rank0) {
  std::vector<proc> out;
  std::vector<pid_t> todo{rank0};
  std::set<pid_t> seen;
  while (!todo.empty()) {
    pid_t p = todo.back();
    todo.pop_back();
    if (!seen.insert(p).second) continue;
    char st = state_of(p);
    if (st == '?') continue;  // gone
    for (pid_t c : children_of(p)) todo.push_back(c);
    if (st == 'Z' || st == 'X') continue;
    proc pr{p, kind::other, "", st};
    auto cmd = cmdline_of(p);
    auto w = std::find(cmd.begin(), cmd.end(), "--worker");
    if (p == rank0) {
      pr.k = kind::rank0;
      pr.name = "rank 0";
    } else if (w != cmd.end() && w + 1 != cmd.end()) {
      pr.name = fs::path(*(w + 1)).stem().string();
      pr.k = pr.name.rfind("worker-encoder", 0) == 0 ? kind::encoder : kind::worker;
    } else if (has_env(p, "RANK=1")) {
      pr.k = kind::rank1;  // (a child of rank 0 between its fork and exec has rank 0's environment: "other")
      pr.name = "rank 1";
    } else {
      pr.name = cmd.empty() ? "?" : cmd[0];
    }
    out.push_back(pr);
  }
  return out;
}

std::string describe_tree(const std::vector<proc>& tree) {
  std::string out;
  for (const auto& p : tree) {
    out += "  pid " + std::to_string(p.pid) + " " + p.name + " state " + p.state + " wchan " +
           read_file("/proc/" + std::to_string(p.pid) + "/wchan") + "\n";
  }
  return out;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + ::strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// The last N lines of a file.
std::string tail(const std::string& path, int n) {
  std::string text = read_file(path);
  std::size_t pos = text.size();
  for (int i = 0; i <= n && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

// ---- The harness -----------------------------------------------------------------------------------------------

struct options {
  double duration = 60;
  std::uint64_t seed = 0;
  std::string work, data, bin;
  int max_kills = 6;         // per cycle: 1..max_kills
  double min_gap = 0.05;     // seconds between the (re)start or the previous kill and the next kill
  double max_gap = 5.0;
  double hunt = 2.0;         // how long a kill waits for a process of the drawn kind before taking any live one
  double stall = 240;        // no progress for this long after the last kill: the job hangs (a worker that hangs
                             // while starting holds rank 0 for 120 s, worker_pool_options::start_timeout)
  double orphan_wait = 15;   // a process of a dead rank 0 must be gone by then
  bool keep = false;
};

// What was done and seen, for the summary.
struct tally {
  std::map<std::pair<std::string, std::string>, int> kills;  // (kind, signal) -> count
  int kills_total = 0;
  int cycles = 0, cycles_passed = 0;
  int harness_restarts = 0;   // starts of a job after its rank 0 died
  int launcher_restarts = 0;  // "restarting the job from its newest checkpoint" (--max-restarts)
  int respawns = 0;           // worker respawns (metrics.jsonl "respawn" events)
  int resumes = 0;            // resume lines with a checkpoint
  std::map<std::string, int> restart_reasons;  // the error a launcher restart followed
  int unexplained_restarts = 0;                // launcher restarts without a trainer kill before them
  // Pauses of the jobs' progress (no step, checkpoint, phase or validation line) over 30 s, longest first, with
  // the kill they followed.
  std::vector<std::pair<double, std::string>> pauses;
  double longest_pause = 0;
  std::string longest_pause_after;
};

class harness {
 public:
  harness(options o) : opt_(std::move(o)), rng_(opt_.seed) {}

  int run();

 private:
  options opt_;
  std::mt19937_64 rng_;
  tally t_;
  std::string failure_;
  std::string reference_digest_;
  clock_type::time_point start_ = clock_type::now();

  double uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

  void log(const std::string& line) {
    std::printf("[%7.1fs] %s\n", seconds_since(start_), line.c_str());
    std::fflush(stdout);
  }

  std::vector<std::string> job_argv(const std::string& out) const {
    std::vector<std::string> a{opt_.bin + "/hllm", "train", "--out", out, "--data", opt_.data, "--world", "2"};
    std::vector<std::string> sets = hllm::test::tiny_job_sets();
    for (const auto& s : hllm::test::worker_job_sets()) sets.push_back(s);
    for (std::string s : {"stage1.batch_size=16", "stage2.batch_size=16", "train.collective_timeout_s=20"}) {
      sets.push_back(s);
    }
    for (const auto& s : sets) {
      a.push_back("--set");
      a.push_back(s);
    }
    for (std::string s : {"--resume", "auto", "--max-restarts", "1000"}) a.push_back(s);
    return a;
  }

  // Starts the job in OUT (appending its output to LOG); returns rank 0's pid.
  pid_t start_job(const std::string& out, const std::string& log_path) {
    auto args = job_argv(out);
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the job (and so what it started) never outlives the harness
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    if (fd >= 0) ::close(fd);
    return pid;
  }

  // Reaps every child of the harness (orphans of a dead rank 0 are reparented here: PR_SET_CHILD_SUBREAPER);
  // true with *status when RANK0 was among them.
  bool reap(pid_t rank0, int* status) {
    bool done = false;
    for (;;) {
      int st = 0;
      pid_t p = ::waitpid(-1, &st, WNOHANG);
      if (p <= 0) break;
      if (p == rank0) {
        *status = st;
        done = true;
      }
    }
    return done;
  }

  // After rank 0 is gone, what it started must follow (PR_SET_PDEATHSIG); processes the harness stopped are
  // continued so that they can. False (and the survivors killed) when something outlived it by opt_.orphan_wait.
  bool wait_for_orphans(const std::string& what) {
    auto t0 = clock_type::now();
    for (pid_t p : children_of(::getpid())) ::kill(p, SIGCONT);
    for (;;) {
      int st = 0;
      while (::waitpid(-1, &st, WNOHANG) > 0) {
      }
      auto left = children_of(::getpid());
      if (left.empty()) return true;
      if (seconds_since(t0) > opt_.orphan_wait) {
        std::string names;
        for (pid_t p : left) {
          auto cmd = cmdline_of(p);
          names += " " + std::to_string(p) + " (" + (cmd.empty() ? "?" : cmd.back()) + ", state " + state_of(p) + ")";
          ::kill(p, SIGKILL);
        }
        while (::waitpid(-1, &st, 0) > 0) {
        }
        failure_ = what + ": processes outlived rank 0 by " + std::to_string(static_cast<int>(opt_.orphan_wait)) +
                   " s:" + names;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  // Progress of a job: its steps, checkpoints, phases and validations in the metrics files (not respawns or
  // resumes, which a job that gets nowhere may write forever).
  int progress(const std::string& out) {
    int n = 0;
    for (int rank = 0; rank < 2; ++rank) {
      for (const char* ev : {"step", "checkpoint", "phase", "validation"}) {
        n += hllm::test::metrics_lines_with(out, std::string("\"event\":\"") + ev + "\"", rank);
      }
    }
    return n;
  }

  bool run_reference(const std::string& ref);
  bool run_cycle(int cycle);
  bool verify_cycle(const std::string& out, const std::string& log_path, int trainer_kills);
  void kill_all(pid_t rank0) {
    for (const auto& p : job_tree(rank0)) ::kill(p.pid, SIGKILL);
  }
};

bool harness::run_reference(const std::string& ref) {
  log("reference: an uninterrupted run in " + ref);
  pid_t pid = start_job(ref, ref + ".log");
  int status = 0;
  auto t0 = clock_type::now();
  int last = 0;
  auto last_change = clock_type::now();
  while (!reap(pid, &status)) {
    int now = progress(ref);
    if (now != last) {
      last = now;
      last_change = clock_type::now();
    } else if (seconds_since(last_change) > opt_.stall) {
      failure_ = "the reference run makes no progress (no step, checkpoint, phase or validation line for " +
                 std::to_string(static_cast<int>(opt_.stall)) + " s):\n" + describe_tree(job_tree(pid)) +
                 "its log ends:\n" + tail(ref + ".log", 30);
      kill_all(pid);
      wait_for_orphans("reference");
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!wait_for_orphans("reference")) return false;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    failure_ = "the reference run failed (" + describe_status(status) + "):\n" + tail(ref + ".log", 20);
    return false;
  }
  reference_digest_ = hllm::test::digest(opt_.bin + "/hllm", ref);
  log("reference: " + std::to_string(hllm::test::step_lines(ref)) + " step lines, digest " + reference_digest_ +
      ", " + std::to_string(seconds_since(t0)).substr(0, 4) + " s");
  if (reference_digest_.size() != 16) {
    failure_ = "no digest of the reference run: " + reference_digest_;
    return false;
  }
  return true;
}

// One job: started, killed 1..max_kills times (while the duration lasts), restarted whenever rank 0 died, then let
// finish and verified.
bool harness::run_cycle(int cycle) {
  const std::string out = opt_.work + "/job-" + std::to_string(cycle);
  const std::string log_path = out + ".log";
  std::error_code ec;
  fs::remove_all(out, ec);
  fs::remove(log_path, ec);
  ++t_.cycles;
  // The plan of this cycle, drawn up front so that it depends on the seed only.
  const int planned = 1 + static_cast<int>(rng_() % static_cast<std::uint64_t>(opt_.max_kills));
  log("cycle " + std::to_string(cycle) + ": " + out + ", up to " + std::to_string(planned) + " kills");
  int kills = 0, trainer_kills = 0;
  pid_t rank0 = start_job(out, log_path);
  auto last_event = clock_type::now();
  int last_progress = 0;
  auto last_change = clock_type::now();
  auto last_kill = clock_type::time_point{};
  std::string pause_cause;  // the first kill since the last progress
  // A pause of progress that ends now: remembered with the first kill in it.
  auto pause_ends = [&] {
    double pause = seconds_since(last_change);
    std::string after = (last_kill >= last_change ? pause_cause : std::string("no kill")) + " (cycle " +
                        std::to_string(cycle) + ")";
    if (pause > t_.longest_pause) {
      t_.longest_pause = pause;
      t_.longest_pause_after = after;
    }
    if (pause > 30) t_.pauses.emplace_back(pause, after);
  };
  // The next kill: when, which kind, which one of that kind, which signal (four draws each, whatever happens).
  struct plan {
    double gap;
    double kind_u, index_u, signal_u;
  };
  auto draw = [&] {
    double gap = opt_.min_gap + (opt_.max_gap - opt_.min_gap) * uniform();
    double kind_u = uniform(), index_u = uniform(), signal_u = uniform();
    return plan{gap, kind_u, index_u, signal_u};
  };
  plan next = draw();
  std::set<pid_t> stopped;
  clock_type::time_point encoder_seen{};
  for (;;) {
    int status = 0;
    if (reap(rank0, &status)) {
      stopped.clear();
      if (!wait_for_orphans("cycle " + std::to_string(cycle))) return false;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        pause_ends();
        break;  // finished
      }
      bool ours = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
      if (!ours) {
        failure_ = "cycle " + std::to_string(cycle) + ": rank 0 ended with " + describe_status(status) +
                   " (not killed by the harness):\n" + tail(log_path, 30);
        return false;
      }
      ++t_.harness_restarts;
      rank0 = start_job(out, log_path);
      last_event = clock_type::now();
      continue;
    }
    // Hang watchdog: within opt_.stall of the last kill or progress, the job must write a metrics line.
    int now = progress(out);
    if (now != last_progress) {
      pause_ends();
      last_progress = now;
      last_change = clock_type::now();
    } else if (seconds_since(std::max(last_change, last_event)) > opt_.stall) {
      failure_ = "cycle " + std::to_string(cycle) +
                 ": the job makes no progress (no step, checkpoint, phase or validation line for " +
                 std::to_string(static_cast<int>(opt_.stall)) + " s); its processes:\n" +
                 describe_tree(job_tree(rank0)) + "its log ends:\n" + tail(log_path, 30);
      kill_all(rank0);
      int st = 0;
      while (::waitpid(-1, &st, 0) > 0) {
      }
      return false;
    }
    bool due = kills < planned && seconds_since(start_) < opt_.duration &&
               seconds_since(last_event) >= next.gap;
    if (!due) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    // Kinds by weight: rank 0 20%, rank 1 20%, a worker 40%, the encoder 20%.
    kind want = next.kind_u < 0.2   ? kind::rank0
                : next.kind_u < 0.4 ? kind::rank1
                : next.kind_u < 0.8 ? kind::worker
                                    : kind::encoder;
    auto tree = job_tree(rank0);
    std::vector<proc> of_kind, alive;
    for (const auto& p : tree) {
      if (p.state == 'T' || p.state == 't' || stopped.count(p.pid) != 0) continue;  // already hung by us
      if (p.k == kind::other) continue;
      alive.push_back(p);
      if (p.k == want) of_kind.push_back(p);
    }
    // None of that kind: wait a little for one. The encoder's process lives only during the cache fill (under a
    // second here), so it is waited for until stage 2 trains in this job (up to 20 s) and then killed a random
    // part of half a second after it shows up.
    if (want == kind::encoder) {
      if (of_kind.empty()) {
        encoder_seen = clock_type::time_point{};
        bool fill_ahead = hllm::test::metrics_lines_with(out, "\"model\":\"stage2\"") == 0;
        if (fill_ahead && seconds_since(last_event) < next.gap + 20) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
      } else {
        if (encoder_seen == clock_type::time_point{}) encoder_seen = clock_type::now();
        if (seconds_since(encoder_seen) < 0.5 * next.signal_u) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          continue;
        }
      }
    }
    if (of_kind.empty() && seconds_since(last_event) < next.gap + opt_.hunt) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    const auto& pool = of_kind.empty() ? alive : of_kind;
    if (pool.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    const proc target = pool[std::min(pool.size() - 1, static_cast<std::size_t>(next.index_u * pool.size()))];
    // SIGSTOP: a quarter of the worker kills (heartbeats must notice), a tenth of the rank-1 kills (the collective
    // timeout must notice). Rank 0 and the encoder always get SIGKILL.
    int sig = SIGKILL;
    if ((target.k == kind::worker && next.signal_u < 0.25) || (target.k == kind::rank1 && next.signal_u < 0.1)) {
      sig = SIGSTOP;
    }
    const int at_step = hllm::test::step_lines(out);
    if (::kill(target.pid, sig) != 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;  // it died meanwhile: draw no new plan, take another one
    }
    if (sig == SIGSTOP) stopped.insert(target.pid);
    ++kills;
    ++t_.kills_total;
    trainer_kills += target.k == kind::rank1;
    const std::string signame = sig == SIGKILL ? "SIGKILL" : "SIGSTOP";
    ++t_.kills[{kind_name(target.k), signame}];
    log("cycle " + std::to_string(cycle) + " kill " + std::to_string(kills) + ": " + signame + " " + target.name +
        " (pid " + std::to_string(target.pid) + ") at step line " + std::to_string(at_step));
    if (last_kill < last_change) pause_cause = signame + " " + target.name;
    last_event = clock_type::now();
    last_kill = last_event;
    encoder_seen = clock_type::time_point{};
    next = draw();
  }
  return verify_cycle(out, log_path, trainer_kills);
}

bool harness::verify_cycle(const std::string& out, const std::string& log_path, int trainer_kills) {
  const std::string ref = opt_.work + "/ref";
  std::string why;
  std::string d = hllm::test::digest(opt_.bin + "/hllm", out);
  if (d != reference_digest_) why += "digest " + d + ", the reference's " + reference_digest_ + "\n";
  for (int rank = 0; rank < 2; ++rank) {
    std::string diff = hllm::test::ledger_differences(ref, out, -1, rank);
    if (!diff.empty()) why += "sample ledger of rank " + std::to_string(rank) + ":\n" + diff;
  }
  std::string verify =
      hllm::test::run_output(opt_.bin + "/hllm checkpoint verify " + out + " > /dev/null 2>&1; echo $?");
  if (verify != "0\n") why += "hllm checkpoint verify " + out + " failed\n";
  if (!fs::exists(out + "/results.json")) why += "no results.json\n";
  // Recovery counts from the job's own records.
  int respawns = 0, resumes = 0;
  for (const auto& l : hllm::test::metrics(out)) {
    std::string ev = l.value("event", "");
    respawns += ev == "respawn";
    resumes += ev == "resume" && !l.value("checkpoint", "").empty();
  }
  t_.respawns += respawns;
  t_.resumes += resumes;
  int restarts = 0;
  std::string last_error;
  std::istringstream lines(read_file(log_path));
  for (std::string line; std::getline(lines, line);) {
    if (line.find("error") != std::string::npos) last_error = line;
    if (line.find("restarting the job from its newest checkpoint") != std::string::npos) {
      ++restarts;
      // The reason without the time stamp and the numbers that differ between runs.
      std::string reason = last_error.empty() ? "(no error line)" : last_error;
      if (reason.size() > 2 && reason[0] == '[') reason = reason.substr(reason.find(']') + 2);
      std::string masked;
      for (char c : reason) {
        bool digit = c >= '0' && c <= '9';
        if (!digit || masked.empty() || masked.back() != '#') masked += digit ? '#' : c;
      }
      reason = masked;
      ++t_.restart_reasons[reason.substr(0, 160)];
      last_error.clear();
    }
  }
  t_.launcher_restarts += restarts;
  if (restarts > trainer_kills) t_.unexplained_restarts += restarts - trainer_kills;
  if (!why.empty()) {
    failure_ = "job " + out + ":\n" + why;
    return false;
  }
  ++t_.cycles_passed;
  log("  passed: digest " + d + ", ledgers complete, " + std::to_string(respawns) + " respawns, " +
      std::to_string(restarts) + " launcher restarts, " + std::to_string(resumes) + " resumes");
  return true;
}

int harness::run() {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  bool made_work = opt_.work.empty();
  if (made_work) {
    std::string tmpl = (fs::temp_directory_path() / "hllm-crash-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "crash_test: cannot create a work directory\n");
      return 2;
    }
    opt_.work = tmpl;
  }
  fs::create_directories(opt_.work);
  opt_.work = fs::absolute(opt_.work).string();
  std::printf("crash test: seed %llu, %.0f s of kills, work %s, data %s\n",
              static_cast<unsigned long long>(opt_.seed), opt_.duration, opt_.work.c_str(), opt_.data.c_str());
  std::error_code ec;
  fs::remove_all(opt_.work + "/ref", ec);
  fs::remove(opt_.work + "/ref.log", ec);
  bool ok = run_reference(opt_.work + "/ref");
  start_ = clock_type::now();
  for (int cycle = 1; ok && seconds_since(start_) < opt_.duration; ++cycle) ok = run_cycle(cycle);
  const double wall = seconds_since(start_);
  std::printf("\ncrash test summary (seed %llu): %d kills in %d jobs over %.0f s (wall, reference run excluded; "
              "kills stop after %.0f s)\n",
              static_cast<unsigned long long>(opt_.seed), t_.kills_total, t_.cycles, wall, opt_.duration);
  std::printf("  %-8s %8s %8s\n", "kind", "SIGKILL", "SIGSTOP");
  for (kind k : {kind::rank0, kind::rank1, kind::worker, kind::encoder}) {
    std::printf("  %-8s %8d %8d\n", kind_name(k), t_.kills[{kind_name(k), "SIGKILL"}],
                t_.kills[{kind_name(k), "SIGSTOP"}]);
  }
  std::printf("  recovery: %d job restarts by the harness (rank 0 killed), %d by the launcher (--max-restarts), "
              "%d worker respawns, %d resumes from a checkpoint\n",
              t_.harness_restarts, t_.launcher_restarts, t_.respawns, t_.resumes);
  if (!t_.restart_reasons.empty()) {
    std::printf("  launcher restarts followed (the last error line before each):\n");
    for (const auto& [reason, n] : t_.restart_reasons) std::printf("    %3d x %s\n", n, reason.c_str());
  }
  if (t_.cycles > 0) {
    std::printf("  longest pause of progress (no step, checkpoint, phase or validation line): %.1f s, after %s\n",
                t_.longest_pause, t_.longest_pause_after.c_str());
  }
  std::sort(t_.pauses.rbegin(), t_.pauses.rend());
  for (const auto& [pause, after] : t_.pauses) std::printf("    pause of %.0f s after %s\n", pause, after.c_str());
  if (t_.unexplained_restarts > 0) {
    std::printf("  note: %d launcher restarts more than rank-1 kills (a worker kill or a rank-0 stall restarted the "
                "whole job)\n", t_.unexplained_restarts);
  }
  if (ok) {
    std::printf("  %d of %d jobs ended with the reference digest and complete sample ledgers: %d kills survived\n",
                t_.cycles_passed, t_.cycles, t_.kills_total);
    std::printf("PASS\n");
    if (made_work && !opt_.keep) fs::remove_all(opt_.work, ec);
    return 0;
  }
  std::printf("  failure: %s\n", failure_.c_str());
  std::printf("  (work directory kept: %s; replay with --seed %llu)\nFAIL\n", opt_.work.c_str(),
              static_cast<unsigned long long>(opt_.seed));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  o.seed = std::random_device{}();
  if (const char* d = std::getenv("HLLM_TINY_DATA")) o.data = d;
  o.bin = HLLM_BIN_DIR;
  CLI::App app{"crash test: kill random processes of a running two-rank job with worker processes for a while, "
               "then check that every job ends like an uninterrupted run (docs/operations.md \"Crash test\")",
               "crash_test"};
  app.add_option("--duration", o.duration, "seconds during which processes are killed (jobs are started "
                                           "one after another; the last is let finish)")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the kill plan (default: random, printed)");
  app.add_option("--work", o.work, "work directory (default: a new one under $TMPDIR, removed on PASS)");
  app.add_option("--data", o.data, "prepared tiny dataset (default: $HLLM_TINY_DATA)");
  app.add_option("--bin", o.bin, "directory of the hllm executables")->capture_default_str();
  app.add_option("--max-kills", o.max_kills, "kills per job: 1 to this many")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--min-gap", o.min_gap, "fewest seconds from a (re)start or kill to the next kill")
      ->capture_default_str();
  app.add_option("--max-gap", o.max_gap, "most seconds from a (re)start or kill to the next kill")
      ->capture_default_str();
  app.add_option("--stall", o.stall,
                 "a job that writes no step, checkpoint, phase or validation line for this many seconds after the "
                 "last kill hangs: FAIL")
      ->capture_default_str();
  app.add_flag("--keep", o.keep, "keep the work directory after a PASS");
  CLI11_PARSE(app, argc, argv);
  if (o.data.empty() || !fs::exists(o.data + "/manifest.json")) {
    std::fprintf(stderr, "crash_test: --data (or HLLM_TINY_DATA) must name a prepared dataset\n");
    return 2;
  }
  if (o.max_gap < o.min_gap) o.max_gap = o.min_gap;
  o.data = fs::absolute(o.data).string();
  return harness(o).run();
}
