#include "model/cuda/nccl_communicator.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <thread>
#include <vector>

#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "storage/error.hpp"

namespace hllm::cuda {
namespace {

void check_cuda(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) {
    throw error(errc::io, "cuda: " + what + ": " + cudaGetErrorString(e));
  }
}

void check_nccl(ncclResult_t r, const std::string& what) {
  if (r != ncclSuccess && r != ncclInProgress) {
    throw error(errc::io, "nccl: " + what + ": " + ncclGetErrorString(r));
  }
}

ncclDataType_t nccl_type(element t) {
  switch (t) {
    case element::f32: return ncclFloat32;
    case element::f64: return ncclFloat64;
    case element::bf16: return ncclBfloat16;
    case element::i64: return ncclInt64;
  }
  throw error(errc::invalid_input, "nccl: unknown element type");
}

}  // namespace

int visible_gpus() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string versions() {
  int nccl = 0, rt = 0;
  ncclGetVersion(&nccl);
  cudaRuntimeGetVersion(&rt);
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return "NCCL " + std::to_string(nccl / 10000) + "." + std::to_string(nccl / 100 % 100) + "." +
         std::to_string(nccl % 100) + ", CUDA runtime " + std::to_string(rt / 1000) + "." +
         std::to_string(rt % 1000 / 10);
}

struct nccl_communicator::impl {
  nccl_options opt;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;

  // Waits for the collective just enqueued, up to the timeout; a dead peer aborts the communicator and throws.
  void wait(const char* what) {
    check_cuda(cudaEventRecord(done, stream), std::string(what) + ": record event");
    const auto deadline = std::chrono::steady_clock::now() + opt.timeout;
    while (true) {
      const auto q = cudaEventQuery(done);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) check_cuda(q, what);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        ncclCommAbort(comm);
        comm = nullptr;
        throw error(errc::io, std::string("nccl: ") + what + " failed (a rank died?): " + ncclGetErrorString(async));
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm);
        comm = nullptr;
        throw error(errc::io, std::string("nccl: ") + what + " timed out after " + std::to_string(opt.timeout.count()) +
                                  " ms (a rank died or hangs)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));  // polling a GPU event, not waiting for a state
    }
  }

  void need_comm(const char* what) const {
    if (comm == nullptr) throw error(errc::io, std::string("nccl: ") + what + " on an aborted communicator");
  }
};

nccl_communicator::nccl_communicator(const nccl_options& o) : impl_(std::make_unique<impl>()) {
  auto& s = *impl_;
  s.opt = o;
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size) {
    throw error(errc::invalid_input, "nccl: rank " + std::to_string(o.rank) + " of world " +
                                         std::to_string(o.world_size) + " is out of range");
  }
  const int gpus = visible_gpus();
  if (o.device < 0 || o.device >= gpus) {
    throw error(errc::invalid_input, "nccl: device cuda:" + std::to_string(o.device) + " but " +
                                         std::to_string(gpus) + " GPU(s) are visible");
  }
  check_cuda(cudaSetDevice(o.device), "set device " + std::to_string(o.device));
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  const std::string where = o.master_addr + ":" + std::to_string(o.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = o.master_port;
    so.isServer = o.start_store && o.rank == 0;
    so.numWorkers = o.world_size;
    so.waitWorkers = false;
    so.timeout = o.timeout;
    c10d::TCPStore store(o.master_addr, so);
    if (o.rank == 0) {
      check_nccl(ncclGetUniqueId(&id), "get unique id");
      const auto* p = reinterpret_cast<const uint8_t*>(&id);
      store.set(o.key, std::vector<uint8_t>(p, p + sizeof(id)));
    }
    const auto v = store.get(o.key);  // blocks up to the store timeout
    if (v.size() != sizeof(id)) {
      throw error(errc::format, "the store holds " + std::to_string(v.size()) + " bytes under '" + o.key +
                                    "', expected an NCCL unique id of " + std::to_string(sizeof(id)));
    }
    std::memcpy(&id, v.data(), sizeof(id));
    // The server rank must outlive the others' reads: wait until every rank has read the id.
    store.add(o.key + "/read", 1);
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    while (store.add(o.key + "/read", 0) < o.world_size) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw error(errc::io, "not every rank read the unique id within the timeout");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling the store's counter with a deadline
    }
  } catch (const error& e) {
    throw error(errc::io, "nccl: rank " + std::to_string(o.rank) + " cannot exchange the unique id through the "
                                                                       "store at " + where + ": " + e.what());
  } catch (const std::exception& e) {
    throw error(errc::io, "nccl: rank " + std::to_string(o.rank) + " cannot exchange the unique id through the "
                                                                       "store at " + where + ": " + e.what());
  }
  check_nccl(ncclCommInitRank(&s.comm, o.world_size, id, o.rank), "init rank " + std::to_string(o.rank));
  check_cuda(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "create stream");
  check_cuda(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), "create event");
}

nccl_communicator::~nccl_communicator() {
  if (!impl_) return;
  if (impl_->comm) ncclCommDestroy(impl_->comm);
  if (impl_->done) cudaEventDestroy(impl_->done);
  if (impl_->stream) cudaStreamDestroy(impl_->stream);
}

int nccl_communicator::rank() const { return impl_->opt.rank; }
int nccl_communicator::world_size() const { return impl_->opt.world_size; }

void nccl_communicator::all_reduce_sum(void* buf, std::size_t count, element type) {
  impl_->need_comm("all-reduce");
  check_nccl(ncclAllReduce(buf, buf, count, nccl_type(type), ncclSum, impl_->comm, impl_->stream), "all-reduce");
  impl_->wait("all-reduce");
}

void nccl_communicator::all_gather(const void* send, void* recv, std::size_t count, element type) {
  impl_->need_comm("all-gather");
  check_nccl(ncclAllGather(send, recv, count, nccl_type(type), impl_->comm, impl_->stream), "all-gather");
  impl_->wait("all-gather");
}

}  // namespace hllm::cuda
