#pragma once
// For the tests that kill jobs (tests/job/resume_test.cpp) and the crash harness (tests/crash/crash_test.cpp): the
// tiny job they run, and what a job directory says about its run: the metrics lines, the sample ledger with resume
// roll-backs, and the parameter digest of `hllm checkpoint digest`. No gtest and no torch: the harness is a plain
// program.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

namespace hllm::test {

// `--set` values of the tiny job on the tiny dataset: two stage-1 epochs and one stage-2 epoch (about 54 steps at
// batch size 32), a checkpoint every 5 steps.
inline const std::vector<std::string>& tiny_job_sets() {
  static const std::vector<std::string> sets{
      "job.stages=[\"stage1\", \"cache\", \"stage2\"]", "stage1.epochs=2", "stage1.batch_size=32", "stage1.seq_len=6",
      "stage1.negatives=64", "stage2.epochs=1", "stage2.batch_size=32", "stage2.seq_len=8", "stage2.negatives=64",
      "model.hidden_size=32", "model.intermediate_size=64", "model.item_layers=1", "model.user_layers=1",
      "cache.unit_items=50", "train.checkpoint_every_steps=5"};
  return sets;
}

// `--set` values that put loaders, the sampler and the cache shards in two worker processes (the encoder in a third
// during the cache fill), with timeouts short enough that a killed or hung worker is noticed in seconds.
inline const std::vector<std::string>& worker_job_sets() {
  static const std::vector<std::string> sets{
      "placement.workers=2", "placement.encoders=1", "placement.loaders=2", "train.request_timeout_ms=3000",
      "cache.unit_timeout_s=5", "placement.heartbeat_ms=500", "placement.heartbeat_timeout_ms=3000"};
  return sets;
}

// SETS as shell arguments: " --set 'k=v' ...".
inline std::string shell_sets(const std::vector<std::string>& sets) {
  std::string out;
  for (const auto& s : sets) out += " --set '" + s + "'";
  return out;
}

// The output of a shell command (stdout only; redirect stderr in CMD to keep it).
inline std::string run_output(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  ::pclose(p);
  return out;
}

// The last line of `HLLM checkpoint digest PATH` (HLLM: the `hllm` executable).
inline std::string digest(const std::string& hllm, const std::string& path) {
  std::string out = run_output(hllm + " checkpoint digest " + path + " 2>&1");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  auto nl = out.rfind('\n');
  return nl == std::string::npos ? out : out.substr(nl + 1);
}

// metrics.jsonl of rank 0, metrics.rank-R.jsonl of the others.
inline std::string metrics_path(const std::string& job, int rank) {
  return job + (rank == 0 ? std::string("/metrics.jsonl") : "/metrics.rank-" + std::to_string(rank) + ".jsonl");
}

// The metrics lines of rank RANK. A line that is not JSON (a writer killed mid-line,
// and the next run appending to it) is skipped and counted in *TORN.
inline std::vector<nlohmann::json> metrics(const std::string& job, int rank = 0, int* torn = nullptr) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(metrics_path(job, rank));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) {
      lines.push_back(std::move(j));
    } else if (torn != nullptr) {
      ++*torn;
    }
  }
  return lines;
}

// Lines of a job's metrics.jsonl (every incarnation's: the file is appended to) that contain TEXT.
inline int metrics_lines_with(const std::string& job, const std::string& text, int rank = 0) {
  std::ifstream in(metrics_path(job, rank));
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(text) != std::string::npos;
  return n;
}

inline int step_lines(const std::string& job, int rank = 0) {
  return metrics_lines_with(job, "\"event\":\"step\"", rank);
}

// Lines of metrics.jsonl whose "event" is EVENT.
inline int event_lines(const std::string& job, const std::string& event, int rank = 0) {
  int n = 0;
  for (const auto& l : metrics(job, rank)) n += l.value("event", "") == event;
  return n;
}

using batch_key = std::tuple<std::string, int64_t, int64_t, int64_t>;  // model, epoch, epoch step, rank

// The trained stages of the jobs these tests run, in plan order.
inline const std::vector<std::string>& default_plan() {
  static const std::vector<std::string> plan{"stage1", "stage2"};
  return plan;
}

// The sample ledger of a job directory from its metrics.jsonl: every trained batch with its loss. A "resume" line
// rolls back what was trained after the checkpoint it names (those lines belong to the killed run: the model state
// they produced was lost); every batch must then be trained exactly once. `duplicates` counts batches trained twice
// without a rollback in between; `torn` lines that are not JSON.
inline std::map<batch_key, double> ledger(const std::string& job, int* duplicates, int* resumes, int rank = 0,
                                          int* torn = nullptr,
                                          const std::vector<std::string>& plan = default_plan()) {
  auto plan_index = [&](const std::string& model) {
    return static_cast<int>(std::find(plan.begin(), plan.end(), model) - plan.begin());
  };
  std::map<batch_key, double> out;
  std::map<batch_key, int64_t> global_step;
  *duplicates = 0;
  *resumes = 0;
  if (torn != nullptr) *torn = 0;
  for (const auto& l : metrics(job, rank, torn)) {
    std::string ev = l.value("event", "");
    if (ev == "resume") {
      ++*resumes;
      int stage = plan_index(l.at("model").get<std::string>());
      int64_t done = l.at("steps_done").get<int64_t>();
      for (auto it = out.begin(); it != out.end();) {
        int s = plan_index(std::get<0>(it->first));
        bool rolled_back = s > stage || (s == stage && global_step[it->first] >= done);
        it = rolled_back ? out.erase(it) : std::next(it);
      }
    } else if (ev == "step") {
      batch_key k{l.at("model").get<std::string>(), l.at("epoch").get<int64_t>(), l.at("epoch_step").get<int64_t>(),
                  l.at("rank").get<int64_t>()};
      *duplicates += out.count(k) != 0;
      out[k] = l.at("loss").get<double>();
      global_step[k] = l.at("step").get<int64_t>();
    }
  }
  return out;
}

// How the sample ledger of RESUMED (rank RANK) differs from the uninterrupted REFERENCE's: empty when every batch
// was trained exactly once with the reference's loss and RESUMED holds EXPECTED_RESUMES resume lines (-1: any
// number); otherwise one line per problem (at most a few batches are named).
inline std::string ledger_differences(const std::string& reference, const std::string& resumed, int expected_resumes,
                                      int rank = 0) {
  std::ostringstream why;
  int dup = 0, res = 0, torn = 0;
  auto a = ledger(reference, &dup, &res, rank, &torn);
  if (dup != 0 || res != 0 || torn != 0) {
    why << "reference: " << dup << " duplicate batches, " << res << " resumes, " << torn << " torn lines\n";
  }
  auto b = ledger(resumed, &dup, &res, rank, &torn);
  if (torn != 0) why << torn << " metrics lines are not JSON (torn)\n";
  if (dup != 0) why << dup << " batches trained twice after a resume\n";
  if (expected_resumes >= 0 && res != expected_resumes) {
    why << res << " resume lines, expected " << expected_resumes << "\n";
  }
  if (a.size() != b.size()) why << b.size() << " batches, the reference has " << a.size() << " (skipped or added)\n";
  int named = 0;
  auto name = [](const batch_key& k) {
    return std::get<0>(k) + " epoch " + std::to_string(std::get<1>(k)) + " step " + std::to_string(std::get<2>(k)) +
           " rank " + std::to_string(std::get<3>(k));
  };
  for (const auto& [k, loss] : a) {
    auto it = b.find(k);
    if (it == b.end()) {
      if (named++ < 5) why << name(k) << ": missing\n";
    } else if (it->second != loss) {
      if (named++ < 5) why << name(k) << ": loss " << it->second << ", the reference's " << loss << "\n";
    }
  }
  for (const auto& [k, loss] : b) {
    if (a.count(k) == 0 && named++ < 5) why << name(k) << ": not in the reference\n";
  }
  return why.str();
}

}  // namespace hllm::test
