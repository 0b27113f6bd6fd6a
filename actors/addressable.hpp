#pragma once
// The CAF side shared by every job actor whose logic is a plain class with `msg::body handle(const msg::body&)`:
// decode the envelope, let the core answer, encode the reply. Errors are replies, never exceptions across a handler.
#include <caf/all.hpp>

#include <memory>
#include <spdlog/spdlog.h>
#include <string>

#include "actors/actors.hpp"
#include "actors/router.hpp"
#include "messages/codec.hpp"
#include "storage/error.hpp"

namespace hllm {

template <class Core>
struct addressable_state {
  std::unique_ptr<Core> core;
  static inline const char* name = "hllm_addressable";
};

template <class Core>
msg::body answer_safely(Core& core, const msg::body& request) {
  try {
    return core.handle(request);
  } catch (const std::exception& e) {
    return msg::error{msg::error_code::internal, e.what()};
  }
}

// Spawns an actor around `core` and enrolls it with the router under `name`. Cores that compute for long (item
// encoders) pass caf::detached so they run on their own thread instead of stalling CAF's scheduler.
// The shared form lets the spawner keep updating a core the actor answers from (status_board).
template <class Core, caf::spawn_options Options = caf::no_spawn_options>
addressable_actor spawn_addressable(caf::actor_system& sys, router_actor router, const std::string& name,
                                    std::shared_ptr<Core> shared_core) {
  auto handle = sys.spawn<Options>([shared_core](typename addressable_actor::template stateful_pointer<addressable_state<Core>>
                                            self) -> addressable_actor::behavior_type {
    return {
        [self, shared_core](atom::deliver, const msg::buffer& b) -> msg::buffer {
          auto env = msg::decode(b);
          if (!env) return msg::encode(msg::make_error_reply(msg::header{}, env.error().code, env.error().what));
          return hllm::make_reply(env->head, answer_safely(*shared_core, env->content));
        },
        [self, shared_core](atom::post, const msg::buffer& b) {
          auto env = msg::decode(b);
          if (env) answer_safely(*shared_core, env->content);
        },
    };
  });
  caf::scoped_actor scope{sys};
  bool ok = false;
  scope->request(router, caf::infinite, atom::enroll_v, name, handle)
      .receive([&](bool accepted) { ok = accepted; },
               [&](const caf::error& e) { spdlog::error("enrolling {}: {}", name, caf::to_string(e)); });
  if (!ok) throw error(errc::io, "cannot enroll '" + name + "' with the router");
  return handle;
}

template <class Core, caf::spawn_options Options = caf::no_spawn_options>
addressable_actor spawn_addressable(caf::actor_system& sys, router_actor router, const std::string& name,
                                    std::unique_ptr<Core> core) {
  return spawn_addressable<Core, Options>(sys, std::move(router), name, std::shared_ptr<Core>(std::move(core)));
}

}  // namespace hllm
