#pragma once
// Shared by the console tests (console_test.cpp, console_hardening_test.cpp): child processes, and a real tiny job
// with its console on a free port, long enough to watch (stage 1 for many epochs: it is killed at the end of the
// test). No torch: the job is the real `hllm-train` binary (HLLM_BIN_DIR).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "job_check.hpp"

namespace hllm::test {

inline std::string tiny() {
  const char* p = std::getenv("HLLM_TINY_DATA");
  return p == nullptr ? "" : p;
}

// An empty directory PREFIX-PID-NAME under the system's temporary directory.
inline std::filesystem::path fresh_dir(const std::string& prefix, const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / (prefix + "-" + std::to_string(::getpid()) + "-" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Starts ARGV with stdout and stderr into LOG and the variables ENV (name, value) set; returns the pid. The
// argument array is built before the fork (the test process has threads).
inline pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& log,
                   const std::vector<std::pair<std::string, std::string>>& env = {}) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f != nullptr) {
      ::dup2(fileno(f), 1);
      ::dup2(fileno(f), 2);
    }
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    ::execv(args[0], args.data());
    std::perror("execv");
    ::_exit(127);
  }
  return pid;
}

inline bool alive(pid_t pid) { return ::waitpid(pid, nullptr, WNOHANG) == 0; }

inline void stop(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// `hllm-train` on the tiny dataset into DIR/job (DIR: fresh_dir(PREFIX, NAME)), console on port 0, the tiny job's
// settings with stage 1 for 100000 epochs and a checkpoint every 40 steps, then SETS; ENV is set in the job's
// process. Waits until JOB/console.json names the port the console listens on (port stays 0 if the job ends or
// 120 s pass). The job is killed, and DIR removed unless the test failed, when this goes.
struct console_job {
  std::filesystem::path dir;
  pid_t pid = -1;
  int port = 0;

  console_job(const std::string& prefix, const std::string& name, const std::vector<std::string>& sets,
              const std::vector<std::pair<std::string, std::string>>& env = {})
      : dir(fresh_dir(prefix, name)) {
    std::vector<std::string> argv{std::string(HLLM_BIN_DIR) + "/hllm-train", "--data", tiny(), "--out",
                                  (dir / "job").string(), "--monitor-port", "0"};
    std::vector<std::string> all = tiny_job_sets();
    all.push_back("stage1.epochs=100000");
    all.push_back("train.checkpoint_every_steps=40");
    all.insert(all.end(), sets.begin(), sets.end());
    for (const auto& s : all) {
      argv.push_back("--set");
      argv.push_back(s);
    }
    pid = spawn(argv, dir / "job.log", env);
    for (int i = 0; i < 1200 && port == 0 && alive(pid); ++i) {
      auto j = nlohmann::json::parse(read_file(dir / "job" / "console.json"), nullptr, false);
      if (!j.is_discarded() && j.contains("port")) port = j["port"].get<int>();
      else std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  console_job(const console_job&) = delete;
  console_job& operator=(const console_job&) = delete;
  ~console_job() {
    stop(pid);
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir);
  }
  std::string log() const { return read_file(dir / "job.log"); }
};

}  // namespace hllm::test
