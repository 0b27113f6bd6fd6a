// cuda_check: links every CUDA piece that builds without a CUDA libtorch (issue 18) and, where a GPU is visible,
// runs the NCCL communicator once: `cuda_check [world_size rank port]` (default 1 0 29650: one rank, one GPU). Without
// a GPU it prints what it was built against and says it did not run (exit 0: building and linking is its check).
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "model/cuda/nccl_communicator.hpp"
#include "storage/error.hpp"

int main(int argc, char** argv) {
  using namespace hllm::cuda;
  std::printf("cuda_check: %s\n", versions().c_str());
  const int gpus = visible_gpus();
  if (gpus == 0) {
    std::printf("cuda_check: no GPU visible: built and linked, not run\n");
    return 0;
  }
  nccl_options o;
  o.world_size = argc > 1 ? std::atoi(argv[1]) : 1;
  o.rank = argc > 2 ? std::atoi(argv[2]) : 0;
  o.master_port = static_cast<std::uint16_t>(argc > 3 ? std::atoi(argv[3]) : 29650);
  o.device = o.rank % gpus;
  o.timeout = std::chrono::seconds(60);
  try {
    nccl_communicator c(o);
    const std::size_t n = 1 << 20;
    std::vector<float> host(n, static_cast<float>(o.rank + 1));
    float* dev = nullptr;
    if (cudaMalloc(&dev, n * sizeof(float)) != cudaSuccess) throw hllm::error(hllm::errc::io, "cudaMalloc failed");
    cudaMemcpy(dev, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    c.all_reduce_sum(dev, n, element::f32);
    cudaMemcpy(host.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost);
    cudaFree(dev);
    const float want = static_cast<float>(o.world_size * (o.world_size + 1) / 2);
    for (float v : host) {
      if (v != want) {
        std::fprintf(stderr, "cuda_check: all-reduce gave %g, expected %g\n", v, want);
        return 1;
      }
    }
    std::printf("cuda_check: rank %d of %d on cuda:%d: all-reduce of %zu floats correct\n", o.rank, o.world_size,
                o.device, n);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cuda_check: %s\n", e.what());
    return 1;
  }
  return 0;
}
