#include "actors/negative_sampler.hpp"

#include <algorithm>
#include <unordered_set>

#include "actors/addressable.hpp"
#include "messages/protocol.hpp"
#include "model/batching.hpp"
#include "storage/dataset.hpp"

namespace hllm {

negative_sampler::negative_sampler(negative_sampler_options o) : opt_(std::move(o)) {
  auto data = storage::dataset::open(opt_.dataset_dir, opt_.verify_dataset);
  if (opt_.all_items) {
    for (int32_t i = 1; i <= data.num_items(); ++i) candidates_.push_back(i);
  } else {
    candidates_ = model::training_items(model::interactions_of(data));
  }
}

msg::body negative_sampler::negatives_of(const msg::negatives_request& r) {
  std::vector<int32_t> pool = candidates_;
  if (!r.exclude_ids.empty()) {
    // Excluded ids are part of the request, so the answer stays a pure function of the request.
    std::unordered_set<int32_t> ex(r.exclude_ids.begin(), r.exclude_ids.end());
    pool.erase(std::remove_if(pool.begin(), pool.end(), [&](int32_t i) { return ex.count(i) != 0; }), pool.end());
  }
  if (pool.empty() || r.count == 0) {
    ++refused_;
    last_error_ = opt_.name + ": no candidates left to sample from";
    return msg::error{msg::error_code::rejected, last_error_};
  }
  msg::negatives out;
  out.at = r.at;
  out.item_ids = model::sample_negatives(pool, r.count, opt_.seed, r.at.stage, r.at.epoch,
                                         static_cast<int64_t>(r.at.step), r.at.rank);
  ++served_;
  return out;
}

msg::body negative_sampler::handle(const msg::body& request) {
  if (const auto* r = std::get_if<msg::negatives_request>(&request)) return negatives_of(*r);
  if (std::holds_alternative<msg::status_request>(request)) return status();
  ++refused_;
  return refuse_unexpected(opt_.name, request);
}

msg::status_reply negative_sampler::status() const {
  msg::status_reply s;
  s.name = opt_.name;
  s.kind = std::string(msg::protocol::negative_sampler::name);
  s.state = msg::actor_state::running;
  s.counters = {{"requests_served", static_cast<int64_t>(served_)},
                {"refused", static_cast<int64_t>(refused_)},
                {"candidates", static_cast<int64_t>(candidates_.size())}};
  s.last_error = last_error_;
  return s;
}

addressable_actor spawn_negative_sampler(caf::actor_system& sys, router_actor router, negative_sampler_options o) {
  std::string name = o.name;
  return spawn_addressable(sys, router, name, std::make_unique<negative_sampler>(std::move(o)));
}

}  // namespace hllm
