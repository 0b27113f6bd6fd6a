#pragma once
// Shared by the job actor tests: the tiny prepared dataset (ctest fixture prepared_tiny) and an actor system with
// an in-process router.
#include <caf/all.hpp>

#include <cstdlib>
#include <memory>
#include <string>

#include "actors/router.hpp"

namespace hllm::test {

inline std::string tiny_dataset() {
  const char* p = std::getenv("HLLM_TINY_DATA");
  return p == nullptr ? "" : p;
}

// One process, every actor local: the router binds nothing.
struct local_actor_env {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  router_actor router;
  local_actor_env() {
    configure_actor_system(cfg);
    sys = std::make_unique<caf::actor_system>(cfg);
    router_config rc;
    rc.bind = {};
    router = spawn_router(*sys, rc);
  }
  ~local_actor_env() { caf::anon_send_exit(router, caf::exit_reason::user_shutdown); }
};

}  // namespace hllm::test
