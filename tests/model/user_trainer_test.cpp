// The user trainer's loop (actors/user_trainer.cpp) with a real ID-baseline trainer on synthetic batches: early
// stopping by patience keeps the best validation's model and stops after P validations without improvement; the
// step cap; the defaults run every epoch. The validation metric is scripted (the quantity under test), the model,
// its steps and its checkpoints are real.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "actors/user_trainer.hpp"
#include "model/trainer.hpp"
#include "synthetic.hpp"

namespace hllm {
namespace {

namespace fs = std::filesystem;
using model::testing::synthetic_data;

constexpr int64_t batch = 16, seq_len = 8, steps_per_epoch = 5;

// Epoch `e`, step k: users k*batch.. of the epoch's shuffled order, and a negative pool, all pure functions.
class synthetic_source : public batch_source {
 public:
  explicit synthetic_source(const synthetic_data& d) : view_(d.view()), users_(model::trainable_users(view_)),
                                                        pool_(model::training_items(view_)) {}
  void start_epoch(std::uint32_t epoch, std::uint64_t first, std::uint64_t end) override {
    epoch_ = epoch;
    next_ = static_cast<int64_t>(first);
    end_ = static_cast<int64_t>(end);
  }
  model::train_batch next() override {
    if (next_ >= end_) throw std::runtime_error("synthetic_source: step past the epoch's end");
    const auto order = model::epoch_order(users_, 7, epoch_);
    std::vector<int64_t> u(order.begin() + next_ * batch, order.begin() + (next_ + 1) * batch);
    auto b = model::make_train_batch(view_, u, seq_len);
    b.negatives = model::sample_negatives(pool_, 64, 7, 0, epoch_, next_, 0);
    ++next_;
    ++served;
    return b;
  }
  int64_t served = 0;

 private:
  model::interaction_table view_;
  std::vector<int64_t> users_;
  std::vector<int32_t> pool_;
  int64_t epoch_ = 0, next_ = 0, end_ = 0;
};

struct fixture {
  synthetic_data data = model::testing::make_synthetic(120, 11);
  std::string dir;
  fixture() {
    dir = (fs::temp_directory_path() / ("user_trainer_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name()))
              .string();
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~fixture() { fs::remove_all(dir); }
  model::trainer make_trainer(int64_t total_steps) const {
    auto c = model::testing::tiny_hllm(0, data.items, 8);
    c.source = model::item_source::id;
    model::train_config t;
    t.total_steps = total_steps;
    return model::trainer(c, t, data.texts.view());
  }
};

resume_options resume_from(const train_progress* p) {
  resume_options r;
  r.from = p;
  return r;
}

// Returns the scripted N@200 of each validation in turn and remembers the item matrix it was given.
struct scripted_validation {
  explicit scripted_validation(std::vector<double> s) : script(std::move(s)) {}
  std::vector<double> script;
  std::vector<std::vector<float>> matrices;
  std::vector<int64_t> steps;
  validate_fn fn() {
    return [this](model::trainer& t) {
      if (matrices.size() >= script.size()) throw std::runtime_error("scripted_validation: script exhausted");
      model::ranking_metrics m;
      m.ndcg[3] = script[matrices.size()];
      matrices.push_back(t.item_matrix());
      steps.push_back(t.steps_done());
      return m;
    };
  }
};

// A stage's schedule over the synthetic data (the ID baseline's: 10 epochs), early stopping set by each test.
stage_spec baseline_spec(const std::string& name = "baseline", std::int64_t epochs = 10) {
  stage_spec spec;
  spec.name = name;
  spec.epochs = epochs;
  spec.batch_size = batch;
  spec.seq_len = seq_len;
  return spec;
}

TEST(user_trainer_early_stop, keeps_the_best_validation_and_stops_after_patience_validations_without_improvement) {
  fixture f;
  auto net = f.make_trainer(100);
  stage_spec spec = baseline_spec();
  spec.patience = 3;
  spec.eval_every_steps = 2;
  // Validations at steps 2, 4, 5 (epoch end), 6, 8, 10 (epoch end), 12, ...: the best is the 4th (step 6, 5.0);
  // 4.0, 4.5 and 4.9 do not beat it, so the 7th validation (step 12) is the third without improvement: stop.
  scripted_validation v({1.0, 3.0, 2.0, 5.0, 4.0, 4.5, 4.9, 9.0, 9.0});
  synthetic_source source(f.data);
  metrics_log log(f.dir + "/metrics.jsonl");
  std::vector<train_progress> checkpoints;
  resume_options ro;
  ro.checkpoint = [&](const model::trainer&, const train_progress& p) { checkpoints.push_back(p); };
  auto out = run_user_trainer(source, net, spec, steps_per_epoch, v.fn(), f.dir + "/baseline", log, nullptr,
                              nullptr, ro);
  EXPECT_EQ(out.stop_reason, "patience");
  EXPECT_EQ(out.stage_steps, 12);
  EXPECT_EQ(out.steps, 12);
  EXPECT_EQ(source.served, 12);
  EXPECT_EQ(net.steps_done(), 12);
  EXPECT_EQ(out.valid_steps, (std::vector<int64_t>{2, 4, 5, 6, 8, 10, 12}));
  EXPECT_EQ(v.steps, out.valid_steps);
  EXPECT_DOUBLE_EQ(out.best_ndcg200, 5.0);
  EXPECT_EQ(out.best_step, 6);
  EXPECT_EQ(out.best_epoch, 1);
  // The best checkpoint is the model the 4th validation saw, not the last one.
  auto best = model::trainer::load(out.best_dir, f.data.texts.view());
  EXPECT_EQ(best.steps_done(), 6);
  EXPECT_EQ(best.item_matrix(), v.matrices[3]);
  EXPECT_NE(best.item_matrix(), v.matrices.back());
  // The last checkpoint marks the stage done (epoch = epochs) and says why.
  ASSERT_FALSE(checkpoints.empty());
  EXPECT_EQ(checkpoints.back().epoch, spec.epochs);
  EXPECT_EQ(checkpoints.back().stopped, "patience");
  EXPECT_EQ(checkpoints.back().evals_since_best, 3);
  EXPECT_EQ(checkpoints.back().best_step, 6);
  // A resume from that checkpoint trains nothing more.
  auto again = run_user_trainer(source, net, spec, steps_per_epoch, v.fn(), f.dir + "/baseline", log, nullptr,
                                nullptr, resume_from(&checkpoints.back()));
  EXPECT_EQ(again.steps, 0);
  EXPECT_EQ(again.stop_reason, "patience");
  EXPECT_EQ(again.best_step, 6);
}

TEST(user_trainer_early_stop, a_resume_carries_the_validations_since_the_best) {
  fixture f;
  stage_spec spec = baseline_spec("stage1", 6);
  spec.patience = 2;
  // Per-epoch validations: 2.0 (best), 1.0 (1 without improvement), then the process ends after epoch 2's checkpoint.
  std::vector<train_progress> checkpoints;
  resume_options ro;
  ro.checkpoint = [&](const model::trainer& t, const train_progress& p) {
    checkpoints.push_back(p);
    t.save(f.dir + "/ckpt-" + std::to_string(p.epoch));
  };
  {
    auto net = f.make_trainer(30);
    spec.epochs = 2;  // the first process runs two epochs of the stage
    scripted_validation v({2.0, 1.0});
    synthetic_source source(f.data);
    metrics_log log(f.dir + "/metrics.jsonl");
    auto out = run_user_trainer(source, net, spec, steps_per_epoch, v.fn(), f.dir + "/stage1", log, nullptr,
                                nullptr, ro);
    EXPECT_EQ(out.stop_reason, "epochs");
    ASSERT_EQ(checkpoints.size(), 2u);
    EXPECT_EQ(checkpoints.back().evals_since_best, 1);
  }
  spec.epochs = 6;
  auto net = model::trainer::load(f.dir + "/ckpt-2", f.data.texts.view());
  // One more validation without improvement (1.5) reaches the patience of 2: stop at epoch 3 (step 15).
  scripted_validation v({1.5, 9.0});
  synthetic_source source(f.data);
  metrics_log log(f.dir + "/metrics.jsonl");
  train_progress from = checkpoints.back();
  auto out = run_user_trainer(source, net, spec, steps_per_epoch, v.fn(), f.dir + "/stage1", log, nullptr, nullptr,
                              resume_from(&from));
  EXPECT_EQ(out.stop_reason, "patience");
  EXPECT_EQ(out.steps, 5);
  EXPECT_EQ(out.stage_steps, 15);
  EXPECT_EQ(out.best_step, 5);
  EXPECT_EQ(out.valid_ndcg200, (std::vector<double>{2.0, 1.0, 1.5}));
}

TEST(user_trainer_early_stop, the_step_cap_stops_mid_epoch_after_a_last_validation) {
  fixture f;
  auto net = f.make_trainer(100);
  stage_spec spec = baseline_spec();
  spec.max_steps = 7;
  scripted_validation v({1.0, 2.0, 9.0});
  synthetic_source source(f.data);
  metrics_log log(f.dir + "/metrics.jsonl");
  auto out = run_user_trainer(source, net, spec, steps_per_epoch, v.fn(), f.dir + "/baseline", log);
  EXPECT_EQ(out.stop_reason, "cap");
  EXPECT_EQ(out.stage_steps, 7);
  EXPECT_EQ(source.served, 7);
  EXPECT_EQ(out.valid_steps, (std::vector<int64_t>{5, 7}));
  EXPECT_EQ(out.best_step, 7);
}

TEST(user_trainer_early_stop, off_by_default_every_epoch_runs_and_validates) {
  fixture f;
  auto net = f.make_trainer(100);
  const stage_spec spec = baseline_spec("baseline", 3);
  scripted_validation v({3.0, 2.0, 1.0});  // never improves after the first: without patience it runs on
  synthetic_source source(f.data);
  metrics_log log(f.dir + "/metrics.jsonl");
  auto out = run_user_trainer(source, net, spec, steps_per_epoch, v.fn(), f.dir + "/baseline", log);
  EXPECT_EQ(out.stop_reason, "epochs");
  EXPECT_EQ(out.stage_steps, 15);
  EXPECT_EQ(out.valid_steps, (std::vector<int64_t>{5, 10, 15}));
  EXPECT_EQ(out.best_epoch, 0);
  EXPECT_EQ(out.best_step, 5);
}

TEST(user_trainer_early_stop, negative_settings_are_an_error_naming_the_stage) {
  fixture f;
  auto net = f.make_trainer(10);
  stage_spec spec;
  spec.name = "stage2";
  spec.patience = -1;
  synthetic_source source(f.data);
  metrics_log log(f.dir + "/metrics.jsonl");
  scripted_validation v({1.0});
  try {
    run_user_trainer(source, net, spec, steps_per_epoch, v.fn(), f.dir + "/stage2", log);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("stage2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("patience"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hllm
