// `hllm launch`: starts the trainer ranks of one job and watches them, like torchrun. Torch-free: it only forks and
// execs `hllm-train` (locally, or through ssh on the hosts of a hostfile) with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, HLLM_HOST (the address this rank binds) and HLLM_HOST_NAME (the host's
// name in the placement) set. When a rank fails every other rank is stopped; with restarts left all of them start
// again with `--resume auto` (the newest valid checkpoint). docs/operations.md "Run on a cluster".
//
//   hllm launch --nproc-per-node 2 -- --data DIR --out JOB                       one host
//   hllm launch --nnodes 2 --node-rank K --master-addr A --nproc-per-node 1 ...  one launcher per host (static)
//   hllm launch --hostfile hosts -- --data DIR --out JOB                         every host over ssh
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "storage/net.hpp"

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

volatile std::sig_atomic_t stop_signal = 0;
void on_signal(int s) { stop_signal = s; }

[[noreturn]] void fail(const std::string& line, int code = 2) {
  std::fprintf(stderr, "hllm launch: %s\n", line.c_str());
  std::exit(code);
}

void say(const std::string& line) {
  std::fprintf(stderr, "hllm launch: %s\n", line.c_str());
  std::fflush(stderr);
}

// The IPv4 address of HOST, or "" with the resolver's reason in *why.
std::string resolve(const std::string& host, std::string* why) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    if (why != nullptr) *why = ::gai_strerror(rc);
    return "";
  }
  char buf[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
  ::freeaddrinfo(res);
  return buf;
}

sockaddr_in address_of(const std::string& ip, std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// Whether IP is an address of this host (a socket can bind it).
bool is_local_address(const std::string& ip) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = address_of(ip, 0);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// "" when IP:PORT can be bound here (the rendezvous store of rank 0 will listen there), else the reason.
std::string port_problem(const std::string& ip, std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as the store does: TIME_WAIT is no conflict
  sockaddr_in a = address_of(ip, port);
  std::string why;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1) != 0) why = std::strerror(errno);
  ::close(fd);
  return why;
}

// The local address this host uses to reach IP (a UDP "connect" sends nothing).
std::string route_source(const std::string& ip) {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = address_of(ip, 9);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    sockaddr_in me{};
    socklen_t len = sizeof me;
    char buf[INET_ADDRSTRLEN] = {};
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) == 0 &&
        ::inet_ntop(AF_INET, &me.sin_addr, buf, sizeof buf) != nullptr) {
      out = buf;
    }
  }
  ::close(fd);
  return out;
}

// Tries to open a TCP connection to IP:PORT until DEADLINE; "" on success, else the last error.
std::string wait_reachable(const std::string& ip, std::uint16_t port, clock_type::time_point deadline) {
  std::string why = "no attempt";
  while (stop_signal == 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_in a = address_of(ip, port);
    int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (rc != 0 && errno == EINPROGRESS) {
      fd_set w;
      FD_ZERO(&w);
      FD_SET(fd, &w);
      timeval tv{1, 0};
      rc = ::select(fd + 1, nullptr, &w, nullptr, &tv) == 1 ? 0 : -1;
      int err = ETIMEDOUT;
      socklen_t len = sizeof err;
      if (rc == 0) ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      errno = err;
      rc = err == 0 ? 0 : -1;
    }
    ::close(fd);
    if (rc == 0) return "";
    why = std::strerror(errno);
    if (clock_type::now() >= deadline) return why;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return "interrupted";
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

struct host_entry {
  std::string name;  // as the hostfile writes it
  std::string addr;  // its IPv4 address
  int slots = 1;
};

// `host [slots=N]` per line; '#' starts a comment. Every host must resolve.
std::vector<host_entry> read_hostfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read hostfile '" + path + "': " + std::strerror(errno));
  std::vector<host_entry> hosts;
  int n = 0;
  for (std::string line; std::getline(in, line);) {
    ++n;
    const std::string where = "hostfile " + path + " line " + std::to_string(n) + ": ";
    line = line.substr(0, line.find('#'));
    auto words = split_words(line);
    if (words.empty()) continue;
    host_entry h;
    h.name = words[0];
    bool ok = words.size() <= 2;
    if (ok && words.size() == 2) {
      ok = words[1].rfind("slots=", 0) == 0;
      if (ok) {
        char* end = nullptr;
        long v = std::strtol(words[1].c_str() + 6, &end, 10);
        ok = end != nullptr && *end == '\0' && v >= 1 && v <= 1024;
        h.slots = static_cast<int>(v);
      }
    }
    if (!ok) fail(where + "cannot parse '" + line + "' (expected: host [slots=N])");
    std::string why;
    h.addr = resolve(h.name, &why);
    if (h.addr.empty()) fail(where + "unknown host '" + h.name + "' (" + why + ")");
    hosts.push_back(h);
  }
  if (hosts.empty()) fail("hostfile " + path + " names no host");
  return hosts;
}

struct rank_proc {
  int rank = 0, local_rank = 0, local_world = 1;
  std::string host_name, host_addr;
  bool remote = false;
  pid_t pid = 0;  // 0: not running
  int stdin_fd = -1;  // remote ranks: the write end of ssh's stdin, held until the rank is stopped or reaped
  int status = 0;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + ::strsignal(WTERMSIG(status));
  return "stopped";
}

struct launch_plan {
  std::vector<rank_proc> ranks;  // the ranks this launcher starts
  int world = 1;
  std::string master_addr;
  std::uint16_t master_port = 0;
  bool pick_port = false;  // single host without --master-port: a free port per attempt
  std::string train_exe, workdir, ssh;
  std::vector<std::string> forwarded;  // NAME=VALUE of this environment that remote ranks get too
};

// Variables of this environment that change what a rank computes or how it connects (BLAS kernels and threads,
// collectives): remote ranks get them too, or hosts would compute differently (OPENBLAS_CORETYPE alone changes the
// parameters' digest).
std::vector<std::string> forwarded_environment(const std::vector<std::string>& extra) {
  static const char* prefixes[] = {"OMP_", "OPENBLAS_", "MKL_", "KMP_", "GOMP_", "GLOO_", "NCCL_", "TORCH_", "HLLM_"};
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string v = *e;
    std::string name = v.substr(0, v.find('='));
    bool take = std::find(extra.begin(), extra.end(), name) != extra.end();
    for (const char* p : prefixes) take = take || name.rfind(p, 0) == 0;
    if (name == "HLLM_HOST" || name == "HLLM_HOST_NAME") take = false;  // set per rank
    if (take) out.push_back(v);
  }
  return out;
}

// The command a remote rank runs: cd, the environment, hllm-train; a watcher kills it when the ssh connection (its
// stdin) closes, so stopping the local ssh client stops the remote rank.
std::string remote_command(const launch_plan& p, const std::vector<std::string>& env,
                           const std::vector<std::string>& args) {
  std::string train = shell_quote(p.train_exe);
  for (const auto& a : args) train += " " + shell_quote(a);
  std::string script = "exec 3<&0; " + train +
                       " </dev/null & p=$!; (cat <&3 >/dev/null; kill -TERM $p; sleep 3; kill -KILL $p) >/dev/null "
                       "2>&1 & w=$!; wait $p; rc=$?; kill $w 2>/dev/null; exit $rc";
  std::string cmd = "cd " + shell_quote(p.workdir) + " && exec env";
  for (const auto& e : p.forwarded) cmd += " " + shell_quote(e);
  for (const auto& e : env) cmd += " " + shell_quote(e);
  return cmd + " sh -c " + shell_quote(script);
}

pid_t start_rank(const launch_plan& p, rank_proc& r, const std::vector<std::string>& args) {
  std::vector<std::string> env{"RANK=" + std::to_string(r.rank),
                               "WORLD_SIZE=" + std::to_string(p.world),
                               "LOCAL_RANK=" + std::to_string(r.local_rank),
                               "LOCAL_WORLD_SIZE=" + std::to_string(r.local_world),
                               "MASTER_ADDR=" + p.master_addr,
                               "MASTER_PORT=" + std::to_string(p.master_port),
                               "HLLM_HOST=" + r.host_addr,
                               "HLLM_HOST_NAME=" + r.host_name};
  std::vector<std::string> argv;
  if (r.remote) {
    argv = split_words(p.ssh);
    argv.push_back(r.host_name);
    argv.push_back(remote_command(p, env, args));
  } else {
    argv.push_back(p.train_exe);
    argv.insert(argv.end(), args.begin(), args.end());
  }
  // ssh's stdin is the remote watcher's: a pipe whose write end only this launcher holds (ssh closes every other
  // descriptor at start), so the remote rank is stopped when this launcher stops it, exits or dies.
  int fds[2] = {-1, -1};
  if (r.remote && ::pipe2(fds, O_CLOEXEC) != 0) fail(std::string("cannot create a pipe: ") + std::strerror(errno), 1);
  pid_t pid = ::fork();
  if (pid < 0) fail(std::string("cannot fork: ") + std::strerror(errno), 1);
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group: stopping a rank stops what it started
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (r.remote) {
      ::dup2(fds[0], 0);
    } else {
      for (const auto& e : env) ::putenv(::strdup(e.c_str()));
      ::unsetenv("SLURM_PROCID");
    }
    std::vector<char*> cargs;
    for (auto& a : argv) cargs.push_back(const_cast<char*>(a.c_str()));
    cargs.push_back(nullptr);
    ::execvp(cargs[0], cargs.data());
    std::fprintf(stderr, "hllm launch: cannot run '%s': %s\n", cargs[0], std::strerror(errno));
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  if (r.remote) {
    ::close(fds[0]);
    r.stdin_fd = fds[1];
  }
  return pid;
}

// SIGTERM to every live rank's process group, SIGKILL after GRACE; reaps them all.
void close_stdin(rank_proc& r) {
  if (r.stdin_fd >= 0) ::close(r.stdin_fd);
  r.stdin_fd = -1;
}

void stop_all(std::vector<rank_proc>& ranks, std::chrono::milliseconds grace) {
  for (auto& r : ranks) {
    close_stdin(r);
    if (r.pid > 0) ::kill(-r.pid, SIGTERM);
  }
  auto deadline = clock_type::now() + grace;
  for (;;) {
    bool live = false;
    for (auto& r : ranks) {
      if (r.pid <= 0) continue;
      if (::waitpid(r.pid, &r.status, WNOHANG) == r.pid) {
        r.pid = 0;
      } else {
        live = true;
      }
    }
    if (!live) return;
    if (clock_type::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (auto& r : ranks) {
    if (r.pid <= 0) continue;
    ::kill(-r.pid, SIGKILL);
    ::waitpid(r.pid, &r.status, 0);
    r.pid = 0;
  }
}

// The train arguments with `--resume auto` in place of any --resume.
std::vector<std::string> resume_args(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--resume") {
      ++i;
      continue;
    }
    if (args[i].rfind("--resume=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  out.push_back("--resume");
  out.push_back("auto");
  return out;
}

fs::path bin_dir() { return fs::read_symlink("/proc/self/exe").parent_path(); }

}  // namespace

int main(int argc, char** argv) {
  int nproc = 1, nnodes = 1, node_rank = 0, max_restarts = 0;
  std::string master_addr, host, hostfile, train_exe, workdir;
  int master_port = 0;
  double rdzv_timeout = 60, grace = 5;
  std::string ssh = "ssh -T -o BatchMode=yes -o ConnectTimeout=10";
  std::vector<std::string> train_args, env_names;
  CLI::App app{"hllm launch: start and watch the trainer ranks of a job (like torchrun) on one host, on several "
               "hosts (one launcher each, or every host of a hostfile over ssh); restart them from the newest "
               "checkpoint when one fails. Arguments after `--` go to hllm train.",
               "hllm launch"};
  app.add_option("--nproc-per-node", nproc, "ranks on this host (without --hostfile)")->capture_default_str();
  app.add_option("--nnodes", nnodes, "hosts of the job, each running its own `hllm launch` (without --hostfile)")
      ->capture_default_str();
  app.add_option("--node-rank", node_rank, "this host's number, 0..nnodes-1 (host 0 runs rank 0 and the store)")
      ->capture_default_str();
  app.add_option("--master-addr", master_addr,
                 "address of host 0 (the rendezvous store); default 127.0.0.1 on one host, the first host of the "
                 "hostfile with --hostfile");
  app.add_option("--master-port", master_port,
                 "port of the rendezvous store; default: a free port on one host, 29500 on several");
  app.add_option("--host", host,
                 "this host's address that the others reach (ranks bind their router and Gloo to it); default: the "
                 "master address on host 0, else the local address of the route to the master");
  app.add_option("--hostfile", hostfile, "start every rank over ssh on the hosts of this file: `host [slots=N]` lines "
                                         "(ranks in file order; the first host is the master)");
  app.add_option("--ssh", ssh, "ssh command (with --hostfile); the host and the remote command are appended")
      ->capture_default_str();
  app.add_option("--env", env_names,
                 "with --hostfile: also pass this variable of this environment to the remote ranks (repeatable); "
                 "OMP_*, OPENBLAS_*, MKL_*, KMP_*, GOMP_*, GLOO_*, NCCL_*, TORCH_* and HLLM_* always are");
  app.add_option("--workdir", workdir, "directory the remote ranks run in (with --hostfile); default: this one");
  app.add_option("--max-restarts", max_restarts,
                 "after a failure stop every rank and start them all again with --resume auto, at most this many "
                 "times")
      ->capture_default_str();
  app.add_option("--rdzv-timeout", rdzv_timeout,
                 "seconds a host other than host 0 waits for the master's store to be reachable")
      ->capture_default_str();
  app.add_option("--grace", grace, "seconds between SIGTERM and SIGKILL when stopping ranks")->capture_default_str();
  app.add_option("--train-exe", train_exe, "the hllm-train executable (default: the one beside this program; with "
                                           "--hostfile the same path on every host)");
  app.allow_extras();
  app.footer("Everything after `--` goes to hllm train verbatim (so do options hllm launch does not know).");
  // Split at the first `--` here: CLI11 keeps the separator among its leftovers, and a restart appends
  // `--resume auto`, which hllm train would then take as stray positionals.
  int own = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      own = i;
      break;
    }
  }
  CLI11_PARSE(app, own, argv);
  for (const auto& e : app.remaining()) {
    if (e != "--") train_args.push_back(e);
  }
  for (int i = own + 1; i < argc; ++i) train_args.push_back(argv[i]);
  for (const auto& a : train_args) {
    if (a == "--world" || a.rfind("--world=", 0) == 0) {
      fail("--world is hllm train's own launcher; with hllm launch use --nproc-per-node");
    }
  }

  launch_plan p;
  p.train_exe = train_exe.empty() ? (bin_dir() / "hllm-train").string() : train_exe;
  p.workdir = workdir.empty() ? fs::current_path().string() : workdir;
  p.ssh = ssh;
  p.forwarded = forwarded_environment(env_names);
  if (!fs::exists(p.train_exe)) fail("no hllm-train at '" + p.train_exe + "' (--train-exe)");
  bool master_here = true;
  if (!hostfile.empty()) {
    auto hosts = read_hostfile(hostfile);
    p.master_addr = master_addr.empty() ? hosts.front().addr : master_addr;
    int rank = 0;
    for (const auto& h : hosts) {
      for (int l = 0; l < h.slots; ++l) {
        rank_proc r;
        r.rank = rank++;
        r.local_rank = l;
        r.local_world = h.slots;
        r.host_name = h.name;
        r.host_addr = h.addr;
        r.remote = true;
        p.ranks.push_back(r);
      }
    }
    p.world = rank;
    p.master_port = static_cast<std::uint16_t>(master_port > 0 ? master_port : 29500);
    master_here = is_local_address(p.master_addr);
  } else {
    if (nproc < 1 || nnodes < 1 || node_rank < 0 || node_rank >= nnodes) {
      fail("need --nproc-per-node >= 1, --nnodes >= 1 and 0 <= --node-rank < --nnodes");
    }
    if (nnodes > 1 && master_addr.empty()) {
      fail("--nnodes " + std::to_string(nnodes) + " needs --master-addr (host 0's address)");
    }
    std::string why;
    p.master_addr = resolve(master_addr.empty() ? "127.0.0.1" : master_addr, &why);
    if (p.master_addr.empty()) fail("unknown master host '" + master_addr + "' (" + why + ")");
    p.world = nnodes * nproc;
    if (master_port > 0) {
      p.master_port = static_cast<std::uint16_t>(master_port);
    } else if (nnodes == 1) {
      p.pick_port = true;
    } else {
      p.master_port = 29500;
    }
    std::string me = host;
    if (me.empty()) me = node_rank == 0 ? p.master_addr : route_source(p.master_addr);
    std::string addr = resolve(me, &why);
    if (addr.empty()) fail("unknown --host '" + me + "' (" + why + ")");
    if (!is_local_address(addr)) fail("--host " + me + " (" + addr + ") is not an address of this host");
    for (int l = 0; l < nproc; ++l) {
      rank_proc r;
      r.rank = node_rank * nproc + l;
      r.local_rank = l;
      r.local_world = nproc;
      r.host_name = host.empty() && nnodes == 1 ? "localhost" : me;
      r.host_addr = addr;
      p.ranks.push_back(r);
    }
    master_here = node_rank == 0;
    if (node_rank == 0 && !is_local_address(p.master_addr)) {
      fail("--master-addr " + master_addr + " (" + p.master_addr + ") is not an address of this host, but host 0 "
           "(--node-rank 0) runs the store");
    }
  }

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_signal);
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::vector<std::string> args = train_args;
  for (int attempt = 0;; ++attempt) {
    if (p.pick_port) p.master_port = hllm::storage::free_tcp_port();
    if (master_here) {
      std::string why = port_problem(p.master_addr, p.master_port);
      if (!why.empty()) {
        fail("master port " + std::to_string(p.master_port) + " on " + p.master_addr + " is in use (" + why +
             "); choose another --master-port");
      }
    } else if (hostfile.empty()) {
      auto deadline = clock_type::now() + std::chrono::milliseconds(static_cast<int64_t>(rdzv_timeout * 1000));
      std::string why = wait_reachable(p.master_addr, p.master_port, deadline);
      if (!why.empty()) {
        fail("cannot reach the master " + p.master_addr + ":" + std::to_string(p.master_port) + " within " +
             std::to_string(static_cast<int>(rdzv_timeout)) + " s (" + why +
             "); is host 0 running and are --master-addr/--master-port right?", 1);
      }
    }
    std::string hosts_line;
    for (const auto& r : p.ranks) {
      if (hosts_line.find(r.host_name + " ") == std::string::npos) hosts_line += r.host_name + " ";
    }
    say("attempt " + std::to_string(attempt + 1) + " of " + std::to_string(max_restarts + 1) + ": ranks " +
        std::to_string(p.ranks.front().rank) + ".." + std::to_string(p.ranks.back().rank) + " of world " +
        std::to_string(p.world) + " on " + hosts_line + "(" + (hostfile.empty() ? "local" : "ssh") + "), master " +
        p.master_addr + ":" + std::to_string(p.master_port));
    for (auto& r : p.ranks) r.pid = start_rank(p, r, args);
    // Watch: the first rank that fails (or a signal) stops the others.
    std::string failure;
    int live = static_cast<int>(p.ranks.size());
    while (live > 0) {
      if (stop_signal != 0) {
        say(std::string("got signal ") + ::strsignal(stop_signal) + ": stopping every rank");
        stop_all(p.ranks, std::chrono::milliseconds(static_cast<int64_t>(grace * 1000)));
        return 128 + stop_signal;
      }
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      for (auto& r : p.ranks) {
        if (r.pid != pid) continue;
        r.pid = 0;
        close_stdin(r);
        r.status = status;
        --live;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && failure.empty()) {
          failure = "rank " + std::to_string(r.rank) + " on " + r.host_name + " " + describe_status(status);
          if (r.remote && WIFEXITED(status) && WEXITSTATUS(status) == 255) failure += " (ssh could not reach the host)";
        }
      }
      if (!failure.empty()) break;
    }
    if (failure.empty()) {
      say("all " + std::to_string(p.ranks.size()) + " ranks finished");
      return 0;
    }
    say(failure + ": stopping the other ranks");
    stop_all(p.ranks, std::chrono::milliseconds(static_cast<int64_t>(grace * 1000)));
    if (attempt >= max_restarts) {
      say("the job stopped after " + std::to_string(attempt + 1) + " attempt(s) (" + failure +
          "); its checkpoints are kept: launch again to continue (--resume auto)");
      return 1;
    }
    say("restarting every rank from the newest checkpoint (--resume auto), restart " + std::to_string(attempt + 1) +
        " of " + std::to_string(max_restarts));
    args = resume_args(train_args);
  }
}
