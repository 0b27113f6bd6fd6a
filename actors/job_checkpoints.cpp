#include "actors/job_runner.hpp"

namespace hllm {
namespace job_internal {

// Picks the checkpoint this run continues from: rank 0 decides (skipping, and reporting, truncated, corrupt and
// foreign ones) and tells the other ranks through the rendezvous store, so every rank restores the same one.
void job_runner::choose_resume() {
  // New checkpoints must sort after every one on disk, valid or not, even without a resume: retention removes
  // the lowest serials.
  if (chief_) serial_ = std::max(serial_, job_checkpoint::newest_serial(opt_.out_dir));
  if (opt_.resume == "never") return;
  std::string chosen;
  if (chief_) {
    job_checkpoint::remove_interrupted(opt_.out_dir);  // leftovers of a write that was killed
    auto all = job_checkpoint::list(opt_.out_dir, hex(opt_.config_hash));
    if (opt_.resume == "auto") {
      for (const auto& c : all) {
        std::string problem = c.problem.empty() ? cache_problem(c.state) : c.problem;
        if (problem.empty()) {
          chosen = c.dir;
          break;
        }
        spdlog::warn("resume: skipping checkpoint {}: {}", c.name, problem);
        log_->write(json{{"event", "checkpoint_skipped"}, {"checkpoint", c.name}, {"reason", problem}}.dump());
      }
      if (chosen.empty()) {
        spdlog::info("resume: no valid checkpoint under {}; starting from the beginning",
                     job_checkpoint::root_of(opt_.out_dir));
      }
    } else {
      json st;
      std::string problem = job_checkpoint::check(opt_.resume, &st, hex(opt_.config_hash));
      if (problem.empty()) problem = cache_problem(st);
      if (!problem.empty()) throw error(errc::invalid_input, "--resume " + opt_.resume + ": " + problem);
      chosen = opt_.resume;
    }
  }
  if (group_) {
    if (chief_) group_->publish("resume", chosen.empty() ? "-" : chosen);
    else chosen = group_->lookup("resume");
    if (chosen == "-") chosen.clear();
  }
  if (chosen.empty()) {
    // Starting over after a run that was killed before its first checkpoint: its step lines are superseded just
    // as after a resume, so say so with a resume line that rolls back everything (steps_done 0 of the first
    // trained stage). Without it the metrics ledger would count those batches twice.
    if (opt_.resume == "auto" && earlier_steps_logged_) {
      log_->write(json{{"event", "resume"}, {"checkpoint", ""}, {"model", first_trained_stage()},
                       {"epoch", 0}, {"epoch_step", 0}, {"steps_done", 0}, {"rank", opt_.rank}}
                      .dump());
    }
    return;
  }
  resume_dir_ = chosen;
  resume_state_ = job_checkpoint::read_state(chosen);
  serial_ = std::max(serial_, resume_state_.at("serial").get<int64_t>());
  completed_ = resume_state_.at("completed_stages").get<std::vector<std::string>>();
  spdlog::info("resume: continuing from checkpoint {} ({} epoch {} step {}; completed stages {})", chosen,
               resume_state_.at("stage").get<std::string>(), resume_state_.at("epoch").get<int64_t>(),
               resume_state_.at("epoch_step").get<int64_t>(), json(completed_).dump());
  // Step lines after this one supersede the lines of the same batches written before it (metrics ledger).
  log_->write(json{{"event", "resume"},
                   {"checkpoint", fs::path(chosen).filename().string()},
                   {"model", resume_state_.at("stage")},
                   {"epoch", resume_state_.at("epoch")},
                   {"epoch_step", resume_state_.at("epoch_step")},
                   {"steps_done", resume_state_.at("steps_done")},
                   {"rank", opt_.rank}}
                  .dump());
}

std::string job_runner::first_trained_stage() const {
  for (const auto& st : cfg_.job.stages) {
    for (const auto& m : trained_models) {
      if (st == m.stage) return st;
    }
  }
  return "stage1";
}

bool job_runner::logged_a_step(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  for (std::string line; std::getline(in, line);) {
    if (line.find("\"event\":\"step\"") != std::string::npos) return true;
  }
  return false;
}

// A stage-2 checkpoint trained against another cache version than the stage-1 best on disk is unusable.
std::string job_runner::cache_problem(const json& state) {
  std::string v = state.value("cache_version", "");
  std::string s1 = opt_.out_dir + "/stage1/best";
  if (v.empty() || !fs::exists(s1 + "/model.safetensors")) return "";
  std::string now = storage::checkpoint_version_hex(s1);
  return now == v ? "" : "cache version " + v + " is not the stage-1 best's " + now;
}

// What this run does with a trainer stage: skip it (completed before), continue it from the checkpoint, or
// train it from the start.
job_runner::stage_start job_runner::start_of(const stage_spec& spec) {
  if (std::find(completed_.begin(), completed_.end(), spec.name) != completed_.end()) return stage_start::done;
  if (resume_dir_.empty() || resume_state_.at("stage").get<std::string>() != spec.name) return stage_start::fresh;
  if (resume_state_.at("epoch").get<int64_t>() >= spec.epochs) {
    completed_.push_back(spec.name);
    return stage_start::done;
  }
  return stage_start::resume;
}

train_progress job_runner::resumed_progress() const {
  train_progress p;
  p.epoch = resume_state_.at("epoch").get<int64_t>();
  p.epoch_step = resume_state_.at("epoch_step").get<int64_t>();
  const json& b = resume_state_.at("best");
  p.best_ndcg200 = b.at("ndcg200").get<double>();
  p.best_epoch = b.at("epoch").get<int64_t>();
  p.valid_ndcg200 = b.at("valid_ndcg200").get<std::vector<double>>();
  // Early stopping's state (absent from checkpoints written before it existed: the defaults).
  p.best_step = b.value("step", int64_t{-1});
  p.valid_steps = b.value("valid_steps", std::vector<int64_t>{});
  p.evals_since_best = b.value("evals_since_best", int64_t{0});
  p.stopped = resume_state_.value("stopped", std::string());
  return p;
}

// One checkpoint as an atomic unit (storage/job_checkpoint.hpp: a temporary directory, fsynced, hashed into a
// manifest, renamed; `latest` replaced last). Any failure (unwritable directory, full disk) stops the job with the
// previous checkpoints untouched. Then only the newest train.keep_checkpoints are kept (stage bests live apart, in
// STAGE/best).
void job_runner::write_checkpoint(const model::trainer& net, const stage_spec& spec, const train_progress& p) {
  auto t0 = clock_type::now();
  const std::string name = spec.name + "-e" + std::to_string(p.epoch) + "-s" + std::to_string(net.steps_done());
  json state{{"serial", serial_ + 1},
             {"stage", spec.name},
             {"epoch", p.epoch},
             {"epoch_step", p.epoch_step},
             {"steps_done", net.steps_done()},
             {"epochs", spec.epochs},
             {"steps_per_epoch", steps_per_epoch(spec)},
             {"world_size", opt_.world_size},
             {"lr", p.lr},
             {"logit_scale", p.logit_scale},
             {"config_hash", hex(opt_.config_hash)},
             {"cache_version", spec.stage == 2 ? version_ : std::string()},
             {"best",
              {{"ndcg200", p.best_ndcg200},
               {"epoch", p.best_epoch},
               {"valid_ndcg200", p.valid_ndcg200},
               {"step", p.best_step},
               {"valid_steps", p.valid_steps},
               {"evals_since_best", p.evals_since_best}}},
             {"stopped", p.stopped},
             {"completed_stages", completed_}};
  const uint64_t bytes = job_checkpoint::write(opt_.out_dir, name, std::move(state), [&](const std::string& dir) {
    fs::create_directories(dir + "/trainer");
    net.save(dir + "/trainer");
  });
  ++serial_;
  for (const auto& [dir, why] : job_checkpoint::retain(opt_.out_dir, cfg_.train.keep_checkpoints, name)) {
    spdlog::warn("checkpoint retention: cannot remove {}: {}", dir, why);
  }
  double s = since(t0);
  spdlog::info("checkpoint {}: {:.1f} MB in {:.2f}s", name, static_cast<double>(bytes) / 1e6, s);
  log_->write(json{{"event", "checkpoint"}, {"checkpoint", name}, {"bytes", bytes}, {"seconds", s}}.dump());
}

}  // namespace job_internal

}  // namespace hllm
