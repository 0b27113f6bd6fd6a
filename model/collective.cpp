#include "model/collective.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#ifdef HLLM_TORCH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <cstdlib>

#include "model/trainer.hpp"
#include "storage/error.hpp"

namespace hllm::model {

struct process_group::impl {
  process_group_options opt;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
#ifdef HLLM_TORCH_CUDA
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;  // CUDA ranks (pg stays null)
#endif
  torch::Device device{torch::kCPU};  // where the collectives' tensors must live

  // Runs f on the backend in use (both expose allreduce / allgather / barrier with the same signatures).
  template <class F>
  auto run(F&& f) {
#ifdef HLLM_TORCH_CUDA
    if (nccl) return f(*nccl);
#endif
    return f(*pg);
  }
};

process_group::process_group(const process_group_options& o) : impl_(std::make_unique<impl>()) {
  impl_->opt = o;
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    throw error(errc::invalid_input, "process group: rank " + std::to_string(o.rank) + " of world " +
                                         std::to_string(o.world_size) + " is out of range");
  }
  try {
    c10d::TCPStoreOptions so;
    so.port = o.master_port;
    so.isServer = o.rank == 0;
    so.numWorkers = o.world_size;
    so.waitWorkers = true;
    so.timeout = o.timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    if (o.device.rfind("cuda", 0) == 0) {
#ifdef HLLM_TORCH_CUDA
      impl_->device = torch::Device(o.device);
      c10::cuda::set_device(impl_->device.index());
      // Blocking waits: a collective whose peer died throws after the timeout instead of hanging the stream.
      setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
      setenv("NCCL_BLOCKING_WAIT", "1", 0);
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = o.timeout;
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, o.rank, o.world_size, opts);
#else
      throw error(errc::invalid_input, "process group: device " + o.device + " needs NCCL, which this build lacks "
                                       "(the GPU build: -DHLLM_CUDA=ON with a CUDA libtorch)");
#endif
    } else {
      auto opts = c10d::ProcessGroupGloo::Options::create();
      opts->timeout = o.timeout;
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(o.interface_host));
      impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, o.rank, o.world_size, opts);
    }
  } catch (const error&) {
    throw;
  } catch (const std::exception& e) {
    throw error(errc::io, "process group: rank " + std::to_string(o.rank) + " cannot join the store at " +
                              o.master_addr + ":" + std::to_string(o.master_port) + ": " + e.what());
  }
}

process_group::~process_group() = default;

int process_group::rank() const { return impl_->opt.rank; }
int process_group::world_size() const { return impl_->opt.world_size; }

void process_group::average_gradients(trainer& t) {
  if (impl_->opt.world_size == 1) return;
  auto grads = t.gradients();
  std::vector<torch::Tensor> flat_parts;
  flat_parts.reserve(grads.size());
  for (auto& g : grads) flat_parts.push_back(g.reshape({-1}));
  std::vector<torch::Tensor> bucket{torch::cat(flat_parts).to(impl_->device)};
  try {
    impl_->run([&](auto& pg) { pg.allreduce(bucket)->wait(); });
  } catch (const std::exception& e) {
    throw error(errc::io, std::string("gradient all-reduce failed (a rank died or timed out): ") + e.what());
  }
  bucket[0].div_(static_cast<double>(impl_->opt.world_size));
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (auto& g : grads) {
    g.copy_(bucket[0].narrow(0, offset, g.numel()).view_as(g));
    offset += g.numel();
  }
}

at::Tensor process_group::all_gather(const at::Tensor& local) {
  if (impl_->opt.world_size == 1) return local.clone();
  // On the backend's device (a host tensor goes to the GPU and its result comes back for an NCCL rank).
  std::vector<torch::Tensor> in{local.contiguous().to(impl_->device)};
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int r = 0; r < impl_->opt.world_size; ++r) out[0].push_back(torch::empty_like(in[0]));
  try {
    impl_->run([&](auto& pg) { pg.allgather(out, in)->wait(); });
  } catch (const std::exception& e) {
    throw error(errc::io, std::string("negative pool all-gather failed (a rank died or timed out): ") + e.what());
  }
  return torch::cat(out[0], 0).to(local.device());
}

void process_group::all_reduce_sum(const at::Tensor& t) {
  if (impl_->opt.world_size == 1) return;
  if (!t.is_contiguous()) {
    throw error(errc::invalid_input, "all_reduce_sum: the tensor must be contiguous (it is reduced in place)");
  }
  std::vector<torch::Tensor> bucket{t.to(impl_->device)};
  try {
    impl_->run([&](auto& pg) { pg.allreduce(bucket)->wait(); });
  } catch (const std::exception& e) {
    throw error(errc::io, std::string("negative pool gradient all-reduce failed (a rank died or timed out): ") +
                              e.what());
  }
  if (!bucket[0].is_same(t)) {
    torch::NoGradGuard no_grad;
    t.copy_(bucket[0]);
  }
}

double process_group::sum(double value) {
  if (impl_->opt.world_size == 1) return value;
  std::vector<torch::Tensor> t{torch::tensor({value}, torch::kFloat64).to(impl_->device)};
  impl_->run([&](auto& pg) { pg.allreduce(t)->wait(); });
  return t[0].item<double>();
}

void process_group::barrier() {
  if (impl_->opt.world_size == 1) return;
  try {
    impl_->run([&](auto& pg) { pg.barrier()->wait(); });
  } catch (const std::exception& e) {
    throw error(errc::io, std::string("barrier failed (a rank died or timed out): ") + e.what());
  }
}

void process_group::publish(const std::string& key, const std::string& value) {
  impl_->store->set("hllm/" + key, std::vector<uint8_t>(value.begin(), value.end()));
}

std::string process_group::lookup(const std::string& key) {
  try {
    auto v = impl_->store->get("hllm/" + key);
    return {v.begin(), v.end()};
  } catch (const std::exception& e) {
    throw error(errc::io, "process group: nobody published '" + key + "' in time: " + e.what());
  }
}

}  // namespace hllm::model
