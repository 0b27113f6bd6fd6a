#pragma once
// The two collectives a data-parallel training step needs to share one negative pool across ranks (REFERENCE.md:
// "the reference all-gathers negatives across ranks with gradients"). process_group implements them with c10d;
// the trainer (trainer::compute_gradients) uses them. Torch stays out of this header (at::Tensor is only declared).
namespace at {
class Tensor;
}

namespace hllm::model {

class negative_exchange {
 public:
  virtual ~negative_exchange() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // Every rank's `local` concatenated along dimension 0 in rank order. Every rank passes the same shape and dtype
  // (callers pad); throws hllm::error(io) when a rank died or timed out.
  virtual at::Tensor all_gather(const at::Tensor& local) = 0;
  // Sums `t` (contiguous, same shape and dtype on every rank) over the ranks, in place.
  virtual void all_reduce_sum(const at::Tensor& t) = 0;
};

}  // namespace hllm::model
