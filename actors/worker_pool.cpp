#include "actors/worker_pool.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <mutex>
#include <spdlog/spdlog.h>
#include <thread>

#include "actors/ask.hpp"
#include "messages/codec.hpp"
#include "storage/error.hpp"

namespace hllm {

namespace {

using clock_type = std::chrono::steady_clock;

// In the child between fork and exec only async-signal-safe calls: everything is prepared before the fork.
pid_t start_process(const worker_spec& s) {
  std::vector<char*> argv;
  for (const auto& a : s.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  int log_fd = -1;
  if (!s.log_file.empty()) {
    log_fd = ::open(s.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw error(errc::io, "worker " + s.name + ": cannot open its log '" + s.log_file + "'");
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    if (log_fd >= 0) ::close(log_fd);
    throw error(errc::io, "worker " + s.name + ": fork failed");
  }
  if (pid == 0) {
    // A worker never outlives the process that supervises it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (log_fd >= 0) {
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
    }
    // Sockets and files of the supervising process (its router's listening socket among them) stay there.
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, 3u, ~0u, 0u) != 0)
#endif
      for (int fd = 3; fd < 65536; ++fd) ::close(fd);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
  return pid;
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "stopped";
}

}  // namespace

std::string worker_router_name(const std::string& worker) { return "router@" + worker; }

struct worker_pool::impl {
  impl(caf::actor_system& s, router_actor r, worker_pool_options o) : sys(s), router(std::move(r)), opt(std::move(o)) {}

  struct worker {
    worker_spec spec;
    pid_t pid = 0;
    int respawns = 0;
    bool starting = false;                     // respawned, not answering yet
    clock_type::time_point start_deadline;     // while starting
    clock_type::time_point last_ok;            // last answered heartbeat
    std::string why;                           // of the last respawn
  };

  caf::actor_system& sys;
  router_actor router;
  worker_pool_options opt;
  mutable std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, worker> workers;
  std::string failure;
  int total_respawns = 0;  // of every worker, stopped ones too
  bool stopping = false;
  std::thread watcher;

  // One status request to a worker's router; true when it answered in time.
  bool ping(caf::scoped_actor& self, const std::string& name, std::chrono::milliseconds timeout) {
    return send_request(self, router, opt.sender, opt.job, worker_router_name(name), msg::status_request{}, timeout)
        .receive()
        .ok();
  }

  // Starts the process and waits until its router answers; throws when it exits or stays silent.
  pid_t launch(const worker_spec& s) {
    pid_t pid = start_process(s);
    caf::scoped_actor self{sys};
    auto deadline = clock_type::now() + opt.start_timeout;
    while (true) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        throw error(errc::io, "worker " + s.name + " " + describe_exit(status) + " while starting" +
                                  (s.log_file.empty() ? std::string() : " (its log: " + s.log_file + ")"));
      }
      if (ping(self, s.name, std::chrono::milliseconds(2000))) return pid;
      if (clock_type::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        throw error(errc::io, "worker " + s.name + " did not answer within " +
                                  std::to_string(opt.start_timeout.count()) + " ms of its start" +
                                  (s.log_file.empty() ? std::string() : " (its log: " + s.log_file + ")"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  static void terminate(pid_t pid) {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 40; ++i) {
      // ECHILD: the watcher reaped it first (it found the worker registered just before stop() removed it); a
      // SIGKILL now could reach an unrelated process that was given the same pid.
      pid_t r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid || (r < 0 && errno == ECHILD)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }

  // The worker is gone (reaped): start its process again, unless it used up its respawns. Does not wait for it:
  // the watcher keeps watching the others and checks the new process on its next rounds (starting).
  void respawn(const std::string& name, const std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = workers.find(name);
    if (it == workers.end() || stopping) return;
    worker& w = it->second;
    w.pid = 0;
    int n = ++w.respawns;
    ++total_respawns;
    if (n > opt.max_respawns) {
      failure = "worker " + name + " (" + why + ") needed more than " + std::to_string(opt.max_respawns) +
                " respawns";
      spdlog::error("{}; giving up on it", failure);
      workers.erase(it);
      return;
    }
    spdlog::warn("worker {} ({}) {}: starting it again (respawn {} of at most {})", name, fmt_join(w.spec.actors),
                 why, n, opt.max_respawns);
    w.why = why;
    try {
      w.pid = start_process(w.spec);
    } catch (const std::exception& e) {
      spdlog::error("worker {}: {}", name, e.what());  // pid 0: the next round tries again
    }
    w.starting = true;
    w.start_deadline = clock_type::now() + opt.start_timeout;
  }

  static std::string fmt_join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
    return out;
  }

  struct view {
    std::string name;
    pid_t pid;
    bool starting;
    clock_type::time_point start_deadline, last_ok;
  };

  void watch() {
    caf::scoped_actor self{sys};
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait_for(lock, opt.heartbeat_interval, [&] { return stopping; });
        if (stopping) return;
      }
      std::vector<view> live;
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& [name, w] : workers) live.push_back({name, w.pid, w.starting, w.start_deadline, w.last_ok});
      }
      for (const auto& v : live) {
        {
          std::lock_guard<std::mutex> lock(mu);
          if (stopping) return;
          auto it = workers.find(v.name);
          if (it == workers.end() || it->second.pid != v.pid) continue;  // stopped or changed meanwhile
        }
        int status = 0;
        const auto now = clock_type::now();
        if (v.pid <= 0) {
          respawn(v.name, "is down");  // an earlier start failed
        } else if (::waitpid(v.pid, &status, WNOHANG) == v.pid) {
          respawn(v.name, describe_exit(status) + (v.starting ? " while starting" : ""));
        } else if (v.starting) {
          if (ping(self, v.name, std::chrono::milliseconds(500))) {
            worker_spec spec;
            int n = 0;
            std::string why;
            {
              std::lock_guard<std::mutex> lock(mu);
              auto it = workers.find(v.name);
              if (it == workers.end()) continue;
              it->second.starting = false;
              it->second.last_ok = clock_type::now();
              spec = it->second.spec;
              n = it->second.respawns;
              why = it->second.why;
            }
            spdlog::info("worker {} is back (pid {})", v.name, v.pid);
            if (opt.on_respawn) opt.on_respawn(spec, n, why);
          } else if (now > v.start_deadline) {
            ::kill(v.pid, SIGKILL);
            ::waitpid(v.pid, &status, 0);
            respawn(v.name, "did not answer within " + std::to_string(opt.start_timeout.count()) +
                                " ms of its start (killed)");
          }
        } else if (ping(self, v.name, opt.heartbeat_timeout)) {
          std::lock_guard<std::mutex> lock(mu);
          auto it = workers.find(v.name);
          if (it != workers.end()) it->second.last_ok = clock_type::now();
        } else {
          auto silent = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - v.last_ok);
          if (silent < opt.heartbeat_timeout) continue;
          ::kill(v.pid, SIGKILL);
          ::waitpid(v.pid, &status, 0);
          respawn(v.name, "answered no heartbeat for " + std::to_string(silent.count()) + " ms (killed)");
        }
      }
    }
  }
};

worker_pool::worker_pool(caf::actor_system& sys, router_actor router, worker_pool_options o)
    : impl_(std::make_unique<impl>(sys, std::move(router), std::move(o))) {
  impl_->watcher = std::thread([this] { impl_->watch(); });
}

worker_pool::~worker_pool() {
  stop_all();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->watcher.joinable()) impl_->watcher.join();
}

void worker_pool::start(const worker_spec& spec) {
  if (spec.command.empty()) throw error(errc::invalid_input, "worker " + spec.name + ": no command");
  add_route(impl_->sys, impl_->router, worker_router_name(spec.name), spec.endpoint);
  // A worker that dies while starting (killed, out of memory) is started again like one that dies later.
  pid_t pid = 0;
  int attempt = 0;
  std::string why;
  for (;; ++attempt) {
    try {
      pid = impl_->launch(spec);
      break;
    } catch (const std::exception& e) {
      if (attempt >= impl_->opt.max_respawns) throw;
      why = e.what();
      spdlog::warn("worker {}: {}; starting it again (respawn {} of at most {})", spec.name, why, attempt + 1,
                   impl_->opt.max_respawns);
    }
  }
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto& w = impl_->workers[spec.name];
    w.spec = spec;
    w.pid = pid;
    w.respawns = attempt;
    w.last_ok = clock_type::now();
    impl_->total_respawns += attempt;
  }
  spdlog::info("worker {} up (pid {}, {}): {}", spec.name, pid, spec.endpoint, impl::fmt_join(spec.actors));
  if (attempt > 0 && impl_->opt.on_respawn) impl_->opt.on_respawn(spec, attempt, why);
}

void worker_pool::stop(const std::string& name) {
  pid_t pid = 0;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->workers.find(name);
    if (it == impl_->workers.end()) return;
    pid = it->second.pid;
    impl_->workers.erase(it);
  }
  impl::terminate(pid);
}

void worker_pool::stop_all() {
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (const auto& [name, w] : impl_->workers) names.push_back(name);
  }
  for (const auto& n : names) stop(n);
}

int worker_pool::total_respawns() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->total_respawns;
}

int worker_pool::pid_of(const std::string& name) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->workers.find(name);
  return it == impl_->workers.end() ? 0 : it->second.pid;
}

std::string worker_pool::failure() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->failure;
}

}  // namespace hllm
