#pragma once
// Small socket helpers shared by the launcher, the worker pool and tests.
#include <cstdint>

namespace hllm::storage {

// A free TCP port on 127.0.0.1: the kernel picks it for a socket that is closed again at once, so another process
// can take it before the caller binds it (the usual race of torchrun's standalone mode; callers report a failed bind).
std::uint16_t free_tcp_port();

}  // namespace hllm::storage
