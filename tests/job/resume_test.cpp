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
#include <map>
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

// The environment that holds rank `rank` after its `step`-th step until killed (the trainer's test-only pause hook,
// actors/user_trainer.cpp): it writes `marker` ("PID RANK STEP") and blocks, so a kill test waits for a state
// instead of racing the job's speed (issue 20: a fast machine finished the job before the kill).
std::string pause_env(int step, int rank, const std::string& marker) {
  return "HLLM_TEST_PAUSE_AT_STEP=" + std::to_string(step) + " HLLM_TEST_PAUSE_RANK=" + std::to_string(rank) +
         " HLLM_TEST_PAUSE_FILE=" + marker + " ";
}

// Starts the shell command `cmd` (sh -c) as a child; returns its pid.
pid_t start_shell(const std::string& cmd) {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Waits until `marker` exists (the rank paused) or the child `pid` ended (false). Returns the paused process's pid.
pid_t wait_for_pause(pid_t pid, const std::string& marker, int* status) {
  for (;;) {
    std::ifstream in(marker);
    long paused = 0;
    if (in >> paused && paused > 0) return static_cast<pid_t>(paused);
    if (::waitpid(pid, status, WNOHANG) == pid) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Starts `hllm train` as a child, holds it after its `steps`-th step line (rank 0) and kills it with SIGKILL there.
// Returns false when the job ended on its own first (it cannot, unless it has fewer steps).
bool run_and_kill(const std::string& out, const std::string& log, int steps, const std::string& extra = "") {
  const std::string marker = out + ".pause";
  std::string cmd = "exec env " + pause_env(steps, 0, marker) + bin() + " train --out " + out + job_args(extra) +
                    " > " + log + " 2>&1";
  pid_t pid = start_shell(cmd);
  int status = 0;
  if (wait_for_pause(pid, marker, &status) == 0) return false;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  std::remove(marker.c_str());
  return true;
}

std::string newest_checkpoint(const std::string& job) {
  std::ifstream in(job + "/checkpoints/latest");
  std::string name;
  std::getline(in, name);
  return name;
}

// A shorter tiny job (stage 1 only, one epoch, about 18 steps) for the cases that need a run but not all stages.
std::string short_sets() { return " --set 'job.stages=[\"stage1\"]' --set stage1.epochs=1"; }
std::string short_job() { return short_sets(); }

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
  // A run of another config in the same directory is refused before anything is touched (the cases below); a
  // foreign checkpoint copied in among the job's own is still skipped by --resume auto, and the job's own newest
  // one is used. The foreign one (a whole tiny job) has a higher serial than the short job's newest.
  test::temp_dir tmp;
  ASSERT_EQ(train(tmp / "other", tmp / "a.log", " --set stage1.lr=0.002"), 0);
  ASSERT_EQ(train(tmp / "job", tmp / "b.log", short_job()), 0) << test::read_bytes(tmp / "b.log");
  const std::string own = newest_checkpoint(tmp / "job");
  const std::string foreign = newest_checkpoint(tmp / "other");
  ASSERT_FALSE(own.empty());
  fs::copy(tmp / ("other/checkpoints/" + foreign), tmp / "job/checkpoints/zz-foreign", fs::copy_options::recursive);
  ASSERT_EQ(train(tmp / "job", tmp / "c.log", short_job() + " --resume auto"), 0) << test::read_bytes(tmp / "c.log");
  std::string log = test::read_bytes(tmp / "c.log");
  EXPECT_NE(log.find("skipping checkpoint zz-foreign: foreign checkpoint: config hash"), std::string::npos) << log;
  EXPECT_EQ(resumed_from(tmp / "job"), own);
}

namespace {

// Every file and directory under DIR (relative path -> content; "<dir>" for a directory): equal snapshots mean
// nothing was created, removed, renamed or rewritten with other bytes.
std::map<std::string, std::string> snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    const std::string rel = fs::relative(e.path(), dir).string();
    out[rel] = e.is_directory() ? "<dir>" : test::read_bytes(e.path().string());
  }
  return out;
}

// The names in SNAP that differ from BEFORE (added, removed or changed), for a readable failure.
std::string changed(const std::map<std::string, std::string>& before, const std::map<std::string, std::string>& after) {
  std::string out;
  for (const auto& [k, v] : before) {
    auto it = after.find(k);
    if (it == after.end()) out += " removed:" + k;
    else if (it->second != v) out += " changed:" + k;
  }
  for (const auto& [k, v] : after) {
    if (before.count(k) == 0) out += " added:" + k;
  }
  return out;
}

// Lines of TEXT that hold WHAT.
int lines_with(const std::string& text, const std::string& what) {
  int n = 0;
  std::size_t start = 0;
  for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
    n += text.substr(start, nl - start).find(what) != std::string::npos;
  }
  return n;
}

// The one directory JOB/previous-* (empty when there is none or more than one).
std::string previous_run_dir(const std::string& job) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(job)) {
    if (e.path().filename().string().rfind("previous-", 0) == 0) found.push_back(e.path().string());
  }
  return found.size() == 1 ? found.front() : "";
}

int exit_status(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST(job, resume_with_another_config_is_refused_naming_the_key_and_changes_nothing) {
  // Issue 20: forgetting one of the original --set values on resume started from scratch and rotated the old run's
  // checkpoints out. Now the resume is refused with one line naming the key, old and new value, and the job
  // directory is byte for byte as it was; --fresh then moves the earlier run aside (nothing deleted) and starts over.
  test::temp_dir tmp;
  ASSERT_EQ(train(tmp / "job", tmp / "a.log", short_job() + " --set stage1.lr=0.002"), 0);
  const auto before = snapshot(tmp / "job");
  ASSERT_FALSE(newest_checkpoint(tmp / "job").empty());
  EXPECT_EQ(train(tmp / "job", tmp / "b.log", short_job() + " --resume auto"), 1);
  const std::string log = test::read_bytes(tmp / "b.log");
  EXPECT_EQ(lines_with(log, "error:"), 1) << log;
  EXPECT_NE(log.find("hllm train: error: --out '" + tmp / "job" + "' holds another job's run"), std::string::npos) << log;
  EXPECT_NE(log.find("the config differs (stage1.lr 0.002 -> 0.001; config hash "), std::string::npos) << log;
  EXPECT_NE(log.find("or start over with --fresh"), std::string::npos) << log;
  EXPECT_EQ(log.find("the dataset differs"), std::string::npos) << log;
  EXPECT_EQ(changed(before, snapshot(tmp / "job")), "");
  // An explicit checkpoint of that run is refused the same way.
  EXPECT_EQ(train(tmp / "job", tmp / "c.log",
                  short_job() + " --resume " + tmp / ("job/checkpoints/" + newest_checkpoint(tmp / "job"))), 1);
  EXPECT_NE(test::read_bytes(tmp / "c.log").find("stage1.lr 0.002 -> 0.001"), std::string::npos);
  EXPECT_EQ(changed(before, snapshot(tmp / "job")), "");

  // --fresh: the earlier run's files move to JOB/previous-*/ unchanged; this run starts from the beginning.
  ASSERT_EQ(train(tmp / "job", tmp / "d.log", short_job() + " --resume auto --fresh"), 0) << test::read_bytes(tmp / "d.log");
  const std::string aside = previous_run_dir(tmp / "job");
  ASSERT_FALSE(aside.empty());
  EXPECT_NE(test::read_bytes(tmp / "d.log").find("was moved to " + aside), std::string::npos);
  for (const auto& [rel, content] : before) {
    if (rel == "job_epoch" || rel == "console.json") continue;  // the incarnation count stays; the console is this run's
    auto moved = snapshot(aside);
    ASSERT_EQ(moved.count(rel), 1u) << rel;
    EXPECT_TRUE(moved.at(rel) == content) << rel;
  }
  EXPECT_EQ(exit_status(bin() + " checkpoint verify " + aside + " > /dev/null 2>&1"), 0);
  EXPECT_TRUE(resumed_from(tmp / "job").empty());
  EXPECT_NE(test::read_bytes(tmp / "job/job.toml").find("lr = 0.001"), std::string::npos);
  EXPECT_EQ(test::read_bytes(tmp / "job/job.toml").find("lr = 0.002"), std::string::npos);
  // A restart of the same command (--fresh still given) continues this run instead of setting it aside again.
  ASSERT_EQ(train(tmp / "job", tmp / "e.log", short_job() + " --resume auto --fresh"), 0) << test::read_bytes(tmp / "e.log");
  EXPECT_EQ(previous_run_dir(tmp / "job"), aside);
  EXPECT_FALSE(resumed_from(tmp / "job").empty());
}

TEST(job, resume_on_another_dataset_is_refused_and_the_job_directory_is_unchanged) {
  // Issue 20: data prepared again (same path, same item count) resumed silently on the old cache. The job records
  // the dataset's identity (JOB/dataset.json: the checksum of its manifest's files); another one is refused.
  test::temp_dir tmp;
  fs::copy(tiny(), tmp / "data", fs::copy_options::recursive);
  const std::string on_copy = " --data " + tmp / "data" + test::shell_sets(test::tiny_job_sets()) + short_sets();
  auto train_on = [&](const std::string& log, const std::string& extra) {
    return exit_status(bin() + " train --out " + tmp / "job" + on_copy + extra + " > " + log + " 2>&1");
  };
  ASSERT_EQ(train_on(tmp / "a.log", ""), 0) << test::read_bytes(tmp / "a.log");
  const std::string recorded = test::read_bytes(tmp / "job/dataset.json");
  EXPECT_NE(recorded.find("\"files_xxh3\""), std::string::npos) << recorded;
  // Prepared again in place from the same CSVs with shorter item texts: same path, same 240 items.
  const std::string csv = fs::path(tiny()).parent_path().string() + "/csv";
  ASSERT_EQ(exit_status(bin() + " prepare --interactions " + csv + "/interactions.csv --items " + csv +
                        "/items.csv --out " + tmp / "data" + " --train-tokenizer 600 --max-text-tokens 24 --quiet > " +
                        tmp / "prep.log" + " 2>&1"),
            0)
      << test::read_bytes(tmp / "prep.log");
  const auto before = snapshot(tmp / "job");
  EXPECT_EQ(train_on(tmp / "b.log", " --resume auto"), 1);
  const std::string log = test::read_bytes(tmp / "b.log");
  EXPECT_EQ(lines_with(log, "error:"), 1) << log;
  EXPECT_NE(log.find("the dataset differs (it trained on '" + tmp / "data" + "' (checksum "), std::string::npos) << log;
  EXPECT_NE(log.find(", 240 items, 600 users), --data is '" + tmp / "data" + "' (checksum "), std::string::npos) << log;
  EXPECT_EQ(log.find("the config differs"), std::string::npos) << log;
  EXPECT_EQ(changed(before, snapshot(tmp / "job")), "");
  // The dataset it trained on, at another path (the fixture it was copied from): the same job, so it continues.
  ASSERT_EQ(train(tmp / "job", tmp / "c.log", short_sets() + " --resume auto"), 0) << test::read_bytes(tmp / "c.log");
  EXPECT_FALSE(resumed_from(tmp / "job").empty());
  EXPECT_EQ(test::read_bytes(tmp / "job/dataset"), fs::absolute(tiny()).lexically_normal().string() + "\n");
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
  // Rank 1 is held after its kill_at-th step (the pause hook) and killed there; the restarted ranks find the marker
  // and run through.
  const std::string marker = tmp / "rank1.pause";
  std::string cmd = "exec env " + pause_env(kill_at, 1, marker) + bin() + " train --out " + tmp / "job" +
                    job_args(two + " --max-restarts 2") + " > " + tmp / "job.log" + " 2>&1";
  pid_t pid = start_shell(cmd);
  int status = 0;
  const pid_t rank1 = wait_for_pause(pid, marker, &status);
  ASSERT_GT(rank1, 0) << "the job ended before rank 1 paused";
  ASSERT_NE(rank1, pid) << "the paused process is not rank 1's";
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
  // A new run (--resume never) over an earlier one is refused without --fresh (issue 20: it used to rotate the
  // earlier run's checkpoints out); with --fresh the earlier run moves to JOB/previous-*/ whole, and the new run's
  // retention keeps its own newest checkpoints.
  test::temp_dir tmp;
  ASSERT_EQ(train(tmp / "job", tmp / "a.log"), 0);
  const auto before = snapshot(tmp / "job");
  // --max-restarts does not retry a refused start (its retries pass --resume auto, which would continue the run).
  EXPECT_EQ(train(tmp / "job", tmp / "refused.log",
                  " --set train.checkpoint_every_steps=7 --resume never --max-restarts 2"),
            1);
  const std::string log = test::read_bytes(tmp / "refused.log");
  EXPECT_EQ(lines_with(log, "error:"), 1) << log;
  EXPECT_NE(log.find("hllm train: error: --out '" + tmp / "job" + "' holds an earlier run (job.toml, the dataset it "
                     "trained on and 3 checkpoints (latest stage2-e1-s18)); continue it with --resume auto, or start "
                     "over with --fresh"),
            std::string::npos)
      << log;
  EXPECT_EQ(changed(before, snapshot(tmp / "job")), "");
  ASSERT_EQ(train(tmp / "job", tmp / "b.log", " --set train.checkpoint_every_steps=7 --resume never --fresh"), 0);
  std::string latest = newest_checkpoint(tmp / "job");
  EXPECT_TRUE(fs::is_directory(tmp / ("job/checkpoints/" + latest))) << latest;
  EXPECT_EQ(latest, "stage2-e1-s18");
  // The newest three are the second run's: its last mid-epoch ones of stage 2 (every 7 steps: 7 and 14).
  int kept = 0;
  for (const auto& e : fs::directory_iterator(tmp / "job/checkpoints")) kept += e.is_directory();
  EXPECT_EQ(kept, 3);
  EXPECT_TRUE(fs::is_directory(tmp / "job/checkpoints/stage2-e0-s14"));
  EXPECT_TRUE(fs::is_directory(tmp / "job/checkpoints/stage2-e0-s7"));
  // The first run's three checkpoints are intact beside it.
  const std::string aside = previous_run_dir(tmp / "job");
  ASSERT_FALSE(aside.empty());
  int old_kept = 0;
  for (const auto& e : fs::directory_iterator(aside + "/checkpoints")) old_kept += e.is_directory();
  EXPECT_EQ(old_kept, 3);
  EXPECT_EQ(newest_checkpoint(aside), "stage2-e1-s18");
  EXPECT_EQ(exit_status(bin() + " checkpoint verify " + aside + " > /dev/null 2>&1"), 0);
  EXPECT_EQ(digest(aside), digest(tmp / "job"));  // the same computation (the interval is operational)
}

TEST(job, job_toml_records_that_a_console_token_was_set_never_its_value) {
  // Issue 20: monitor.token was written in clear to JOB/job.toml. A token from --set, from --monitor-token-file or
  // from HLLM_MONITOR_TOKEN never reaches a file of the job directory nor the output; job.toml says token_set.
  test::temp_dir tmp;
  const std::string quick = " --data " + tiny() + " --set 'job.stages=[\"popularity\"]'";
  const std::string secret_set = "s3t-Secret-From-Set-41ac";
  const std::string secret_file = "s3t-Secret-From-File-9d2e";
  const std::string secret_env = "s3t-Secret-From-Env-77b0";
  auto nowhere = [&](const std::string& secret) {
    for (const auto& [rel, content] : snapshot(tmp / "job")) {
      EXPECT_EQ(content.find(secret), std::string::npos) << rel << " holds the token";
    }
    for (const char* log : {"a.log", "b.log", "c.log", "print.log"}) {
      if (fs::exists(tmp / log)) {
        EXPECT_EQ(test::read_bytes(tmp / log).find(secret), std::string::npos) << log;
      }
    }
  };
  auto train_quick = [&](const std::string& log, const std::string& extra, const std::string& env = "") {
    return exit_status(env + bin() + " train --out " + tmp / "job" + quick + extra + " > " + log + " 2>&1");
  };
  ASSERT_EQ(train_quick(tmp / "a.log", " --set monitor.token=" + secret_set), 0) << test::read_bytes(tmp / "a.log");
  std::string toml = test::read_bytes(tmp / "job/job.toml");
  EXPECT_NE(toml.find("token_set = true"), std::string::npos) << toml;
  EXPECT_NE(toml.find("token = \"\""), std::string::npos) << toml;
  EXPECT_NE(test::read_bytes(tmp / "job/console.json").find("\"token\": true"), std::string::npos);
  nowhere(secret_set);
  // A token file readable by others is refused with one line, before the job directory changes.
  test::write_text(tmp / "token", secret_file + "\n");
  fs::permissions(tmp / "token", fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                                     fs::perms::others_read);
  const auto before = snapshot(tmp / "job");
  EXPECT_EQ(train_quick(tmp / "b.log", " --resume auto --monitor-token-file " + tmp / "token"), 1);
  const std::string refused = test::read_bytes(tmp / "b.log");
  EXPECT_EQ(lines_with(refused, "error:"), 1) << refused;
  EXPECT_NE(refused.find("monitor token file '" + tmp / "token" + "' has mode 0644"), std::string::npos) << refused;
  EXPECT_EQ(changed(before, snapshot(tmp / "job")), "");
  fs::permissions(tmp / "token", fs::perms::owner_read | fs::perms::owner_write);
  ASSERT_EQ(train_quick(tmp / "c.log", " --resume auto --monitor-token-file " + tmp / "token"), 0)
      << test::read_bytes(tmp / "c.log");
  EXPECT_NE(test::read_bytes(tmp / "job/job.toml").find("token_set = true"), std::string::npos);
  EXPECT_NE(test::read_bytes(tmp / "job/console.json").find("\"token\": true"), std::string::npos);
  nowhere(secret_file);
  ASSERT_EQ(train_quick(tmp / "c.log", " --resume auto", "HLLM_MONITOR_TOKEN=" + secret_env + " "), 0)
      << test::read_bytes(tmp / "c.log");
  EXPECT_NE(test::read_bytes(tmp / "job/job.toml").find("token_set = true"), std::string::npos);
  nowhere(secret_env);
  // --print-config shows the config as job.toml records it.
  EXPECT_EQ(exit_status(bin() + " train --print-config --set monitor.token=" + secret_set + " > " + tmp / "print.log" +
                        " 2>&1"),
            0);
  EXPECT_NE(test::read_bytes(tmp / "print.log").find("token_set = true"), std::string::npos);
  nowhere(secret_set);
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
    pid_t pid = start_shell(cmd);
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
  pid_t pid = start_shell(cmd);
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
