#pragma once
// A child process with a pipe to its stdin and one from its stdout, for tests that need a second real process.
// Closing stdin asks the child to exit; the destructor waits for it (and kills it after a grace period).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace hllm::testing {

class child_process {
 public:
  explicit child_process(const std::vector<std::string>& argv) {
    int in[2];
    int out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) {
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[1]);
      ::close(out[0]);
      std::vector<char*> args;
      for (const auto& a : argv) {
        args.push_back(const_cast<char*>(a.c_str()));
      }
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::_Exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_child_ = in[1];
    from_child_ = ::fdopen(out[0], "r");
  }

  ~child_process() { finish(); }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  bool started() const { return pid_ > 0 && from_child_ != nullptr; }

  // One line of the child's stdout without the newline; "" at end of file.
  std::string read_line() {
    char line[1024];
    if (from_child_ == nullptr || std::fgets(line, sizeof(line), from_child_) == nullptr) {
      return {};
    }
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) {
      s.pop_back();
    }
    return s;
  }

  // Closes the child's stdin and waits for it; returns its exit status (-1 when it had to be killed).
  int finish() {
    if (pid_ <= 0) {
      return -1;
    }
    if (to_child_ >= 0) {
      ::close(to_child_);
      to_child_ = -1;
    }
    int status = 0;
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        close_stdout();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    close_stdout();
    return -1;
  }

 private:
  void close_stdout() {
    if (from_child_ != nullptr) {
      std::fclose(from_child_);
      from_child_ = nullptr;
    }
  }
  pid_t pid_ = -1;
  int to_child_ = -1;
  FILE* from_child_ = nullptr;
};

}  // namespace hllm::testing
