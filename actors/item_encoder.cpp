#include "actors/item_encoder.hpp"

#include <caf/all.hpp>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "actors/addressable.hpp"
#include "actors/ask.hpp"
#include "actors/cache_fill.hpp"
#include "messages/codec.hpp"
#include "messages/protocol.hpp"
#include "model/hllm.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "storage/job_checkpoint.hpp"
#include "storage/file_io.hpp"
#include "storage/random.hpp"

namespace hllm {
namespace {

// A Hugging Face Llama checkpoint as a frozen Item LLM. It has no [ITEM] vector: the vector gets the seeded
// N(0, 0.02) initialisation of a fresh Item LLM (docs/model.md), then the Llama stack is replaced by the loaded one.
model::item_llm load_hf_item_llm(const item_encoder_options& o, int64_t max_text_tokens) {
  auto llm = model::load_hf_llama(o.hf_model_dir);
  model::item_llm item(llm->config(), max_text_tokens, o.hf_pooling);
  item->init_random(stream_seed({o.hf_seed, 1}));
  item->model = item->replace_module("model", llm);
  if (o.hf_bf16) {
    item->model->set_compute_dtype(torch::kBFloat16);
  }
  item->to(torch::Device(o.device));  // a no-op on the CPU; batches follow the [ITEM] vector's device (model/hllm.cpp)
  return item;
}

}  // namespace

std::string item_encoder_version_hex(const item_encoder_options& o) {
  if (o.checkpoint_dir.empty() == o.hf_model_dir.empty()) {
    throw error(errc::invalid_input, "item encoder: give exactly one of a checkpoint and a Hugging Face model");
  }
  if (!o.checkpoint_dir.empty()) return storage::checkpoint_version_hex(o.checkpoint_dir);
  // One line per input that decides the rows, hashed together: files by their bytes, settings by their values.
  std::string lines = "hf-item-llm\n";
  auto add_file = [&](const std::string& name) {
    auto f = storage::mapped_file::open(o.hf_model_dir + "/" + name);
    lines += name + " " + storage::hash_hex(storage::hash_bytes(f.data(), f.size())) + "\n";
  };
  add_file("config.json");
  // The weight files load_hf_llama reads: model.safetensors, or the shards a sharded index names.
  const std::string index = o.hf_model_dir + "/model.safetensors.index.json";
  if (storage::path_exists(index)) {
    add_file("model.safetensors.index.json");
    auto j = nlohmann::json::parse(storage::read_text_file(index), nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      throw error(errc::format, index + ": no weight_map object");
    }
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items()) shards.insert(file.get<std::string>());
    for (const auto& shard : shards) add_file(shard);
  } else {
    add_file("model.safetensors");
  }
  lines += std::string("pooling ") + model::to_string(o.hf_pooling) + "\n";
  if (o.hf_pooling == model::item_pooling::item_token) lines += "seed " + std::to_string(o.hf_seed) + "\n";
  lines += std::string("compute ") + (o.hf_bf16 ? "bf16" : "f32") + "\n";
  return storage::hash_hex(storage::hash_bytes(lines.data(), lines.size()));
}

struct item_encoder::impl {
  impl(caf::actor_system& sys, router_actor r, item_encoder_options o)
      : opt(std::move(o)),
        data(storage::dataset::open(opt.dataset_dir, opt.verify_dataset)),
        texts(model::item_texts_of(data)),
        self(sys),
        router(std::move(r)) {
    if (opt.checkpoint_dir.empty() == opt.hf_model_dir.empty()) {
      throw error(errc::invalid_input, opt.name + ": give exactly one of a checkpoint and a Hugging Face model");
    }
    if (!opt.checkpoint_dir.empty()) {
      net.emplace(model::trainer::load(opt.checkpoint_dir, texts, {}, opt.device));
      dim = net->hidden_size();
    } else {
      hf = load_hf_item_llm(opt, data.info().max_text_tokens);
      dim = hf->model->config().hidden_size;
    }
  }
  // Row-major [ids x dim] float32, without gradients.
  std::vector<float> embeddings(const std::vector<int32_t>& ids) {
    if (net) return net->item_embeddings(ids);
    torch::NoGradGuard no_grad;  // grad mode is per thread, and this runs on the actor's own
    auto m = hf->encode(texts, ids).to(torch::kFloat32).to(torch::kCPU).contiguous();
    return {m.data_ptr<float>(), m.data_ptr<float>() + m.numel()};
  }
  item_encoder_options opt;
  storage::dataset data;
  model::item_text_table texts;      // views into `data`
  std::optional<model::trainer> net;  // a stage-1 checkpoint
  model::item_llm hf{nullptr};       // or a Hugging Face model
  int64_t dim = 0;
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
  std::vector<float> rows = s.embeddings(r.item_ids);
  const auto dim = s.dim;
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
      auto shard = msg::shard_of(r.item_ids[k], s.opt.cache_shards);
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
      std::string to = msg::shard_name(shard);
      // One attempt: a unit that failed is re-queued by the cache fill. The shard's code travels on.
      auto stored = ask(s.self, s.router, s.opt.name, s.opt.job, to, p);
      if (!stored.ok()) {
        ++s.failures;
        s.last_error = s.opt.name + ": " + to + ": " + stored.failure().message;
        return msg::error{stored.failure().code, s.last_error};
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
  return refuse_unexpected(impl_->opt.name, request);
}

msg::status_reply item_encoder::status() const {
  msg::status_reply st;
  st.name = impl_->opt.name;
  st.kind = std::string(msg::protocol::item_encoder::name);
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
