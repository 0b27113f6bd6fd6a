#include "actors/embedding_cache_shard.hpp"

#include <charconv>

#include <caf/all.hpp>
#include <cstring>
#include <filesystem>
#include <spdlog/spdlog.h>

#include "actors/addressable.hpp"
#include "messages/codec.hpp"
#include "messages/protocol.hpp"
#include "storage/embedding_shard.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm {
namespace {

// The cache version tag (16 hex digits, the Item-LLM checkpoint hash) as the shard file's header stores it. Anything
// else is an error (the caller reports it in the persist reply), never a silent 0.
uint64_t parse_version(const std::string& v) {
  uint64_t out = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out, 16);
  if (v.empty() || v.size() > 16 || ec != std::errc() || end != v.data() + v.size()) {
    throw error(errc::format, "cache version '" + v.substr(0, 40) + "' is not a hex checkpoint hash");
  }
  return out;
}

}  // namespace

embedding_cache_shard::embedding_cache_shard(embedding_cache_shard_options o) : opt_(std::move(o)) {
  rows_ = storage::shard_rows(opt_.num_items, opt_.shard, opt_.shard_count);
  if (!opt_.directory.empty()) load_file();
}

std::string embedding_cache_shard::file_path() const {
  return opt_.directory + "/shard-" + std::to_string(opt_.shard) + "-of-" + std::to_string(opt_.shard_count) +
         ".emb";
}

void embedding_cache_shard::load_file() {
  if (!std::filesystem::exists(file_path())) return;
  try {
    auto f = storage::embedding_shard_file::open(file_path());
    const auto& h = f.header();
    if (h.shard != opt_.shard || h.num_shards != opt_.shard_count || h.rows != rows_ ||
        h.dtype != storage::embedding_dtype::f32) {
      throw error(errc::mismatch, "shard file '" + file_path() + "' belongs to another layout");
    }
    reset(storage::hash_hex(h.item_llm_hash), h.dim);
    for (uint64_t r = 0; r < rows_; ++r) {
      int64_t item = static_cast<int64_t>(r * opt_.shard_count + opt_.shard);
      if (!f.present(item)) continue;
      auto row = f.row(item);
      std::memcpy(data_.data() + r * dim_, row.data(), row.size());
      present_[r] = 1;
    }
    spdlog::info("{}: reloaded {} of {} rows (version {}) from {}", opt_.name, coverage_of().rows_present, rows_,
                 version_, file_path());
  } catch (const std::exception& e) {
    // A damaged file costs a refill, never the process.
    last_error_ = e.what();
    spdlog::warn("{}: ignoring shard file: {}", opt_.name, e.what());
    version_.clear();
    data_.clear();
    present_.clear();
  }
}

void embedding_cache_shard::reset(const std::string& version, std::uint32_t dim) {
  version_ = version;
  dim_ = dim;
  data_.assign(rows_ * dim, 0.0f);
  present_.assign(rows_, 0);
}

msg::error embedding_cache_shard::fail(msg::error_code code, std::string message) {
  ++refused_;
  last_error_ = message;
  return {code, std::move(message)};
}

msg::body embedding_cache_shard::put(const msg::cache_put& p) {
  const auto& t = p.rows;
  if (t.type != msg::dtype::f32 || t.shape.size() != 2 || t.shape[0] != static_cast<int64_t>(p.item_ids.size()) ||
      t.shape[1] <= 0 || t.data.size() != p.item_ids.size() * t.shape[1] * sizeof(float)) {
    return fail(msg::error_code::rejected, opt_.name + ": cache_put rows must be f32 [ids, dim]");
  }
  // Every id is checked before anything changes: a refused put (a misrouted one, one foreign id) leaves the shard
  // as it was, its version and rows included.
  for (int64_t id : p.item_ids) {
    if (id <= 0 || id > opt_.num_items || msg::shard_of(id, opt_.shard_count) != opt_.shard) {
      return fail(msg::error_code::rejected, opt_.name + ": item " + std::to_string(id) + " is not in this shard");
    }
  }
  auto dim = static_cast<std::uint32_t>(t.shape[1]);
  if (p.model_version != version_ || dim != dim_) reset(p.model_version, dim);
  for (std::size_t k = 0; k < p.item_ids.size(); ++k) {
    int64_t id = p.item_ids[k];
    uint64_t r = static_cast<uint64_t>(id) / opt_.shard_count;
    std::memcpy(data_.data() + r * dim_, t.data.data() + k * dim_ * sizeof(float), dim_ * sizeof(float));
    present_[r] = 1;
  }
  ++puts_;
  return msg::ack{};
}

msg::body embedding_cache_shard::lookup(const msg::cache_lookup& l) {
  if (version_.empty() || l.model_version != version_) {
    return fail(msg::error_code::rejected, opt_.name + ": lookup for version '" + l.model_version +
                                               "' but the cache holds '" + version_ + "'");
  }
  msg::cache_rows out;
  out.shard = opt_.shard;
  out.model_version = version_;
  out.rows.type = msg::dtype::f32;
  std::vector<float> rows;
  rows.reserve(l.item_ids.size() * dim_);
  for (int32_t id : l.item_ids) {
    bool ok = id > 0 && id <= opt_.num_items && msg::shard_of(id, opt_.shard_count) == opt_.shard &&
              present_[static_cast<uint64_t>(id) / opt_.shard_count] != 0;
    if (!ok) {
      out.missing_ids.push_back(id);
      continue;
    }
    const float* src = data_.data() + (static_cast<uint64_t>(id) / opt_.shard_count) * dim_;
    rows.insert(rows.end(), src, src + dim_);
    out.item_ids.push_back(id);
  }
  out.rows.shape = {static_cast<int64_t>(out.item_ids.size()), static_cast<int64_t>(dim_)};
  out.rows.data.resize(rows.size() * sizeof(float));
  std::memcpy(out.rows.data.data(), rows.data(), out.rows.data.size());
  ++lookups_;
  rows_served_ += out.item_ids.size();
  return out;
}

msg::coverage embedding_cache_shard::coverage_of() const {
  msg::coverage c;
  c.shard = opt_.shard;
  c.shard_count = opt_.shard_count;
  c.model_version = version_;
  c.dim = dim_;
  // Row 0 of shard 0 is the padding id: never filled, never expected.
  c.rows_expected = rows_ - (opt_.shard == 0 && rows_ > 0 ? 1 : 0);
  for (std::size_t r = 0; r < present_.size(); ++r) c.rows_present += present_[r];
  return c;
}

msg::checkpoint_done embedding_cache_shard::persist(const msg::checkpoint_request& c) {
  msg::checkpoint_done d;
  d.step = c.step;
  d.directory = opt_.directory;
  if (opt_.directory.empty() || version_.empty()) {
    d.error = opt_.directory.empty() ? "no directory configured" : "nothing cached yet";
    return d;
  }
  try {
    std::filesystem::create_directories(opt_.directory);
    storage::embedding_shard_header h;
    h.dim = dim_;
    h.shard = opt_.shard;
    h.num_shards = opt_.shard_count;
    h.rows = rows_;
    h.item_llm_hash = parse_version(version_);
    storage::write_embedding_shard(file_path(), h, present_, data_.data(), data_.size() * sizeof(float));
    d.ok = true;
    d.bytes = data_.size() * sizeof(float) + present_.size();
    d.content_hash = version_;
    ++persisted_;
  } catch (const std::exception& e) {
    d.error = e.what();
    last_error_ = e.what();
  }
  return d;
}

msg::status_reply embedding_cache_shard::status() const {
  msg::status_reply s;
  s.name = opt_.name;
  s.kind = std::string(msg::protocol::embedding_cache_shard::name);
  s.state = msg::actor_state::running;
  auto cov = coverage_of();
  s.counters = {{"puts", static_cast<int64_t>(puts_)},
                {"lookups", static_cast<int64_t>(lookups_)},
                {"rows_served", static_cast<int64_t>(rows_served_)},
                {"refused", static_cast<int64_t>(refused_)},
                {"persisted", static_cast<int64_t>(persisted_)},
                {"rows_present", static_cast<int64_t>(cov.rows_present)},
                {"rows_expected", static_cast<int64_t>(cov.rows_expected)}};
  s.last_error = last_error_;
  return s;
}

msg::body embedding_cache_shard::handle(const msg::body& request) {
  if (const auto* p = std::get_if<msg::cache_put>(&request)) return put(*p);
  if (const auto* l = std::get_if<msg::cache_lookup>(&request)) return lookup(*l);
  if (const auto* c = std::get_if<msg::coverage_request>(&request)) {
    if (!c->model_version.empty() && c->model_version != version_) {
      auto cov = coverage_of();
      cov.rows_present = 0;  // nothing of the asked version is here
      cov.model_version = c->model_version;
      return cov;
    }
    return coverage_of();
  }
  if (const auto* k = std::get_if<msg::checkpoint_request>(&request)) return persist(*k);
  if (std::holds_alternative<msg::status_request>(request)) return status();
  const auto refusal = refuse_unexpected(opt_.name, request);
  return fail(refusal.code, refusal.message);
}

addressable_actor spawn_embedding_cache_shard(caf::actor_system& sys, router_actor router,
                                              embedding_cache_shard_options o) {
  std::string name = o.name;
  return spawn_addressable(sys, router, name, std::make_unique<embedding_cache_shard>(std::move(o)));
}

}  // namespace hllm
