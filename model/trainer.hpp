#pragma once
// One process's training step for HLLM / the ID baseline / stage 2, and its checkpoint. Torch stays out of this
// header (pimpl) so that actor code can hold a trainer without compiling torch; gradients for a data-parallel
// all-reduce are reachable through `gradients()` (at::Tensor is only declared here).
//
// Checkpoint directory (format "hllm-checkpoint", version 1):
//   config.json             {"format", "version", "model": hllm_config, "train": train_config, "step"}
//   model.safetensors       every parameter, fp32, named as in the model ("item_llm.model.layers.0...")
//   optimizer.safetensors   "exp_avg.<param>" and "exp_avg_sq.<param>" (fp32) for every trained parameter
// Each file is written atomically (temporary file, fsync, rename); the job layer makes the directory atomic.
//
// Devices: a trainer computes on the CPU (the default) or one CUDA device. The model is built and initialised on the
// CPU (so its initial parameters do not depend on the device) and then moved; model, optimizer state and the step's
// math stay on the device; batches are assembled on the host and copied pinned and non-blocking; the forward pass
// runs under bf16 autocast on a GPU. Checkpoints hold host copies, and load() reads them onto the trainer's device
// (the map location), so a checkpoint written on a GPU resumes on the CPU and back.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/batching.hpp"
#include "model/hllm_config.hpp"
#include "model/negative_exchange.hpp"
#include "model/ranking.hpp"
#include "model/safetensors.hpp"
#include "storage/span.hpp"

namespace at {
class Tensor;
}

namespace hllm::model {

inline constexpr const char* checkpoint_format = "hllm-checkpoint";
inline constexpr int checkpoint_version = 1;

// Where a trainer computes (train.device, --device): "cpu", "cuda" (= "cuda:<local_rank>"), "cuda:N", or "auto"
// (a GPU when this build has CUDA and one is visible, else the CPU). Returns "cpu" or "cuda:N". Throws
// hllm::error(invalid_input) with one line for an unknown name, or CUDA where the build or the machine has none;
// the line starts with `key` ("train.device = X: ..."; hllm encode passes "--device").
std::string resolve_device(const std::string& requested, int local_rank = 0,
                           const std::string& key = "train.device");
// What this libtorch and machine offer: built with CUDA, and how many GPUs are visible (0 in the CPU build).
bool cuda_built();
int cuda_device_count();

struct step_metrics {
  int64_t step = 0;  // the step this was (0-based)
  double loss = 0, nce = 0, cls = 0;
  double nce_top1_acc = 0, nce_top5_acc = 0, nce_top10_acc = 0;
  double logit_scale = 0;  // exp(s) after the clamp
  double lr = 0;
  double grad_norm = 0;    // before clipping
  int64_t positions = 0, items_encoded = 0, item_tokens = 0;
  double seconds = 0;
};

class trainer {
 public:
  // `texts` must outlive the trainer when the source is text. `cache` ((num_items + 1) * hidden floats, row 0
  // padding) is copied in when the source is cache; it may be empty there: training then reads each batch's own
  // cached rows (train_batch::row_ids / rows; a batch without them is an error), and evaluation needs
  // set_item_cache first.
  // `device` as resolve_device takes it (resolved here with local rank 0; the job passes "cuda:N" already resolved).
  trainer(const hllm_config& model, const train_config& train, item_text_table texts,
          span<const float> cache = {}, const std::string& device = "cpu");
  ~trainer();
  trainer(trainer&&) noexcept;
  trainer& operator=(trainer&&) noexcept;

  // compute_gradients + apply_gradients.
  step_metrics step(const train_batch& b);
  // The two halves, for data-parallel ranks: gradients, then (after the caller averaged them) the update.
  // With an exchange of world size > 1 the negative pool is every rank's negatives (all-gathered with gradients,
  // REFERENCE.md) and the gradients are scaled so that, once averaged over the ranks (process_group::
  // average_gradients), they are those of the mean loss of one process holding the global batch and pool. Every
  // rank must call it for every step (it runs collectives). Metrics stay this rank's own.
  step_metrics compute_gradients(const train_batch& b, negative_exchange* exchange = nullptr);
  void apply_gradients(step_metrics& m);
  // Gradient tensors of every trained parameter, in a fixed order (all-reduce them in place).
  std::vector<at::Tensor> gradients();

  int64_t steps_done() const;
  // "cpu" or "cuda:N".
  const std::string& device() const;
  const hllm_config& model_config() const;
  const train_config& training_config() const;

  // Every item's embedding, row-major [(num_items + 1) x hidden], row 0 zeros. Source = cache: the matrix given to
  // the constructor or set_item_cache (an error without one).
  std::vector<float> item_matrix();
  // Source = cache: copies in the item matrix ((num_items + 1) * hidden floats) that ranks() and item_matrix() read
  // (and batches without cached rows); an error for any other source.
  void set_item_cache(span<const float> cache);
  // Embeddings of `ids` from the configured item source, row-major [ids x hidden], without gradients (the item
  // encoders of the cache fill use this).
  std::vector<float> item_embeddings(const std::vector<int32_t>& ids);
  // Loads this model's parameters from another checkpoint's model.safetensors, e.g. stage 1's into a stage-2 model
  // (source = cache): every parameter of this model must be there; tensors it does not have (the Item LLM) are
  // ignored. The optimizer state and step stay as they are.
  void load_weights_from(const std::string& dir);
  // Source = text: replaces the Item LLM's Llama weights with a Hugging Face checkpoint's (hf_dir: config.json +
  // model.safetensors or a sharded index; model/llama.hpp load_hf_llama). Its config.json must describe exactly
  // this trainer's Item LLM (model_config().item_llm); every other parameter, the [ITEM] vector included, keeps its
  // initialisation. Call it before the first step (the optimizer state is not touched). Throws hllm::error naming
  // the directory and what disagrees.
  void load_item_llm(const std::string& hf_dir);
  int64_t hidden_size() const;
  // 0-based rank of each query's target (metrics.hpp) with this model's item and user embeddings (source = cache:
  // an error unless the trainer holds an item matrix).
  std::vector<int64_t> ranks(const eval_set& e);

  // Parameters ("model.<name>") and optimizer state ("optim.exp_avg.<name>", ...) as views into live memory (on a
  // GPU: into host copies made by this call, valid until the next call or the next step).
  std::vector<tensor_blob> state_blobs() const;
  void save(const std::string& dir) const;
  // Restores parameters, optimizer state and step; the configs come from DIR/config.json. `cache` as in the
  // constructor (may be empty for a stage-2 checkpoint). `device` is the map location: the tensors are read on the
  // host and copied to it, whatever device wrote the checkpoint.
  static trainer load(const std::string& dir, item_text_table texts, span<const float> cache = {},
                      const std::string& device = "cpu");

 private:
  struct impl;
  explicit trainer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace hllm::model
