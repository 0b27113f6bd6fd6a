#include "actors/user_trainer.hpp"

#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/status_board.hpp"
#include "model/collective.hpp"
#include "model/trainer.hpp"
#include "storage/error.hpp"
#include "storage/number.hpp"
#include "storage/file_io.hpp"

namespace hllm {

metrics_log::metrics_log(const std::string& path) : out_(path, std::ios::app) {
  if (!out_) throw error(errc::io, "cannot open metrics file '" + path + "'");
}

void metrics_log::write(const std::string& json_line) {
  out_ << json_line << '\n';
  out_.flush();
}

namespace {

using clock_type = std::chrono::steady_clock;

// Saves to a staging directory and swaps it in, so `best` is always a complete checkpoint.
void save_atomically(const model::trainer& net, const std::string& dir) {
  std::string staged = dir + ".staging";
  std::error_code ec;
  std::filesystem::remove_all(staged, ec);
  std::filesystem::create_directories(staged);
  net.save(staged);
  storage::fsync_directory(staged);
  storage::replace_directory_atomically(staged, dir);
}

std::string fmt_eta(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "?";
  auto s = static_cast<long>(seconds);
  return s >= 60 ? std::to_string(s / 60) + "m" + std::to_string(s % 60) + "s" : std::to_string(s) + "s";
}

// TEST-ONLY pause hook (tests/cluster, docs/operations.md "Test hooks"): lets a kill test hold a rank at a known
// step instead of racing the job's speed. Read once per process; when HLLM_TEST_PAUSE_AT_STEP is unset it costs one
// branch per step. With HLLM_TEST_PAUSE_AT_STEP=N and HLLM_TEST_PAUSE_FILE=PATH (optionally HLLM_TEST_PAUSE_RANK=R,
// default any rank), the rank's N-th step of this process (counted over every stage, after its step line and any
// checkpoint of that step) creates PATH holding "<pid> <rank> <step>" (whole and exclusively, through link()) and
// blocks until PATH is removed or the process is killed (at most HLLM_TEST_PAUSE_MAX_S seconds, default 600). A PATH
// that exists already means an earlier process paused: no pause, so a rank restarted after the kill runs through.
// Never set in a job.
class test_pause_hook {
 public:
  test_pause_hook() {
    const char* at = std::getenv("HLLM_TEST_PAUSE_AT_STEP");
    if (at == nullptr || *at == '\0') return;
    const char* file = std::getenv("HLLM_TEST_PAUSE_FILE");
    if (file == nullptr || *file == '\0')
      throw error(errc::invalid_input, "HLLM_TEST_PAUSE_AT_STEP is set but HLLM_TEST_PAUSE_FILE is not");
    at_ = parse("HLLM_TEST_PAUSE_AT_STEP", at, 1);
    if (const char* r = std::getenv("HLLM_TEST_PAUSE_RANK"); r != nullptr && *r != '\0')
      rank_ = parse("HLLM_TEST_PAUSE_RANK", r, 0);
    if (const char* m = std::getenv("HLLM_TEST_PAUSE_MAX_S"); m != nullptr && *m != '\0')
      max_s_ = parse("HLLM_TEST_PAUSE_MAX_S", m, 1);
    file_ = file;
  }
  // Called after every step of this process.
  void after_step(int rank) {
    if (at_ < 0 || (rank_ >= 0 && rank != rank_)) return;
    std::int64_t step = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);  // `hllm train --world N` runs N ranks in one process
      step = ++steps_[rank];
    }
    if (step != at_) return;
    // Written under a temporary name and linked in: the marker appears whole, and link() fails when it exists.
    const std::string tmp = file_ + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rank);
    const std::string line =
        std::to_string(::getpid()) + " " + std::to_string(rank) + " " + std::to_string(step) + "\n";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw error(errc::io, "test hook: cannot create '" + tmp + "'");
    bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ::close(fd);
    ok = ok && ::link(tmp.c_str(), file_.c_str()) == 0;
    ::unlink(tmp.c_str());
    if (!ok) return;  // an earlier process of this test paused already: run on
    spdlog::warn("test hook: rank {} paused after step {} until {} is removed", rank, step, file_);
    auto until = clock_type::now() + std::chrono::seconds(max_s_);
    std::error_code ec;
    while (std::filesystem::exists(file_, ec) && clock_type::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    spdlog::warn("test hook: rank {} resumed", rank);
  }

 private:
  static std::int64_t parse(const char* name, const char* text, std::int64_t min) {
    return storage::parse_int<std::int64_t>(text, name, min, std::int64_t{1} << 40);  // the strict parser
  }
  std::int64_t at_ = -1, rank_ = -1, max_s_ = 600;
  std::string file_;
  std::mutex mutex_;
  std::map<int, std::int64_t> steps_;  // steps of this process, per rank
};

test_pause_hook& pause_hook() {
  static test_pause_hook hook;  // one per process: the step count runs over every stage
  return hook;
}

}  // namespace

namespace {

class feed_source : public batch_source {
 public:
  explicit feed_source(step_feed& f) : feed_(f) {}
  void start_epoch(std::uint32_t epoch, std::uint64_t first_step, std::uint64_t end_step) override {
    feed_.start_epoch(epoch, first_step, end_step);
  }
  model::train_batch next() override { return feed_.next(); }
  step_feed_counters counters() const override { return feed_.counters(); }

 private:
  step_feed& feed_;
};

}  // namespace

stage_outcome run_user_trainer(step_feed& feed, model::trainer& net, const stage_spec& spec,
                               std::int64_t steps_per_epoch, const validate_fn& validate,
                               const std::string& stage_dir, metrics_log& log, model::process_group* group,
                               status_board* board, const resume_options& resume) {
  feed_source source(feed);
  return run_user_trainer(source, net, spec, steps_per_epoch, validate, stage_dir, log, group, board, resume);
}

stage_outcome run_user_trainer(batch_source& feed, model::trainer& net, const stage_spec& spec,
                               std::int64_t steps_per_epoch, const validate_fn& validate,
                               const std::string& stage_dir, metrics_log& log, model::process_group* group,
                               status_board* board, const resume_options& resume) {
  const bool chief = group == nullptr || group->rank() == 0;
  pause_hook();  // a malformed test setting fails here, before the first step
  if (spec.patience < 0 || spec.eval_every_steps < 0 || spec.max_steps < 0) {
    throw error(errc::invalid_input, spec.name + ": patience, eval_every_steps and max_steps must not be negative (" +
                                         std::to_string(spec.patience) + ", " + std::to_string(spec.eval_every_steps) +
                                         ", " + std::to_string(spec.max_steps) + ")");
  }
  const bool early_stopping = spec.patience > 0 || spec.eval_every_steps > 0 || spec.max_steps > 0;
  stage_outcome out;
  train_progress progress;
  std::int64_t evals_since_best = 0;
  if (resume.from != nullptr) {
    progress = *resume.from;
    out.best_ndcg200 = progress.best_ndcg200;
    out.best_epoch = progress.best_epoch;
    out.best_step = progress.best_step;
    out.valid_ndcg200 = progress.valid_ndcg200;
    out.valid_steps = progress.valid_steps;
    evals_since_best = progress.evals_since_best;
  }
  out.stop_reason = progress.stopped.empty() ? "epochs" : progress.stopped;
  std::filesystem::create_directories(stage_dir);
  const std::int64_t planned = spec.epochs * steps_per_epoch;
  const std::int64_t total = spec.max_steps > 0 ? std::min(planned, spec.max_steps) : planned;
  auto last_print = clock_type::now();
  auto stage_start = clock_type::now();
  double loss_sum = 0, top10_sum = 0;
  std::int64_t window_steps = 0;
  // Steps of this stage done before this process (a resume): progress and ETA count from there.
  const std::int64_t resumed_steps = progress.epoch * steps_per_epoch + progress.epoch_step;

  // The chief validates; the best so far is saved to STAGE/best. `stage_step`: the stage's steps done.
  auto run_validation = [&](std::int64_t epoch, std::int64_t stage_step, bool mid_epoch) {
    if (!chief) return;
    auto v = validate(net);
    double ndcg200 = v.ndcg[3];
    out.valid_ndcg200.push_back(ndcg200);
    out.valid_steps.push_back(stage_step);
    nlohmann::json line{{"event", "validation"}, {"model", spec.name}, {"epoch", epoch},
                        {"R@10", v.recall[1]},   {"R@200", v.recall[3]}, {"N@10", v.ndcg[1]},
                        {"N@200", ndcg200}};
    if (early_stopping) line["stage_step"] = stage_step;  // absent otherwise: the log reads as before
    log.write(line.dump());
    // Without per-epoch validation the only validation (after the last epoch) is the model kept.
    bool better = ndcg200 > out.best_ndcg200 || (!spec.validate_every_epoch && spec.eval_every_steps == 0);
    const std::string where = mid_epoch ? " step " + std::to_string(stage_step) : "";
    spdlog::info("{} epoch {}{}: validation R@10 {:.2f} R@200 {:.2f} N@200 {:.2f}{}", spec.name, epoch + 1, where,
                 v.recall[1], v.recall[3], ndcg200, better ? " (best so far: saved)" : "");
    if (better) {
      evals_since_best = 0;
      out.best_ndcg200 = ndcg200;
      out.best_epoch = epoch;
      out.best_step = stage_step;
      out.best_dir = stage_dir + "/best";
      save_atomically(net, out.best_dir);
    } else {
      ++evals_since_best;
    }
  };
  // After a validation: whether the chief's patience ran out (every rank calls this, at the same steps).
  auto patience_reached = [&]() {
    if (spec.patience <= 0) return false;
    const bool mine = chief && evals_since_best >= spec.patience;
    if (group != nullptr && group->world_size() > 1) return group->sum(mine ? 1.0 : 0.0) > 0.5;
    return mine;
  };
  auto record_progress = [&](std::int64_t epoch, std::int64_t epoch_step, const std::string& stopped) {
    progress.epoch = epoch;
    progress.epoch_step = epoch_step;
    progress.best_ndcg200 = out.best_ndcg200;
    progress.best_epoch = out.best_epoch;
    progress.best_step = out.best_step;
    progress.valid_ndcg200 = out.valid_ndcg200;
    progress.valid_steps = out.valid_steps;
    progress.evals_since_best = evals_since_best;
    progress.stopped = stopped;
  };
  auto stop_with = [&](const std::string& reason) {
    out.stop_reason = reason;
    spdlog::info("{}: stopped by {} after {} steps (best validation N@200 {:.2f} at step {})", spec.name, reason,
                 resumed_steps + out.steps, out.best_ndcg200, out.best_step);
  };
  // Whether validation by steps falls on `done` steps of the stage.
  auto validation_due = [&](std::int64_t done) {
    return spec.eval_every_steps > 0 && done % spec.eval_every_steps == 0;
  };
  // Validates when `validate` says so and stops by patience, else by the cap when `capped`; true when it stopped.
  auto validate_or_stop = [&](std::int64_t epoch, std::int64_t done, bool mid_epoch, bool validate, bool capped) {
    if (validate) {
      run_validation(epoch, done, mid_epoch);
      if (patience_reached()) {
        stop_with("patience");
        return true;
      }
    }
    if (capped) stop_with("cap");
    return capped;
  };

  bool stopped = !progress.stopped.empty();
  for (std::int64_t epoch = progress.epoch; epoch < spec.epochs && !stopped; ++epoch) {
    const std::int64_t first = epoch == progress.epoch ? progress.epoch_step : 0;
    std::int64_t end = steps_per_epoch;
    if (spec.max_steps > 0) {
      const std::int64_t left = spec.max_steps - (epoch * steps_per_epoch + first);
      if (left <= 0) {  // a resume under a smaller cap than the checkpoint's run
        stop_with("cap");
        break;
      }
      end = std::min(end, first + left);
    }
    feed.start_epoch(static_cast<std::uint32_t>(epoch), static_cast<std::uint64_t>(first),
                     static_cast<std::uint64_t>(end));
    for (std::int64_t step = first; step < steps_per_epoch; ++step) {
      auto batch = feed.next();
      if (spec.times != nullptr) model::attach_times(batch, *spec.times);
      auto t0 = clock_type::now();
      model::step_metrics m;
      if (group != nullptr && group->world_size() > 1) {
        m = net.compute_gradients(batch, group);  // the negative pool is shared across the ranks
        group->average_gradients(net);
        net.apply_gradients(m);
      } else {
        m = net.step(batch);
      }
      out.train_seconds += std::chrono::duration<double>(clock_type::now() - t0).count();
      ++out.steps;
      if (board != nullptr) {
        board->set_step(static_cast<std::uint64_t>(resumed_steps + out.steps));
        board->set_counter("epoch", epoch);
        board->set_counter("steps_total", total);
        board->set_counter("requests", static_cast<std::int64_t>(feed.counters().requests));
        board->set_counter("retries", static_cast<std::int64_t>(feed.counters().retries));
      }
      loss_sum += m.loss;
      top10_sum += m.nce_top10_acc;
      ++window_steps;
      // (model, epoch, epoch_step, rank) names the batch: the sample ledger of the resume tests.
      log.write(nlohmann::json{{"event", "step"},        {"model", spec.name},
                               {"epoch", epoch},         {"epoch_step", step},
                               {"rank", resume.rank},    {"step", m.step},
                               {"loss", m.loss},         {"nce", m.nce},
                               {"cls", m.cls},           {"nce_top1_acc", m.nce_top1_acc},
                               {"nce_top5_acc", m.nce_top5_acc}, {"nce_top10_acc", m.nce_top10_acc},
                               {"logit_scale", m.logit_scale},   {"lr", m.lr},
                               {"grad_norm", m.grad_norm},       {"seconds", m.seconds}}
                    .dump());
      auto now = clock_type::now();
      const std::int64_t done = resumed_steps + out.steps;
      if (chief && (now - last_print > std::chrono::seconds(5) || done == total)) {
        double elapsed = std::chrono::duration<double>(now - stage_start).count();
        double sps = static_cast<double>(out.steps) / std::max(elapsed, 1e-9);
        spdlog::info("{} epoch {}/{} step {}/{} | {:.1f} steps/s {:.0f} samples/s | loss {:.3f} top10 {:.3f} | ETA {}",
                     spec.name, epoch + 1, spec.epochs, done, total, sps, sps * spec.batch_size,
                     loss_sum / static_cast<double>(window_steps), top10_sum / static_cast<double>(window_steps),
                     fmt_eta(static_cast<double>(total - done) / std::max(sps, 1e-9)));
        last_print = now;
        loss_sum = top10_sum = 0;
        window_steps = 0;
      }
      progress.lr = m.lr;
      progress.logit_scale = m.logit_scale;
      if (step + 1 < steps_per_epoch) {
        // Mid-epoch: validation by steps and the cap; the epoch's last step is handled after the loop.
        const bool capped = spec.max_steps > 0 && done >= spec.max_steps;
        stopped = validate_or_stop(epoch, done, true, capped || validation_due(done), capped);
        if (stopped && resume.checkpoint) {
          record_progress(spec.epochs, 0, out.stop_reason);  // epoch = epochs: a resume finds the stage done
          resume.checkpoint(net, progress);
        } else if (resume.checkpoint && resume.checkpoint_every > 0 &&
                   net.steps_done() % resume.checkpoint_every == 0) {
          // Mid-epoch checkpoints; the epoch's last step is checkpointed after its validation below.
          record_progress(epoch, step + 1, "");
          resume.checkpoint(net, progress);
        }
      }
      pause_hook().after_step(resume.rank);  // test-only; see test_pause_hook
      if (stopped) break;
    }
    if (stopped) {
      if (group != nullptr) group->barrier();  // the other ranks wait for the chief's validation and checkpoint
      break;
    }
    const std::int64_t done = (epoch + 1) * steps_per_epoch;
    const bool last_epoch = epoch + 1 == spec.epochs;
    const bool capped = spec.max_steps > 0 && done >= spec.max_steps && !last_epoch;
    stopped = validate_or_stop(epoch, done, false,
                               spec.validate_every_epoch || last_epoch || capped || validation_due(done), capped);
    if (resume.checkpoint) {
      // After the best is saved: a resume from here never has to redo this epoch's validation.
      if (stopped) {
        record_progress(spec.epochs, 0, out.stop_reason);
      } else {
        record_progress(epoch + 1, 0, "");
      }
      resume.checkpoint(net, progress);
    }
    if (group != nullptr) group->barrier();  // the other ranks wait for the chief's validation and checkpoint
  }
  out.best_dir = stage_dir + "/best";
  out.stage_steps = resumed_steps + out.steps;
  out.samples_per_second =
      out.train_seconds > 0 ? static_cast<double>(out.steps * spec.batch_size) / out.train_seconds : 0;
  return out;
}

}  // namespace hllm
