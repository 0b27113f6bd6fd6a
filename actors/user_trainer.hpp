#pragma once
// User trainer: one data-parallel rank's training loop. It reads steps from a step_feed (batches and negatives
// from loaders and samplers, in step order), runs the model's step, logs a metrics line per step and a progress
// line per few seconds, validates after every epoch (and, when asked, every N optimizer steps) and keeps the best
// checkpoint by validation NDCG@200. Early stopping (stage_spec::patience) ends a stage once validation has not
// improved for P evaluations; stage_spec::max_steps caps its optimizer steps.
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "actors/step_feed.hpp"
#include "model/batching.hpp"
#include "model/hllm_config.hpp"
#include "model/ranking.hpp"

namespace hllm::model {
class trainer;
class process_group;
}

namespace hllm {

class status_board;

struct stage_spec {
  std::string name;                 // "baseline", "stage1", "stage2": also the checkpoint folder
  std::uint8_t stage = 1;           // the stage key of the determinism contract
  std::int64_t epochs = 1;
  std::uint32_t batch_size = 64;
  std::uint32_t seq_len = 10;
  std::uint32_t negatives = 256;
  model::train_config train;        // total_steps is set from epochs x steps per epoch
  bool validate_every_epoch = true;
  // Early stopping (issue 19). All three 0 = off: the stage runs its epochs and validates per epoch, as before.
  std::int64_t patience = 0;          // stop after this many evaluations without a better validation NDCG@200
  std::int64_t eval_every_steps = 0;  // also validate after every N-th optimizer step of the stage (0: per epoch only)
  std::int64_t max_steps = 0;         // at most this many optimizer steps in the stage (0: epochs x steps per epoch)
  // Timestamp features on (model.time_buckets > 0): the table whose timestamps each batch gets (attach_times).
  const model::interaction_table* times = nullptr;
};

struct stage_outcome {
  std::string best_dir;             // the checkpoint with the best validation NDCG@200 (or the last one)
  std::int64_t best_epoch = -1;     // the epoch in which the best validation ran (0-based)
  std::int64_t best_step = -1;      // the stage's optimizer steps done at the best validation
  double best_ndcg200 = -1;
  std::int64_t steps = 0;           // optimizer steps run by this process (a resumed stage: since the resume)
  std::int64_t stage_steps = 0;     // optimizer steps of the whole stage, those before a resume included
  std::string stop_reason;          // "epochs" (ran them all), "patience" (early stopping), "cap" (max_steps)
  double train_seconds = 0;         // optimizer steps only
  double samples_per_second = 0;
  std::vector<double> valid_ndcg200;     // per validation (per epoch unless eval_every_steps is set)
  std::vector<std::int64_t> valid_steps;  // the stage's optimizer steps done at each validation
};

// One JSON object per line: every step's metrics, every validation, every phase.
class metrics_log {
 public:
  explicit metrics_log(const std::string& path);
  void write(const std::string& json_line);

 private:
  std::ofstream out_;
};

using validate_fn = std::function<model::ranking_metrics(model::trainer&)>;

// Where a stage stands between two steps: what a job checkpoint records beside the trainer and what a resume
// restores. The model, optimizer, step and LR schedule position live in the trainer itself.
struct train_progress {
  std::int64_t epoch = 0;        // data position: the next step to train is (epoch, epoch_step)
  std::int64_t epoch_step = 0;
  double best_ndcg200 = -1;      // best-so-far validation of this stage (its checkpoint is STAGE/best)
  std::int64_t best_epoch = -1;
  std::vector<double> valid_ndcg200;
  double lr = 0, logit_scale = 0;  // of the last step (for the record; the trainer restores its own)
  // Early stopping. A checkpoint of a stage that stopped early has epoch = spec.epochs (the stage is done) and
  // `stopped` naming why; older checkpoints lack these fields: read them as the defaults.
  std::int64_t evals_since_best = 0;       // validations since the best one (patience counts these)
  std::int64_t best_step = -1;
  std::vector<std::int64_t> valid_steps;   // beside valid_ndcg200
  std::string stopped;                     // "", "patience" or "cap"
};

// Called on the chief every `checkpoint_every` steps, after every epoch's validation and when the stage stops
// early; throws hllm::error when the checkpoint cannot be written (the job stops).
using checkpoint_fn = std::function<void(const model::trainer&, const train_progress&)>;

struct resume_options {
  const train_progress* from = nullptr;  // continue at this position (the trainer already restored)
  std::int64_t checkpoint_every = 0;     // steps; 0: only after epochs
  checkpoint_fn checkpoint;              // empty: no checkpoints (non-chief ranks)
  int rank = 0;                          // written into every step line
};

// Where the steps come from: a step_feed in a job, anything that serves the same batches in a test.
class batch_source {
 public:
  virtual ~batch_source() = default;
  // Serves steps [first_step, end_step) of `epoch`, in order.
  virtual void start_epoch(std::uint32_t epoch, std::uint64_t first_step, std::uint64_t end_step) = 0;
  virtual model::train_batch next() = 0;
  virtual step_feed_counters counters() const { return {}; }
};

// With a process group, gradients are averaged over the ranks before every update; only the chief (rank 0)
// validates and writes checkpoints, the other ranks wait for it at a barrier (with patience on, the chief's stop
// decision reaches every rank through a sum over the group after every validation).
stage_outcome run_user_trainer(batch_source& source, model::trainer& net, const stage_spec& spec,
                               std::int64_t steps_per_epoch, const validate_fn& validate,
                               const std::string& stage_dir, metrics_log& log, model::process_group* group = nullptr,
                               status_board* board = nullptr, const resume_options& resume = {});
stage_outcome run_user_trainer(step_feed& feed, model::trainer& net, const stage_spec& spec,
                               std::int64_t steps_per_epoch, const validate_fn& validate,
                               const std::string& stage_dir, metrics_log& log, model::process_group* group = nullptr,
                               status_board* board = nullptr, const resume_options& resume = {});

}  // namespace hllm
