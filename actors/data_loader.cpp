#include "actors/data_loader.hpp"

#include "actors/addressable.hpp"
#include "messages/protocol.hpp"
#include "model/batching.hpp"
#include "storage/dataset.hpp"
#include "storage/random.hpp"

namespace hllm {

data_loader::data_loader(data_loader_options o) : opt_(std::move(o)) {
  data_ = std::make_unique<storage::dataset>(storage::dataset::open(opt_.dataset_dir, opt_.verify_dataset));
  trainable_ = model::trainable_users(model::interactions_of(*data_));
}

data_loader::~data_loader() = default;

std::int64_t data_loader::steps_per_epoch(std::uint32_t world_size, std::uint32_t batch_size) const {
  std::int64_t global = static_cast<std::int64_t>(world_size) * batch_size;
  return global == 0 ? 0 : static_cast<std::int64_t>(trainable_.size()) / global;
}

const std::vector<std::int64_t>& data_loader::order_of(std::uint8_t stage, std::uint32_t epoch) {
  auto key = std::make_pair(stage, epoch);
  auto it = orders_.find(key);
  if (it == orders_.end()) {
    if (orders_.size() > 4) orders_.clear();  // bounded: only the current epochs matter
    uint64_t seed = stream_seed({opt_.seed, stage});
    it = orders_.emplace(key, model::epoch_order(trainable_, seed, epoch)).first;
  }
  return it->second;
}

msg::body data_loader::batch_of(const msg::batch_request& r) {
  auto steps = steps_per_epoch(r.world_size, r.batch_size);
  if (r.world_size == 0 || r.batch_size == 0 || r.max_length == 0 || r.at.rank >= r.world_size) {
    ++refused_;
    last_error_ = opt_.name + ": batch_request needs world_size > rank, batch_size > 0, max_length > 0";
    return msg::error{msg::error_code::rejected, last_error_};
  }
  if (static_cast<std::int64_t>(r.at.step) >= steps) {
    ++refused_;
    last_error_ = opt_.name + ": step " + std::to_string(r.at.step) + " is past the epoch (" +
                  std::to_string(steps) + " steps)";
    return msg::error{msg::error_code::rejected, last_error_};
  }
  const auto& order = order_of(r.at.stage, r.at.epoch);
  std::size_t first = (static_cast<std::size_t>(r.at.step) * r.world_size + r.at.rank) * r.batch_size;
  std::vector<std::int64_t> users(order.begin() + static_cast<std::ptrdiff_t>(first),
                                  order.begin() + static_cast<std::ptrdiff_t>(first + r.batch_size));
  auto b = model::make_train_batch(model::interactions_of(*data_), users, r.max_length);
  msg::batch out;
  out.at = r.at;
  out.user_ids = users;
  out.item_ids = std::move(b.items);
  ++served_;
  return out;
}

msg::body data_loader::handle(const msg::body& request) {
  if (const auto* r = std::get_if<msg::batch_request>(&request)) return batch_of(*r);
  if (std::holds_alternative<msg::status_request>(request)) return status();
  ++refused_;
  return refuse_unexpected(opt_.name, request);
}

msg::status_reply data_loader::status() const {
  msg::status_reply s;
  s.name = opt_.name;
  s.kind = std::string(msg::protocol::data_loader::name);
  s.state = msg::actor_state::running;
  s.counters = {{"batches_served", static_cast<int64_t>(served_)},
                {"refused", static_cast<int64_t>(refused_)},
                {"trainable_users", static_cast<int64_t>(trainable_.size())}};
  s.last_error = last_error_;
  return s;
}

addressable_actor spawn_data_loader(caf::actor_system& sys, router_actor router, data_loader_options o) {
  std::string name = o.name;
  return spawn_addressable(sys, router, name, std::make_unique<data_loader>(std::move(o)));
}

}  // namespace hllm
