#pragma once
// Runs a command as a child process for the benchmarks (tools that must not share the benchmark's process, e.g.
// sentencepiece next to torch): exit status, wall time and the child's peak memory.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace hllm::bench {

struct child_result {
  int status;          // exit status, -1 when killed by a signal
  double seconds;
  long max_rss_kib;    // ru_maxrss of the child
};

inline child_result run_child(const std::vector<std::string>& args) {
  auto t0 = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru {};
  ::wait4(pid, &status, 0, &ru);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, s, ru.ru_maxrss};
}

}  // namespace hllm::bench
