#pragma once
// Forwarding header: the job-checkpoint format lives in storage/job_checkpoint.hpp (its one owner). Kept only until
// actors/job.cpp includes that header itself.
#include "storage/job_checkpoint.hpp"

namespace hllm {
namespace job_checkpoint = storage::job_checkpoint;
}  // namespace hllm
