// The crash harness for the stage-3 commands (issue 20): `hllm export items`, `hllm encode --append-to` and
// `hllm index build` are killed with SIGKILL (the whole process group: the command and any child it started) at a
// random moment of their run, many times. Afterwards the artifact at the output path must be the previous one or
// the new one, intact and verifying, never a mix: it is read back (which finishes an interrupted publish) and
// compared with reference artifacts made by uninterrupted runs.
//
// Reads the trained jobs of the stage3_jobs fixture ($HLLM_STAGE3_JOBS/job and /other: two Item-LLM versions).
// HLLM_CRASH_ROUNDS sets the kills per command (default 12). Deterministic kill points for a given seed, apart from
// how far each process got when its kill came.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "storage/ann_index.hpp"
#include "storage/export.hpp"
#include "storage/file_io.hpp"
#include "../storage/test_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hllm;
using clock_type = std::chrono::steady_clock;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* p = std::getenv(name);
  return p == nullptr || *p == '\0' ? fallback : p;
}

int rounds() { return std::max(1, std::atoi(env_or("HLLM_CRASH_ROUNDS", "12").c_str())); }

// Starts `hllm ARGS...` in a process group of its own, output to /dev/null.
pid_t start(const std::vector<std::string>& args) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<std::string> all{std::string(HLLM_BIN_DIR) + "/hllm"};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  return pid;
}

int wait_for(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Runs to completion; returns the exit status and how long it took.
std::pair<int, double> run(const std::vector<std::string>& args) {
  const auto t0 = clock_type::now();
  const int st = wait_for(start(args));
  return {st, std::chrono::duration<double>(clock_type::now() - t0).count()};
}

// Runs and kills the process group after `after` seconds (if it is still running). True when the kill came first.
bool run_and_kill(const std::vector<std::string>& args, double after) {
  const pid_t pid = start(args);
  const auto deadline = clock_type::now() + std::chrono::duration<double>(after);
  int st = 0;
  while (clock_type::now() < deadline) {
    if (::waitpid(pid, &st, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(-pid, SIGKILL);
  ::waitpid(pid, &st, 0);
  // Children of the group (hllm encode's prepare) are gone with it; reap nothing else.
  return true;
}

// What identifies an export's content: its ids and its rows, bit for bit, and the Item-LLM version.
struct export_digest {
  std::string version;
  std::vector<std::string> ids;
  std::vector<float> matrix;
  bool operator==(const export_digest& o) const {
    return version == o.version && ids == o.ids && matrix == o.matrix;
  }
};

export_digest digest_of(const std::string& npy) {
  auto e = storage::read_export(npy);
  return {e.meta.value("item_version", std::string()), e.ids, e.matrix};
}

void copy_export(const std::string& from, const std::string& to) {
  const auto a = storage::export_paths(from), b = storage::export_paths(to);
  for (auto [x, y] : {std::pair{a.npy, b.npy}, {a.ids, b.ids}, {a.fingerprints, b.fingerprints}, {a.meta, b.meta}}) {
    fs::copy_file(x, y, fs::copy_options::overwrite_existing);
  }
}

class stage3_crash : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = env_or("HLLM_STAGE3_JOBS", "");
    if (root_.empty()) GTEST_SKIP() << "HLLM_STAGE3_JOBS is not set (run through ctest: fixture stage3_jobs)";
    // Reference exports of the two Item-LLM versions, by uninterrupted runs.
    for (const char* j : {"job", "other"}) {
      auto [st, s] = run({"export", "items", "--job", root_ + "/" + j, "--out", tmp_ / (std::string(j) + ".npy")});
      ASSERT_EQ(st, 0) << "reference export of " << j;
      seconds_[j] = s;
    }
  }
  std::string root_;
  test::temp_dir tmp_;
  std::map<std::string, double> seconds_;
  std::mt19937_64 rng_{20};
  double kill_point(double full) { return std::uniform_real_distribution<double>(0.0, full * 1.1)(rng_); }
};

TEST_F(stage3_crash, killed_export_leaves_the_previous_or_the_new_export) {
  const auto ref_job = digest_of(tmp_ / "job.npy"), ref_other = digest_of(tmp_ / "other.npy");
  ASSERT_FALSE(ref_job == ref_other) << "the two jobs must give different exports";
  const std::string out = tmp_ / "out/items.npy";
  fs::create_directories(tmp_ / "out");
  copy_export(tmp_ / "job.npy", out);
  int killed = 0, old_seen = 0, new_seen = 0;
  std::string current = "job";
  for (int r = 0; r < rounds(); ++r) {
    const std::string next = current == "job" ? "other" : "job";
    killed += run_and_kill({"export", "items", "--job", root_ + "/" + next, "--out", out}, kill_point(seconds_[next]));
    const auto d = digest_of(out);  // throws (fails the test) on a mix: checksums in meta.json
    const bool is_old = d == (current == "job" ? ref_job : ref_other);
    const bool is_new = d == (next == "job" ? ref_job : ref_other);
    ASSERT_TRUE(is_old || is_new) << "round " << r << ": the export is neither the previous nor the new one";
    old_seen += is_old;
    new_seen += is_new;
    if (is_new) current = next;
  }
  std::printf("export items: %d rounds, %d killed mid-run; afterwards %d times the previous export, %d times the "
              "new one\n", rounds(), killed, old_seen, new_seen);
  EXPECT_GT(killed, 0);
}

TEST_F(stage3_crash, killed_append_leaves_the_export_with_or_without_every_new_row) {
  // New items: three catalogue items under new ids (the tiny dataset's CSV lies beside the prepared dataset).
  std::string data = test::read_bytes(root_ + "/job/dataset");
  while (!data.empty() && data.back() == '\n') data.pop_back();
  std::istringstream items(test::read_bytes((fs::path(data).parent_path() / "csv/items.csv").string()));
  std::string header, line, csv;
  std::getline(items, header);
  csv = header + "\n";
  for (int k = 0; k < 3 && std::getline(items, line); ++k) csv += "fresh-" + line + "\n";
  test::write_text(tmp_ / "new.csv", csv);
  const std::string out = tmp_ / "app/items.npy";
  fs::create_directories(tmp_ / "app");
  copy_export(tmp_ / "job.npy", out);
  const auto before = digest_of(out);
  auto [st, full] = run({"encode", "--items", tmp_ / "new.csv", "--job", root_ + "/job", "--append-to", out});
  ASSERT_EQ(st, 0);
  const auto after = digest_of(out);
  ASSERT_EQ(after.ids.size(), before.ids.size() + 3);
  int killed = 0, old_seen = 0, new_seen = 0;
  for (int r = 0; r < rounds(); ++r) {
    copy_export(tmp_ / "job.npy", out);
    killed += run_and_kill({"encode", "--items", tmp_ / "new.csv", "--job", root_ + "/job", "--append-to", out},
                           kill_point(full));
    const auto d = digest_of(out);
    ASSERT_TRUE(d == before || d == after) << "round " << r << ": " << d.ids.size() << " rows, neither "
                                           << before.ids.size() << " nor " << after.ids.size() << " as made";
    old_seen += d == before;
    new_seen += d == after;
  }
  std::printf("encode --append-to: %d rounds, %d killed mid-run; afterwards %d times the previous export, %d times "
              "the appended one\n", rounds(), killed, old_seen, new_seen);
  EXPECT_GT(killed, 0);
}

TEST_F(stage3_crash, killed_index_build_leaves_the_previous_or_the_new_index) {
  const std::string idx = tmp_ / "idx";
  auto [st, full] = run({"index", "build", "--embeddings", tmp_ / "job.npy", "--out", idx, "--threads", "1"});
  ASSERT_EQ(st, 0);
  const std::string v_job = digest_of(tmp_ / "job.npy").version, v_other = digest_of(tmp_ / "other.npy").version;
  int killed = 0, old_seen = 0, new_seen = 0;
  std::string current = "job";
  for (int r = 0; r < rounds(); ++r) {
    const std::string next = current == "job" ? "other" : "job";
    killed += run_and_kill({"index", "build", "--embeddings", tmp_ / (next + ".npy"), "--out", idx, "--threads", "1"},
                           kill_point(full));
    // load verifies every file against meta.json's checksums.
    std::string version;
    ASSERT_NO_THROW(version = storage::ann_index::load(idx).meta().value("item_version", std::string()))
        << "round " << r;
    const std::string want_old = current == "job" ? v_job : v_other, want_new = next == "job" ? v_job : v_other;
    ASSERT_TRUE(version == want_old || version == want_new) << "round " << r << ": index of version " << version;
    old_seen += version == want_old;
    new_seen += version == want_new;
    if (version == want_new) current = next;
  }
  std::printf("index build: %d rounds, %d killed mid-run; afterwards %d times the previous index, %d times the new "
              "one\n", rounds(), killed, old_seen, new_seen);
  EXPECT_GT(killed, 0);
}

}  // namespace
