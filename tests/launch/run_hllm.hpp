#pragma once
// Runs `hllm ARGS` (the build's dispatcher, HLLM_BIN_DIR) through the shell and collects its output: for tests that
// drive the real executables as an operator would.
#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace hllm::test {

struct run_result {
  int status;          // exit status, -1 when it did not exit normally
  std::string output;  // stdout, and stderr unless left out
};

inline run_result run_hllm(const std::string& args, bool with_stderr = true) {
  std::string cmd = std::string(HLLM_BIN_DIR) + "/hllm " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

inline bool contains(const std::string& s, const std::string& what) { return s.find(what) != std::string::npos; }

}  // namespace hllm::test
