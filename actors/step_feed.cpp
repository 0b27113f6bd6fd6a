#include "actors/step_feed.hpp"

#include <caf/all.hpp>
#include <deque>
#include <spdlog/spdlog.h>

#include "messages/codec.hpp"
#include "storage/error.hpp"

namespace hllm {

namespace {

using handle_type = decltype(std::declval<caf::scoped_actor&>()->request(
    std::declval<router_actor&>(), caf::infinite, atom::request_v, std::declval<msg::buffer>()));

// One outstanding request and how to repeat it elsewhere.
struct outstanding {
  handle_type handle;
  int attempt = 0;
};

}  // namespace

struct step_feed::impl {
  impl(caf::actor_system& sys, router_actor r, step_feed_options o) : self(sys), router(std::move(r)), opt(std::move(o)) {}

  caf::scoped_actor self;
  router_actor router;
  step_feed_options opt;
  std::uint32_t epoch = 0;
  std::uint64_t next_request = 0, end = 0;
  struct pending_step {
    std::uint64_t step;
    outstanding batch, negatives;
  };
  std::deque<pending_step> pending;
  step_feed_counters counters;

  msg::step_key key(std::uint64_t step) const { return {opt.stage, epoch, step, opt.rank}; }

  outstanding ask_batch(std::uint64_t step, int attempt) {
    msg::batch_request r;
    r.at = key(step);
    r.world_size = opt.world_size;
    r.batch_size = opt.batch_size;
    r.max_length = opt.max_length;
    const auto& to = opt.loaders[(step + static_cast<std::uint64_t>(attempt)) % opt.loaders.size()];
    ++counters.requests;
    return {self->request(router, caf::infinite, atom::request_v, make_request(opt.name, to, r, opt.job, opt.timeout)),
            attempt};
  }

  outstanding ask_negatives(std::uint64_t step, int attempt) {
    msg::negatives_request r;
    r.at = key(step);
    r.count = opt.negatives;
    const auto& to = opt.samplers[(step + static_cast<std::uint64_t>(attempt)) % opt.samplers.size()];
    ++counters.requests;
    return {self->request(router, caf::infinite, atom::request_v, make_request(opt.name, to, r, opt.job, opt.timeout)),
            attempt};
  }

  void fill_window() {
    while (next_request < end && pending.size() < opt.window) {
      pending.push_back({next_request, ask_batch(next_request, 0), ask_negatives(next_request, 0)});
      ++next_request;
    }
  }

  // Waits for one reply; on an error reply asks the next actor, up to opt.attempts times.
  template <class Body>
  Body await(outstanding o, std::uint64_t step, bool is_batch) {
    while (true) {
      std::string failure;
      Body out;
      bool ok = false;
      o.handle.receive(
          [&](const msg::buffer& b) {
            auto env = msg::decode(b);
            if (!env) {
              failure = env.error().what;
            } else if (auto* body = std::get_if<Body>(&env->content)) {
              out = std::move(*body);
              ok = true;
            } else if (auto* e = std::get_if<msg::error>(&env->content)) {
              failure = std::string(msg::to_string(e->code)) + ": " + e->message;
            } else {
              failure = std::string("unexpected reply ") + msg::to_string(msg::kind_of(env->content));
            }
          },
          [&](const caf::error& e) { failure = caf::to_string(e); });
      if (ok) return out;
      if (o.attempt + 1 >= opt.attempts) {
        throw error(errc::io, opt.name + ": step " + std::to_string(step) + " of epoch " + std::to_string(epoch) +
                                  ": no " + (is_batch ? "loader" : "sampler") + " answered after " +
                                  std::to_string(opt.attempts) + " attempts; last failure: " + failure);
      }
      ++counters.retries;
      spdlog::warn("{}: step {}: {} failed ({}), asking the next one", opt.name, step,
                   is_batch ? "loader" : "sampler", failure);
      o = is_batch ? ask_batch(step, o.attempt + 1) : ask_negatives(step, o.attempt + 1);
    }
  }
};

step_feed::step_feed(caf::actor_system& sys, router_actor router, step_feed_options o)
    : impl_(std::make_unique<impl>(sys, std::move(router), std::move(o))) {
  if (impl_->opt.loaders.empty() || impl_->opt.samplers.empty()) {
    throw error(errc::invalid_input, "step_feed: needs at least one loader and one sampler");
  }
  if (impl_->opt.window == 0) impl_->opt.window = 1;
}

step_feed::~step_feed() = default;

void step_feed::start_epoch(std::uint32_t epoch, std::uint64_t first_step, std::uint64_t end_step) {
  // Replies still outstanding from an earlier epoch are received and dropped.
  for (auto& p : impl_->pending) {
    p.batch.handle.receive([](const msg::buffer&) {}, [](const caf::error&) {});
    p.negatives.handle.receive([](const msg::buffer&) {}, [](const caf::error&) {});
  }
  impl_->pending.clear();
  impl_->epoch = epoch;
  impl_->next_request = first_step;
  impl_->end = end_step;
  impl_->fill_window();
}

model::train_batch step_feed::next() {
  auto& s = *impl_;
  if (s.pending.empty()) throw error(errc::invalid_input, s.opt.name + ": no step left in this epoch");
  auto p = std::move(s.pending.front());
  s.pending.pop_front();
  auto b = s.await<msg::batch>(std::move(p.batch), p.step, true);
  auto n = s.await<msg::negatives>(std::move(p.negatives), p.step, false);
  s.fill_window();
  model::train_batch out;
  out.batch = static_cast<int64_t>(b.user_ids.size());
  out.seq_len = static_cast<int64_t>(s.opt.max_length);
  out.items = std::move(b.item_ids);
  out.negatives = std::move(n.item_ids);
  if (static_cast<int64_t>(out.items.size()) != out.batch * (out.seq_len + 1)) {
    throw error(errc::format, s.opt.name + ": step " + std::to_string(p.step) + ": batch has " +
                                  std::to_string(out.items.size()) + " ids, expected " +
                                  std::to_string(out.batch * (out.seq_len + 1)));
  }
  ++s.counters.steps;
  return out;
}

const step_feed_counters& step_feed::counters() const { return impl_->counters; }

}  // namespace hllm
