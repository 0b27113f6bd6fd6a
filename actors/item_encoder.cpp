#include "actors/item_encoder.hpp"

#include <caf/all.hpp>
#include <cstring>
#include <map>

#include "actors/addressable.hpp"
#include "messages/codec.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"

namespace hllm {

struct item_encoder::impl {
  impl(caf::actor_system& sys, router_actor r, item_encoder_options o)
      : opt(std::move(o)),
        data(storage::dataset::open(opt.dataset_dir, opt.verify_dataset)),
        net(model::trainer::load(opt.checkpoint_dir, model::item_texts_of(data))),
        self(sys),
        router(std::move(r)) {}
  item_encoder_options opt;
  storage::dataset data;
  model::trainer net;
  caf::scoped_actor self;
  router_actor router;
  std::uint64_t items_encoded = 0, units = 0, failures = 0;
  std::string last_error;
};

item_encoder::item_encoder(caf::actor_system& sys, router_actor router, item_encoder_options o)
    : impl_(std::make_unique<impl>(sys, std::move(router), std::move(o))) {}

item_encoder::~item_encoder() = default;

msg::body item_encoder::encode(const msg::encode_request& r) {
  auto& s = *impl_;
  if (r.model_version != s.opt.model_version) {
    ++s.failures;
    s.last_error = s.opt.name + ": asked for version " + r.model_version + ", holds " + s.opt.model_version;
    return msg::error{msg::error_code::rejected, s.last_error};
  }
  for (int32_t id : r.item_ids) {
    if (id <= 0 || id > s.data.num_items()) {
      ++s.failures;
      s.last_error = s.opt.name + ": item id " + std::to_string(id) + " out of range";
      return msg::error{msg::error_code::rejected, s.last_error};
    }
  }
  std::vector<float> rows = s.net.item_embeddings(r.item_ids);
  const auto dim = static_cast<int64_t>(s.net.hidden_size());
  msg::encode_result out;
  out.item_ids = r.item_ids;
  out.model_version = s.opt.model_version;
  if (!r.write_to_cache) {
    out.embeddings.type = msg::dtype::f32;
    out.embeddings.shape = {static_cast<int64_t>(r.item_ids.size()), dim};
    out.embeddings.data.resize(rows.size() * sizeof(float));
    std::memcpy(out.embeddings.data.data(), rows.data(), out.embeddings.data.size());
  } else {
    // Group rows by owning shard; every put is a request, so a reply below means the rows are stored.
    std::map<std::uint32_t, msg::cache_put> puts;
    for (std::size_t k = 0; k < r.item_ids.size(); ++k) {
      auto shard = static_cast<std::uint32_t>(r.item_ids[k] % static_cast<int32_t>(s.opt.cache_shards));
      auto& p = puts[shard];
      p.shard = shard;
      p.model_version = s.opt.model_version;
      p.item_ids.push_back(r.item_ids[k]);
      const auto* src = reinterpret_cast<const std::byte*>(rows.data() + k * dim);
      p.rows.data.insert(p.rows.data.end(), src, src + dim * sizeof(float));
    }
    for (auto& [shard, p] : puts) {
      p.rows.type = msg::dtype::f32;
      p.rows.shape = {static_cast<int64_t>(p.item_ids.size()), dim};
      std::string to = "cache-shard-" + std::to_string(shard);
      std::string failure;
      s.self->request(s.router, caf::infinite, atom::request_v, make_request(s.opt.name, to, p, s.opt.job))
          .receive(
              [&](const msg::buffer& b) { failure = reply_failure(b); },
              [&](const caf::error& e) { failure = caf::to_string(e); });
      if (!failure.empty()) {
        ++s.failures;
        s.last_error = s.opt.name + ": " + to + ": " + failure;
        return msg::error{msg::error_code::rejected, s.last_error};
      }
    }
  }
  s.items_encoded += r.item_ids.size();
  ++s.units;
  return out;
}

msg::body item_encoder::handle(const msg::body& request) {
  if (const auto* r = std::get_if<msg::encode_request>(&request)) return encode(*r);
  if (std::holds_alternative<msg::status_request>(request)) return status();
  return msg::error{msg::error_code::rejected,
                    impl_->opt.name + ": unexpected " + msg::to_string(msg::kind_of(request))};
}

msg::status_reply item_encoder::status() const {
  msg::status_reply st;
  st.name = impl_->opt.name;
  st.kind = "item_encoder";
  st.state = msg::actor_state::running;
  st.counters = {{"items_encoded", static_cast<int64_t>(impl_->items_encoded)},
                 {"units", static_cast<int64_t>(impl_->units)},
                 {"failures", static_cast<int64_t>(impl_->failures)}};
  st.last_error = impl_->last_error;
  return st;
}

addressable_actor spawn_item_encoder(caf::actor_system& sys, router_actor router, item_encoder_options o) {
  std::string name = o.name;
  auto core = std::make_unique<item_encoder>(sys, router, std::move(o));
  return spawn_addressable<item_encoder, caf::detached>(sys, router, name, std::move(core));
}

}  // namespace hllm
