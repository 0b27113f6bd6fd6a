#pragma once
// A communicator written against NCCL and the CUDA runtime directly (issue 18): sums and all-gathers over device
// buffers between ranks that each own one GPU. The NCCL unique id travels through c10d's TCPStore (the store the
// CPU collectives already use), so it links against any libtorch, CUDA or not, and builds in CI (`cuda_check`,
// configured with -DHLLM_CUDA=ON). Every collective waits with a deadline: a rank that died or hangs turns into
// hllm::error(io) after `timeout` (the communicator is aborted), never a hang. No torch types in this header.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace hllm::cuda {

enum class element { f32, f64, bf16, i64 };

struct nccl_options {
  std::string master_addr = "127.0.0.1";  // where rank 0 runs (or already runs) the TCPStore
  std::uint16_t master_port = 29600;
  bool start_store = true;                // rank 0 starts the store server; false: every rank is a client
  int rank = 0;
  int world_size = 1;
  int device = 0;                         // this rank's GPU (the job's LOCAL_RANK)
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
  std::string key = "hllm/nccl-unique-id";  // store key of the unique id (one per communicator)
};

// Visible GPUs (0 without a driver or GPU, never an exception).
int visible_gpus();
// "NCCL 2.28.x, CUDA runtime 13.0" for logs.
std::string versions();

class nccl_communicator {
 public:
  // Rendezvous: rank 0 makes the unique id and publishes it, every rank reads it and joins. Throws hllm::error(io)
  // naming the store address and the NCCL/CUDA error (or invalid_input for a bad rank or device).
  explicit nccl_communicator(const nccl_options& o);
  ~nccl_communicator();
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;

  int rank() const;
  int world_size() const;
  // In place: buf (device memory, `count` elements) becomes the sum over the ranks. Same count and type on every
  // rank; NCCL's result is bit-identical on every rank.
  void all_reduce_sum(void* device_buf, std::size_t count, element type);
  // recv (device, world_size * count elements) = every rank's send (count elements) in rank order.
  void all_gather(const void* device_send, void* device_recv, std::size_t count, element type);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace hllm::cuda
