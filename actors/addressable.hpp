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

// The one table from an hllm::error's category to the code of the error reply a receiver sends for it (a client
// reads the code back with errc_of, actors/ask.hpp). The wire has fewer codes than errc: checksum travels as
// malformed (a client reads format), invalid_input and not_found as rejected (a client reads mismatch).
constexpr msg::error_code code_of(errc c) {
  switch (c) {
    case errc::io: return msg::error_code::internal;
    case errc::format:
    case errc::checksum: return msg::error_code::malformed;
    case errc::version: return msg::error_code::version_mismatch;
    case errc::invalid_input:
    case errc::not_found:
    case errc::mismatch: return msg::error_code::rejected;
  }
  return msg::error_code::internal;
}

// The refusal of a body a receiver does not take: `rejected`, naming the receiver and the body's kind.
inline msg::error refuse_unexpected(const std::string& receiver, const msg::body& request) {
  return {msg::error_code::rejected, receiver + ": unexpected " + msg::to_string(msg::kind_of(request))};
}

// The core's answer; a thrown hllm::error becomes the error reply of its category (code_of), anything else thrown
// `internal`.
template <class Core>
msg::body answer_safely(Core& core, const msg::body& request) {
  try {
    return core.handle(request);
  } catch (const error& e) {
    return msg::error{code_of(e.code()), e.what()};
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
