#pragma once
// User trainer: one data-parallel rank's training loop. It reads steps from a step_feed (batches and negatives
// from loaders and samplers, in step order), runs the model's step, logs a metrics line per step and a progress
// line per few seconds, validates after every epoch and keeps the best checkpoint by validation NDCG@200.
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
  // Timestamp features on (model.time_buckets > 0): the table whose timestamps each batch gets (attach_times).
  const model::interaction_table* times = nullptr;
};

struct stage_outcome {
  std::string best_dir;             // the checkpoint with the best validation NDCG@200 (or the last one)
  std::int64_t best_epoch = -1;
  double best_ndcg200 = -1;
  std::int64_t steps = 0;
  double train_seconds = 0;         // optimizer steps only
  double samples_per_second = 0;
  std::vector<double> valid_ndcg200;  // per epoch
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
};

// Called on the chief every `checkpoint_every` steps and after every epoch's validation; throws hllm::error when
// the checkpoint cannot be written (the job stops).
using checkpoint_fn = std::function<void(const model::trainer&, const train_progress&)>;

struct resume_options {
  const train_progress* from = nullptr;  // continue at this position (the trainer already restored)
  std::int64_t checkpoint_every = 0;     // steps; 0: only after epochs
  checkpoint_fn checkpoint;              // empty: no checkpoints (non-chief ranks)
  int rank = 0;                          // written into every step line
};

// With a process group, gradients are averaged over the ranks before every update; only the chief (rank 0)
// validates and writes checkpoints, the other ranks wait for it at a barrier.
stage_outcome run_user_trainer(step_feed& feed, model::trainer& net, const stage_spec& spec,
                               std::int64_t steps_per_epoch, const validate_fn& validate,
                               const std::string& stage_dir, metrics_log& log, model::process_group* group = nullptr,
                               status_board* board = nullptr, const resume_options& resume = {});

}  // namespace hllm
