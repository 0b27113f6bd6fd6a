// Resumable jobs (issue 6): the real `hllm train` killed with SIGKILL and resumed reproduces the uninterrupted run
// bit for bit; corrupt and foreign checkpoints are skipped; an unwritable checkpoint directory stops the job.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "../storage/test_util.hpp"
#include "job_check.hpp"

using namespace hllm;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string tiny() {
  const char* p = std::getenv("HLLM_TINY_DATA");
  return p == nullptr ? "" : p;
}

std::string bin() { return std::string(HLLM_BIN_DIR) + "/hllm"; }

// The tiny job (two stage-1 epochs and one stage-2 epoch, about 54 steps, a checkpoint every 5 steps) and EXTRA.
std::string job_args(const std::string& extra = "") {
  return " --data " + tiny() + test::shell_sets(test::tiny_job_sets()) + extra;
}

// Runs `hllm train` to its end; its output goes to LOG.
int train(const std::string& out, const std::string& log, const std::string& extra = "") {
  std::string cmd = bin() + " train --out " + out + job_args(extra) + " > " + log + " 2>&1";
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// The last line of `hllm checkpoint digest PATH`.
std::string digest(const std::string& path) { return test::digest(bin(), path); }

using test::metrics;
using test::run_output;
using test::step_lines;

void expect_same_ledger(const std::string& reference, const std::string& resumed, int expected_resumes,
                        int rank = 0) {
  EXPECT_EQ(test::ledger_differences(reference, resumed, expected_resumes, rank), "");
}

// Starts `hllm train` as a child, waits until its metrics hold `steps` step lines, kills it with SIGKILL.
// Returns false when the job ended on its own first.
bool run_and_kill(const std::string& out, const std::string& log, int steps, const std::string& extra = "") {
  std::string cmd = "exec " + bin() + " train --out " + out + job_args(extra) + " > " + log + " 2>&1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  while (step_lines(out) < steps) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return true;
}

std::string newest_checkpoint(const std::string& job) {
  std::ifstream in(job + "/checkpoints/latest");
  std::string name;
  std::getline(in, name);
  return name;
}

std::string resumed_from(const std::string& job) {
  std::string from;
  for (const auto& l : metrics(job)) {
    if (l.value("event", "") == "resume") from = l.at("checkpoint").get<std::string>();
  }
  return from;
}

}  // namespace

TEST(job, killed_job_resumes_to_identical_parameters_losses_and_sample_ledger) {
  test::temp_dir tmp;
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log"), 0);
  const int total = step_lines(tmp / "ref");
  ASSERT_GT(total, 20);
  // A random step of the whole run (both stages); printed so that a failure can be replayed.
  std::random_device rd;
  const int kill_at = 2 + static_cast<int>(rd() % static_cast<unsigned>(total - 4));
  std::printf("killing at step line %d of %d\n", kill_at, total);
  ASSERT_TRUE(run_and_kill(tmp / "job", tmp / "killed.log", kill_at)) << "the job ended before the kill";
  ASSERT_EQ(train(tmp / "job", tmp / "resumed.log", " --resume auto"), 0) << test::read_bytes(tmp / "resumed.log");
  std::string d = digest(tmp / "ref");
  EXPECT_EQ(d.size(), 16u) << d;
  EXPECT_EQ(d, digest(tmp / "job"));
  EXPECT_EQ(digest(tmp / "ref/stage1/best"), digest(tmp / "job/stage1/best"));
  // A kill before the first checkpoint restarts from the beginning: its resume line names no checkpoint and rolls
  // back every step line of the killed run. Either way there is exactly one.
  EXPECT_EQ(test::event_lines(tmp / "job", "resume"), 1);
  expect_same_ledger(tmp / "ref", tmp / "job", 1);
  EXPECT_EQ(run_output(bin() + " checkpoint verify " + tmp / "job" + " > /dev/null 2>&1; echo $?"), "0\n");
}

TEST(job, corrupt_newest_checkpoint_is_reported_and_the_previous_one_resumed) {
  test::temp_dir tmp;
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log"), 0);
  fs::copy(tmp / "ref", tmp / "job", fs::copy_options::recursive);
  // Truncated file in the newest checkpoint: verify fails, resume takes the one before and retrains its tail.
  std::string newest = newest_checkpoint(tmp / "job");
  ASSERT_FALSE(newest.empty());
  fs::resize_file(tmp / ("job/checkpoints/" + newest + "/trainer/model.safetensors"), 1000);
  EXPECT_EQ(run_output(bin() + " checkpoint verify " + tmp / "job" + " > /dev/null 2>&1; echo $?"), "1\n");
  ASSERT_EQ(train(tmp / "job", tmp / "resumed.log", " --resume auto"), 0);
  std::string log = test::read_bytes(tmp / "resumed.log");
  EXPECT_NE(log.find("skipping checkpoint " + newest + ": size of trainer/model.safetensors"), std::string::npos) << log;
  std::string from = resumed_from(tmp / "job");
  EXPECT_FALSE(from.empty());
  EXPECT_NE(from, newest);
  EXPECT_EQ(digest(tmp / "ref"), digest(tmp / "job"));
  expect_same_ledger(tmp / "ref", tmp / "job", 1);
  // One flipped byte in the (rewritten) newest checkpoint: its checksum fails and the previous one is used.
  newest = newest_checkpoint(tmp / "job");
  std::string opt = tmp / ("job/checkpoints/" + newest + "/trainer/optimizer.safetensors");
  {
    std::fstream f(opt, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(-5, std::ios::end);
    char c = 0;
    f.read(&c, 1);
    f.seekp(-5, std::ios::end);
    c = static_cast<char>(c ^ 0x40);
    f.write(&c, 1);
  }
  ASSERT_EQ(train(tmp / "job", tmp / "resumed2.log", " --resume auto"), 0);
  log = test::read_bytes(tmp / "resumed2.log");
  EXPECT_NE(log.find("skipping checkpoint " + newest + ": checksum mismatch in trainer/optimizer.safetensors"),
            std::string::npos)
      << log;
  EXPECT_NE(resumed_from(tmp / "job"), newest);
  EXPECT_EQ(digest(tmp / "ref"), digest(tmp / "job"));
  expect_same_ledger(tmp / "ref", tmp / "job", 2);
}

TEST(job, checkpoint_of_another_config_is_skipped) {
  test::temp_dir tmp;
  ASSERT_EQ(train(tmp / "job", tmp / "a.log", " --set stage1.lr=0.002"), 0);
  ASSERT_EQ(train(tmp / "job", tmp / "b.log", " --resume auto"), 0);
  std::string log = test::read_bytes(tmp / "b.log");
  EXPECT_NE(log.find("foreign checkpoint: config hash"), std::string::npos) << log;
  EXPECT_NE(log.find("no valid checkpoint"), std::string::npos) << log;
  EXPECT_TRUE(resumed_from(tmp / "job").empty());
  // The second run trained from the beginning and its checkpoints are the newest.
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log"), 0);
  EXPECT_EQ(digest(tmp / "ref"), digest(tmp / "job"));
}

TEST(job, unwritable_checkpoint_directory_stops_the_job_with_a_clear_error) {
  // Root ignores read-only permissions, so the checkpoints path is made a regular file: creating the directory
  // fails like an unwritable or full file system does.
  test::temp_dir tmp;
  fs::create_directories(tmp / "job");
  { std::ofstream(tmp / "job/checkpoints") << "not a directory"; }
  EXPECT_EQ(train(tmp / "job", tmp / "job.log"), 1);
  std::string log = test::read_bytes(tmp / "job.log");
  EXPECT_NE(log.find("cannot write checkpoint stage1-e0-s5 under"), std::string::npos) << log;
  EXPECT_NE(log.find("earlier checkpoints are intact"), std::string::npos) << log;
  EXPECT_EQ(step_lines(tmp / "job"), 5);  // it stopped at the first checkpoint
  EXPECT_FALSE(fs::exists(tmp / "job/results.json"));
}

TEST(job, killed_two_rank_job_resumes_to_identical_parameters_and_sample_ledgers) {
  // Rank 0 is killed with SIGKILL; rank 1 dies with it (PR_SET_PDEATHSIG). Both ranks resume from the checkpoint
  // rank 0 chose, and each rank's ledger holds every one of its batches once.
  test::temp_dir tmp;
  const std::string two = " --world 2 --set stage1.batch_size=16 --set stage2.batch_size=16";
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log", two), 0);
  const int total = step_lines(tmp / "ref");
  ASSERT_GT(total, 20);
  std::random_device rd;
  const int kill_at = 6 + static_cast<int>(rd() % static_cast<unsigned>(total - 8));
  std::printf("killing at step line %d of %d\n", kill_at, total);
  ASSERT_TRUE(run_and_kill(tmp / "job", tmp / "killed.log", kill_at, two)) << "the job ended before the kill";
  ASSERT_EQ(train(tmp / "job", tmp / "resumed.log", two + " --resume auto"), 0) << test::read_bytes(tmp / "resumed.log");
  EXPECT_EQ(digest(tmp / "ref"), digest(tmp / "job"));
  expect_same_ledger(tmp / "ref", tmp / "job", test::event_lines(tmp / "job", "resume", 0), 0);
  expect_same_ledger(tmp / "ref", tmp / "job", test::event_lines(tmp / "job", "resume", 1), 1);
}

namespace {

// A tmpfs mounted for one test and unmounted before its directory is removed.
struct tmpfs_mount {
  std::string at;
  bool ok = false;
  tmpfs_mount(const std::string& dir, const std::string& size) : at(dir) {
    fs::create_directories(dir);
    ok = std::system(("mount -t tmpfs -o size=" + size + " tmpfs " + dir + " 2>/dev/null").c_str()) == 0;
  }
  ~tmpfs_mount() {
    if (ok) std::system(("umount " + at).c_str());
  }
};

}  // namespace

TEST(job, full_disk_while_checkpointing_stops_the_job_and_keeps_the_previous_checkpoint) {
  // JOB/checkpoints on a tmpfs that holds two tiny stage-1 checkpoints (about 490 kB each) but not a third: the
  // third write fails with ENOSPC. Needs mount privileges (root in a container that allows it); skipped otherwise.
  test::temp_dir tmp;
  tmpfs_mount disk(tmp / "job/checkpoints", "1200k");
  if (!disk.ok) GTEST_SKIP() << "cannot mount a tmpfs here";
  EXPECT_EQ(train(tmp / "job", tmp / "job.log"), 1);
  std::string log = test::read_bytes(tmp / "job.log");
  EXPECT_NE(log.find("cannot write checkpoint stage1-e0-s15 under"), std::string::npos) << log;
  EXPECT_NE(log.find("No space left on device"), std::string::npos) << log;
  // The previous checkpoint is intact and `latest` still names it; nothing half-written is left.
  EXPECT_EQ(newest_checkpoint(tmp / "job"), "stage1-e0-s10");
  EXPECT_EQ(run_output(bin() + " checkpoint verify " + tmp / "job" + " > /dev/null 2>&1; echo $?"), "0\n");
  for (const auto& e : fs::directory_iterator(tmp / "job/checkpoints")) {
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
  }
  // With room again the job resumes from it and ends where an uninterrupted run ends.
  ASSERT_EQ(std::system(("mount -o remount,size=16m " + disk.at).c_str()), 0);
  ASSERT_EQ(train(tmp / "job", tmp / "resumed.log", " --resume auto"), 0) << test::read_bytes(tmp / "resumed.log");
  EXPECT_EQ(resumed_from(tmp / "job"), "stage1-e0-s10");
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log"), 0);
  EXPECT_EQ(digest(tmp / "ref"), digest(tmp / "job"));
  expect_same_ledger(tmp / "ref", tmp / "job", 1);
}

TEST(job, killed_trainer_rank_restarts_the_job_from_its_checkpoint_to_the_same_result) {
  // `--world 2 --max-restarts 2`: rank 1 (a child of rank 0) is killed with SIGKILL; rank 0's all-reduce fails (or
  // times out), the launcher stops what is left and starts both ranks again with --resume auto.
  test::temp_dir tmp;
  const std::string two =
      " --world 2 --set stage1.batch_size=16 --set stage2.batch_size=16 --set train.collective_timeout_s=20";
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log", two), 0);
  const int total = step_lines(tmp / "ref");
  std::random_device rd;
  const int kill_at = 6 + static_cast<int>(rd() % static_cast<unsigned>(total - 8));
  std::printf("killing rank 1 at its step line %d of %d\n", kill_at, total);
  std::string cmd = "exec " + bin() + " train --out " + tmp / "job" + job_args(two + " --max-restarts 2") + " > " +
                    tmp / "job.log" + " 2>&1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto rank1_lines = [&] {
    std::ifstream in(tmp / "job/metrics.rank-1.jsonl");
    int n = 0;
    for (std::string line; std::getline(in, line);) n += line.find("\"event\":\"step\"") != std::string::npos;
    return n;
  };
  int status = 0;
  bool ended = false;
  while (rank1_lines() < kill_at) {
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      ended = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(ended) << "the job ended before the kill";
  std::string children = test::read_bytes("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  pid_t rank1 = static_cast<pid_t>(std::atoi(children.c_str()));
  ASSERT_GT(rank1, 0) << "no rank-1 process";
  ::kill(rank1, SIGKILL);
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << test::read_bytes(tmp / "job.log");
  std::string log = test::read_bytes(tmp / "job.log");
  EXPECT_NE(log.find("restarting the job from its newest checkpoint"), std::string::npos) << log;
  EXPECT_EQ(digest(tmp / "ref"), digest(tmp / "job"));
  expect_same_ledger(tmp / "ref", tmp / "job", test::event_lines(tmp / "job", "resume", 0), 0);
  expect_same_ledger(tmp / "ref", tmp / "job", test::event_lines(tmp / "job", "resume", 1), 1);
}

TEST(job, a_new_run_in_an_old_job_directory_keeps_its_own_checkpoints) {
  // Retention removes the lowest serials: a run that does not resume must still number its checkpoints after the
  // ones on disk, or it would delete its own newest checkpoints and keep the old run's.
  test::temp_dir tmp;
  ASSERT_EQ(train(tmp / "job", tmp / "a.log"), 0);
  ASSERT_EQ(train(tmp / "job", tmp / "b.log", " --set train.checkpoint_every_steps=7 --resume never"), 0);
  std::string latest = newest_checkpoint(tmp / "job");
  EXPECT_TRUE(fs::is_directory(tmp / ("job/checkpoints/" + latest))) << latest;
  EXPECT_EQ(latest, "stage2-e1-s18");
  // The newest three are the second run's: its last mid-epoch ones of stage 2 (every 7 steps: 7 and 14).
  int kept = 0;
  for (const auto& e : fs::directory_iterator(tmp / "job/checkpoints")) kept += e.is_directory();
  EXPECT_EQ(kept, 3);
  EXPECT_TRUE(fs::is_directory(tmp / "job/checkpoints/stage2-e0-s14"));
  EXPECT_TRUE(fs::is_directory(tmp / "job/checkpoints/stage2-e0-s7"));
}

TEST(job, repeated_random_kills_of_either_rank_end_with_the_same_digest) {
  // A small crash test: a two-rank job with --max-restarts is killed again and again at random steps, either rank 0
  // (the whole job dies; it is started again with --resume auto) or rank 1 (the launcher restarts the ranks).
  test::temp_dir tmp;
  const std::string two = " --world 2 --set stage1.batch_size=16 --set stage2.batch_size=16"
                          " --set train.collective_timeout_s=20 --max-restarts 10 --resume auto";
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log", two), 0);
  const int total = step_lines(tmp / "ref");
  std::random_device rd;
  std::mt19937 rng(rd());
  int kills = 0, threshold = 0;
  for (int round = 0; round < 8; ++round) {
    std::string cmd = "exec " + bin() + " train --out " + tmp / "job" + job_args(two) + " >> " + tmp / "job.log" +
                      " 2>&1";
    pid_t pid = ::fork();
    if (pid == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Step lines accumulate over incarnations: each kill comes 3 to 12 lines after the previous one.
    threshold += 3 + static_cast<int>(rng() % 10);
    int status = 0;
    bool ended = false;
    while (step_lines(tmp / "job") < threshold) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        ended = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (ended) {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << test::read_bytes(tmp / "job.log");
      break;
    }
    bool kill_rank1 = rng() % 2 == 1;
    std::string children =
        test::read_bytes("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
    pid_t target = kill_rank1 && std::atoi(children.c_str()) > 0 ? static_cast<pid_t>(std::atoi(children.c_str())) : pid;
    std::printf("round %d: killing %s at step line %d (reference: %d per run)\n", round,
                target == pid ? "rank 0" : "rank 1", threshold, total);
    ::kill(target, SIGKILL);
    ++kills;
    ::waitpid(pid, &status, 0);  // rank 1 killed: the launcher restarts and finishes (or is killed next round)
    if (target != pid) {
      ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << test::read_bytes(tmp / "job.log");
      break;
    }
  }
  if (!fs::exists(tmp / "job/results.json")) {
    ASSERT_EQ(train(tmp / "job", tmp / "final.log", two), 0) << test::read_bytes(tmp / "final.log");
  }
  std::printf("%d kills survived\n", kills);
  EXPECT_GT(kills, 0);
  EXPECT_EQ(digest(tmp / "ref"), digest(tmp / "job"));
  expect_same_ledger(tmp / "ref", tmp / "job", test::event_lines(tmp / "job", "resume"), 0);
}

namespace {

// The pid of a worker process's live incarnation (OUT/workers/NAME.pid), 0 when there is none.
pid_t worker_pid(const std::string& job, const std::string& worker) {
  std::ifstream in(job + "/workers/" + worker + ".pid");
  long pid = 0;
  in >> pid;
  return static_cast<pid_t>(pid);
}

// Waits until `ready()` or the job (child `pid`) ends; false when it ended.
template <class F>
bool wait_for(pid_t pid, F&& ready, int* status) {
  while (!ready()) {
    if (::waitpid(pid, status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace

TEST(job, killed_and_hung_worker_processes_are_respawned_and_the_job_ends_with_the_same_digest) {
  // placement.workers = 2: loaders, the sampler and the cache shards live in two worker processes, the encoder in a
  // third during the cache fill. Worker 0 is killed (SIGKILL) in stage 1, worker 1 hangs (SIGSTOP: only the
  // heartbeats notice), the encoder's process is killed during the fill, worker 0 again in stage 2. Rank 0
  // respawns each; the trainer re-issues what was lost and the job ends as if nothing happened.
  test::temp_dir tmp;
  const std::string workers = test::shell_sets(test::worker_job_sets());
  ASSERT_EQ(train(tmp / "ref", tmp / "ref.log", workers), 0) << test::read_bytes(tmp / "ref.log");
  int stage1_lines = 0;
  for (const auto& l : metrics(tmp / "ref")) stage1_lines += l.value("model", "") == "stage1" && l.value("event", "") == "step";
  std::string cmd = "exec " + bin() + " train --out " + tmp / "job" + job_args(workers) + " > " + tmp / "job.log" +
                    " 2>&1";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const std::string job = tmp / "job";
  int status = 0;
  int kills = 0;
  ASSERT_TRUE(wait_for(pid, [&] { return step_lines(job) >= 4; }, &status)) << "the job ended early";
  ASSERT_GT(worker_pid(job, "worker-0"), 0);
  ::kill(worker_pid(job, "worker-0"), SIGKILL);
  ++kills;
  ASSERT_TRUE(wait_for(pid, [&] { return step_lines(job) >= 14; }, &status)) << "the job ended early";
  ASSERT_GT(worker_pid(job, "worker-1"), 0);
  ::kill(worker_pid(job, "worker-1"), SIGSTOP);
  ++kills;
  // The encoder's process exists only during the cache fill: kill it as soon as it is up.
  if (wait_for(pid, [&] { return worker_pid(job, "worker-encoder-0") > 0; }, &status)) {
    ::kill(worker_pid(job, "worker-encoder-0"), SIGKILL);
    ++kills;
    if (wait_for(pid, [&] { return step_lines(job) >= stage1_lines + 3; }, &status)) {
      ::kill(worker_pid(job, "worker-0"), SIGKILL);
      ++kills;
      ::waitpid(pid, &status, 0);
    }
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << test::read_bytes(tmp / "job.log");
  std::printf("%d worker kills survived\n", kills);
  EXPECT_EQ(kills, 4);
  std::string log = test::read_bytes(tmp / "job.log");
  EXPECT_NE(log.find("answered no heartbeat"), std::string::npos) << "the hung worker was not noticed";
  int respawns = 0, restarts = 0;
  for (const auto& l : metrics(job)) {
    respawns += l.value("event", "") == "respawn";
    if (l.value("event", "") == "workers") restarts = l.at("respawns").get<int>();
  }
  // The encoder may have finished its units before the kill reached it (then it is not respawned).
  EXPECT_GE(respawns, 3);
  EXPECT_EQ(restarts, respawns);
  EXPECT_EQ(digest(tmp / "ref"), digest(job));
  expect_same_ledger(tmp / "ref", job, 0);
}
