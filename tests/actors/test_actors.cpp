#include "tests/actors/test_actors.hpp"

#include <caf/response_promise.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <memory>

namespace hllm::testing {

msg::batch expected_batch(const msg::batch_request& r) {
  msg::batch b;
  b.at = r.at;
  for (std::uint32_t u = 0; u < r.batch_size; ++u) {
    b.user_ids.push_back(static_cast<std::int64_t>(r.at.step * 1000 + u));
    for (std::uint32_t i = 0; i < u % 3 + 1; ++i) {
      b.item_ids.push_back(static_cast<std::int32_t>(r.at.step + u + i));
    }
  }
  return b;
}

addressable_actor::behavior_type batch_service(addressable_actor::pointer self, std::string name) {
  auto posts = std::make_shared<std::int64_t>(0);
  return {
      // A request: decode, answer by body kind.
      [self, name, posts](atom::deliver, const msg::buffer& b) -> msg::buffer {
        auto request = msg::decode(b);
        if (!request.ok()) {
          return msg::encode(msg::make_error_reply(request.error().head, request.error().code,
                                                   request.error().what));
        }
        const auto& head = request->head;
        if (auto* br = std::get_if<msg::batch_request>(&request->content)) {
          return hllm::make_reply(head, expected_batch(*br));
        }
        if (std::holds_alternative<msg::status_request>(request->content)) {
          msg::status_reply s;
          s.name = name;
          s.kind = "batch_service";
          s.state = msg::actor_state::running;
          s.counters.push_back({"posts", *posts});
          return hllm::make_reply(head, s);
        }
        return msg::encode(msg::make_error_reply(head, msg::error_code::rejected,
                                                 std::string("cannot answer ") +
                                                     msg::to_string(msg::kind_of(request->content))));
      },
      // A one-way message: count the ones that decode.
      [posts](atom::post, const msg::buffer& b) {
        if (msg::decode(b).ok()) {
          ++*posts;
        }
      },
  };
}

namespace {

struct client_state {
  std::uint32_t sent = 0;
  std::uint32_t answered = 0;
  std::string failure;
  caf::response_promise done;
};

void ask_next(caf::event_based_actor* self, router_actor router, const client_plan& plan,
              std::shared_ptr<client_state> st) {
  msg::batch_request r;
  r.at = {1, 0, st->sent, 0};
  r.batch_size = 1 + st->sent % 5;
  ++st->sent;
  auto bytes = make_request(plan.name, plan.service, r, plan.job, std::chrono::milliseconds(5000));
  self->request(router, caf::infinite, atom::request_v, bytes)
      .then([self, router, plan, st, r](msg::buffer& reply_bytes) {
        ++st->answered;
        auto reply = msg::decode(reply_bytes);
        if (st->failure.empty()) {
          if (!reply.ok()) {
            st->failure = "undecodable reply: " + reply.error().what;
          } else if (auto* e = std::get_if<msg::error>(&reply->content)) {
            st->failure = std::string("error reply: ") + msg::to_string(e->code) + ": " + e->message;
          } else if (!std::holds_alternative<msg::batch>(reply->content) ||
                     !(std::get<msg::batch>(reply->content) == expected_batch(r))) {
            st->failure = "wrong batch for step " + std::to_string(r.at.step);
          }
        }
        if (st->sent < plan.requests) {
          ask_next(self, router, plan, st);
        } else if (st->answered == plan.requests) {
          st->done.deliver(st->failure);
        }
      });
}

}  // namespace

caf::behavior batch_client(caf::event_based_actor* self, router_actor router, client_plan plan) {
  auto st = std::make_shared<client_state>();
  return {
      [self, router, plan, st](const std::string& command) {
        if (command != "run") {
          return;
        }
        st->done = self->make_response_promise();
        for (std::uint32_t i = 0; i < plan.window && st->sent < plan.requests; ++i) {
          ask_next(self, router, plan, st);
        }
      },
  };
}

}  // namespace hllm::testing
