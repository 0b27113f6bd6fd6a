#include "actors/step_feed.hpp"

#include <caf/all.hpp>
#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <spdlog/spdlog.h>
#include <thread>

#include "actors/ask.hpp"
#include "messages/shard.hpp"
#include "storage/error.hpp"

namespace hllm {

namespace {

// One outstanding request and its attempt number (0-based): attempt k of step s goes to receiver (s + k) % n.
template <class Request>
struct outstanding {
  pending<Request> reply;
  int attempt = 0;
};

}  // namespace

struct step_feed::impl {
  impl(caf::actor_system& sys, router_actor r, step_feed_options o) : self(sys), router(std::move(r)), opt(std::move(o)) {
    // Loaders and samplers answer alike (pure functions of the step): any failure is asked of the next one.
    feed_retry.on = retry_on::any;
    feed_retry.attempts = opt.attempts;
    feed_retry.pause = std::chrono::milliseconds(0);
    // A lookup goes to the one shard owning the ids: asked again after a pause (a shard process being respawned),
    // unless the shard itself refused it (another version), which asking again cannot change.
    rows_retry.on = retry_on::not_refused;
    rows_retry.attempts = opt.attempts;
    rows_retry.pause = std::chrono::milliseconds(200);
  }

  caf::scoped_actor self;
  router_actor router;
  step_feed_options opt;
  retry_policy feed_retry, rows_retry;
  std::uint32_t epoch = 0;
  std::uint64_t next_request = 0, end = 0;
  struct pending_step {
    pending_step(std::uint64_t s, outstanding<msg::batch_request> b, outstanding<msg::negatives_request> n)
        : step(s), batch(std::move(b)), negatives(std::move(n)) {}
    std::uint64_t step;
    outstanding<msg::batch_request> batch;
    outstanding<msg::negatives_request> negatives;
    std::optional<msg::batch> got_batch;  // the replies, once received
    std::optional<msg::negatives> got_negatives;
    std::vector<std::int32_t> row_ids;    // stage 2: distinct ids, ascending
    std::vector<std::vector<std::int32_t>> shard_ids;  // row_ids split by owning shard
    std::vector<std::optional<outstanding<msg::cache_lookup>>> lookups;  // one per shard (none without ids); empty until sent
  };
  std::deque<pending_step> pending;
  step_feed_counters counters;

  msg::step_key key(std::uint64_t step) const { return {opt.stage, epoch, step, opt.rank}; }

  template <class Request>
  outstanding<Request> send_to(const std::string& to, const Request& r, int attempt) {
    ++counters.requests;
    return {send_request(self, router, opt.name, opt.job, to, r, opt.timeout), attempt};
  }

  outstanding<msg::batch_request> ask_batch(std::uint64_t step, int attempt) {
    msg::batch_request r;
    r.at = key(step);
    r.world_size = opt.world_size;
    r.batch_size = opt.batch_size;
    r.max_length = opt.max_length;
    return send_to(opt.loaders[(step + static_cast<std::uint64_t>(attempt)) % opt.loaders.size()], r, attempt);
  }

  outstanding<msg::negatives_request> ask_negatives(std::uint64_t step, int attempt) {
    msg::negatives_request r;
    r.at = key(step);
    r.count = opt.negatives;
    return send_to(opt.samplers[(step + static_cast<std::uint64_t>(attempt)) % opt.samplers.size()], r, attempt);
  }

  outstanding<msg::cache_lookup> ask_rows(std::uint32_t shard, const std::vector<std::int32_t>& ids, int attempt) {
    msg::cache_lookup l;
    l.shard = shard;
    l.model_version = opt.cache_version;
    l.item_ids = ids;
    ++counters.lookups;
    return send_to(msg::shard_name(shard), l, attempt);
  }

  // The batch and negatives of a pending step, received (in order of arrival they may already be here).
  void resolve(pending_step& p) {
    if (!p.got_batch) {
      p.got_batch = receive_retrying(std::move(p.batch), feed_retry, p.step, "loader",
                                     [&](int attempt) { return ask_batch(p.step, attempt); });
    }
    if (!p.got_negatives) {
      p.got_negatives = receive_retrying(std::move(p.negatives), feed_retry, p.step, "sampler",
                                         [&](int attempt) { return ask_negatives(p.step, attempt); });
    }
  }

  // Stage 2: the step's distinct ids, asked of their shards (once).
  void send_lookups(pending_step& p) {
    if (opt.cache_shards == 0 || !p.lookups.empty()) return;
    resolve(p);
    const auto& items = p.got_batch->item_ids;
    const auto& negs = p.got_negatives->item_ids;
    p.row_ids.reserve(items.size() + negs.size());
    for (auto* v : {&items, &negs}) {
      for (std::int32_t id : *v) {
        if (id > 0) p.row_ids.push_back(id);
      }
    }
    counters.ids_in_steps += items.size() + negs.size();
    std::sort(p.row_ids.begin(), p.row_ids.end());
    p.row_ids.erase(std::unique(p.row_ids.begin(), p.row_ids.end()), p.row_ids.end());
    counters.ids_looked_up += p.row_ids.size();
    p.shard_ids.assign(opt.cache_shards, {});
    for (std::int32_t id : p.row_ids) p.shard_ids[msg::shard_of(id, opt.cache_shards)].push_back(id);
    for (std::uint32_t s = 0; s < opt.cache_shards; ++s) {
      p.lookups.emplace_back();
      if (!p.shard_ids[s].empty()) p.lookups.back().emplace(ask_rows(s, p.shard_ids[s], 0));
    }
  }

  std::string step_context(std::uint64_t step) const { return opt.name + ": step " + std::to_string(step); }

  // Waits for the reply to `o` (from `who`); after a failure asks again with resend(attempt) as `policy` says, and
  // when it says no more, throws: the receiver's own words when it refused and the policy asks no other receiver,
  // else that nobody answered, with the last failure. Its category is the failure's (to_error).
  template <class Request, class Resend>
  msg::reply_t<Request> receive_retrying(outstanding<Request> o, const retry_policy& policy, std::uint64_t step,
                                         const std::string& who, Resend resend) {
    const bool next_one = policy.on == retry_on::any;  // several receivers answer alike
    const auto first_sent = std::chrono::steady_clock::now();
    while (true) {
      auto r = o.reply.receive();
      if (r.ok()) return std::move(r.value());
      const auto& f = r.failure();
      if (!policy.asks_again(f, o.attempt + 1, first_sent)) {
        if (f.code == msg::error_code::rejected && !next_one) throw to_error(f, step_context(step));
        throw to_error(f, step_context(step) + " of epoch " + std::to_string(epoch) + ": " +
                              (next_one ? "no " + who + " answered" : who + " did not answer") + " after " +
                              std::to_string(opt.attempts) + " attempts; last failure");
      }
      ++counters.retries;
      spdlog::warn("{}: step {}: {} failed ({}), {}", opt.name, step, who, describe(f),
                   next_one ? "asking the next one" : "asking again");
      if (policy.pause.count() > 0) std::this_thread::sleep_for(policy.pause);
      o = resend(o.attempt + 1);
    }
  }

  // The rows of a step from its lookups, in row_ids order.
  void collect_rows(pending_step& p, model::train_batch& out) {
    std::size_t dim = 0;
    for (std::uint32_t s = 0; s < opt.cache_shards; ++s) {
      if (p.shard_ids[s].empty()) continue;
      const auto rows = receive_retrying(std::move(*p.lookups[s]), rows_retry, p.step, msg::shard_name(s),
                                         [&](int attempt) { return ask_rows(s, p.shard_ids[s], attempt); });
      if (!rows.missing_ids.empty() || rows.item_ids != p.shard_ids[s] || rows.rows.shape.size() != 2) {
        throw error(errc::mismatch, step_context(p.step) + ": " + msg::shard_name(s) + " misses " +
                                        std::to_string(rows.missing_ids.size()) + " of " +
                                        std::to_string(p.shard_ids[s].size()) + " rows of version " +
                                        opt.cache_version + " (run the cache stage)");
      }
      const auto d = static_cast<std::size_t>(rows.rows.shape[1]);
      if (dim == 0) {
        dim = d;
        out.rows.assign(p.row_ids.size() * dim, 0.0f);
      } else if (d != dim) {
        throw error(errc::mismatch, opt.name + ": cache shards disagree on the row width");
      }
      const auto* src = reinterpret_cast<const float*>(rows.rows.data.data());
      for (std::size_t k = 0; k < rows.item_ids.size(); ++k) {
        auto at = std::lower_bound(p.row_ids.begin(), p.row_ids.end(), rows.item_ids[k]) - p.row_ids.begin();
        std::memcpy(out.rows.data() + static_cast<std::size_t>(at) * dim, src + k * dim, dim * sizeof(float));
      }
    }
    out.row_ids = std::move(p.row_ids);
  }

  void fill_window() {
    while (next_request < end && pending.size() < opt.window) {
      pending.emplace_back(next_request, ask_batch(next_request, 0), ask_negatives(next_request, 0));
      ++next_request;
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
    if (!p.got_batch) p.batch.reply.drop();
    if (!p.got_negatives) p.negatives.reply.drop();
    for (auto& l : p.lookups) {
      if (l) l->reply.drop();
    }
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
  s.resolve(s.pending.front());
  s.send_lookups(s.pending.front());
  // One step ahead: the next step's lookups travel while the trainer computes this one.
  if (s.pending.size() > 1) s.send_lookups(s.pending[1]);
  auto& p = s.pending.front();
  msg::batch b = std::move(*p.got_batch);
  msg::negatives n = std::move(*p.got_negatives);
  model::train_batch out;
  if (s.opt.cache_shards > 0) s.collect_rows(p, out);
  const std::uint64_t step = p.step;
  s.pending.pop_front();
  s.fill_window();
  out.batch = static_cast<int64_t>(b.user_ids.size());
  out.seq_len = static_cast<int64_t>(s.opt.max_length);
  out.items = std::move(b.item_ids);
  out.users = std::move(b.user_ids);
  out.negatives = std::move(n.item_ids);
  if (static_cast<int64_t>(out.items.size()) != out.batch * (out.seq_len + 1)) {
    throw error(errc::format, s.opt.name + ": step " + std::to_string(step) + ": batch has " +
                                  std::to_string(out.items.size()) + " ids, expected " +
                                  std::to_string(out.batch * (out.seq_len + 1)));
  }
  ++s.counters.steps;
  return out;
}

const step_feed_counters& step_feed::counters() const { return impl_->counters; }

}  // namespace hllm
