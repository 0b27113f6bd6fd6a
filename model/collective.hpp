#pragma once
// Collectives between data-parallel trainer ranks: torch's c10d ProcessGroupGloo over a TCPStore on CPU, c10d's
// ProcessGroupNCCL for CUDA ranks in the GPU build. Never hand-written over ZeroMQ (ARCHITECTURE.md). Torch stays out of this header.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "model/negative_exchange.hpp"

namespace hllm::model {

class trainer;

struct process_group_options {
  std::string master_addr = "127.0.0.1";  // where rank 0 runs the TCPStore
  std::uint16_t master_port = 29500;
  int rank = 0;
  int world_size = 1;
  // Every collective and the rendezvous fail after this instead of hanging when a rank died.
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
  std::string interface_host = "127.0.0.1";  // address Gloo binds on this host
  // The trainer's device (trainer::device()): "cpu" ranks use Gloo; "cuda:N" ranks use NCCL (ProcessGroupNCCL, GPU
  // build only: -DHLLM_CUDA=ON with a CUDA libtorch; elsewhere one clear error). Every rank of a job uses one kind.
  std::string device = "cpu";
};

class process_group : public negative_exchange {
 public:
  // Rendezvous with every other rank; throws hllm::error(io) naming the store address on failure or timeout.
  explicit process_group(const process_group_options& o);
  ~process_group() override;
  process_group(const process_group&) = delete;
  process_group& operator=(const process_group&) = delete;

  int rank() const override;
  int world_size() const override;
  // Averages the trainer's gradients over all ranks in place (one flattened all-reduce, fixed order, so every
  // rank applies bit-identical updates).
  void average_gradients(trainer& t);
  // negative_exchange: the shared negative pool of the training step (Gloo all-gather and all-reduce).
  at::Tensor all_gather(const at::Tensor& local) override;
  void all_reduce_sum(const at::Tensor& t) override;
  // Sums `value` over ranks (e.g. a loss for logging).
  double sum(double value);
  void barrier();
  // The rendezvous store doubles as a small key-value board: ranks publish their router endpoints here.
  void publish(const std::string& key, const std::string& value);
  // Waits (up to the timeout) until `key` is published.
  std::string lookup(const std::string& key);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hllm::model
