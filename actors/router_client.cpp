// The router's helpers for actor code (router.hpp, "helpers for actor code"): envelopes built, routes added,
// replies judged.
#include <caf/scoped_actor.hpp>

#include "actors/router.hpp"
#include "storage/error.hpp"

namespace hllm {

msg::buffer make_request(const std::string& from, const std::string& to, msg::body content, job_ref job,
                         std::chrono::milliseconds timeout) {
  msg::envelope e;
  e.head.sender = from;
  e.head.receiver = to;
  e.head.correlation_id = msg::next_correlation_id();
  e.head.job_id = job.id;
  e.head.job_epoch = job.epoch;
  e.head.timeout_ms = static_cast<std::uint32_t>(timeout.count());
  e.content = std::move(content);
  return msg::encode(e);
}

msg::buffer make_oneway(const std::string& from, const std::string& to, msg::body content, job_ref job) {
  msg::envelope e;
  e.head.sender = from;
  e.head.receiver = to;
  e.head.job_id = job.id;
  e.head.job_epoch = job.epoch;
  e.content = std::move(content);
  return msg::encode(e);
}

void add_route(caf::actor_system& sys, const router_actor& router, const std::string& name,
               const std::string& endpoint, const std::string& key) {
  caf::scoped_actor self{sys};
  self->request(router, caf::infinite, atom::route_v, name, endpoint, key)
      .receive([](bool) {}, [&](const caf::error& e) {
        throw error(errc::io, "cannot route " + name + " to " + endpoint + ": " + caf::to_string(e));
      });
}

std::string reply_failure(const msg::buffer& reply) {
  auto env = msg::decode(reply);
  if (!env) return env.error().what;
  if (const auto* e = std::get_if<msg::error>(&env->content)) return e->message.empty() ? "error reply" : e->message;
  return {};
}

msg::buffer make_reply(const msg::header& request, msg::body content) {
  return msg::encode(msg::make_reply(request, std::move(content)));
}

}  // namespace hllm
