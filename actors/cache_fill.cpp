#include "actors/cache_fill.hpp"

#include <caf/all.hpp>
#include <algorithm>
#include <cstring>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "actors/ask.hpp"
#include "messages/codec.hpp"
#include "messages/shard.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// One request to a cache shard and its typed reply (actors/ask.hpp: transient failures are asked again for up to
// `retry_for`, a shard being respawned); any other failure throws hllm::error naming the receiver, of the category
// the failure's code says (to_error).
template <class Request>
msg::reply_t<Request> ask_or_throw(caf::scoped_actor& self, router_actor& router, const std::string& from, job_ref job,
                                   const std::string& to, const Request& request,
                                   std::chrono::milliseconds retry_for = std::chrono::milliseconds(0)) {
  retry_policy policy;
  policy.retry_for = retry_for;
  policy.log_as = "cache";
  auto r = ask(self, router, from, job, to, request, policy);
  if (!r.ok()) throw to_error(r.failure(), to);
  return std::move(r.value());
}

using msg::shard_name;

// The ids 1..num_items that shard i of `shards` owns (msg::shard_of(id, shards) == i), ascending.
std::vector<std::int32_t> ids_of_shard(int i, int shards, std::int64_t num_items) {
  std::vector<std::int32_t> ids;
  for (std::int64_t id = i == 0 ? shards : i; id <= num_items; id += shards) ids.push_back(static_cast<std::int32_t>(id));
  return ids;
}

// Looks up every id shard i owns, in requests of at most 8192 ids: the rows of a whole shard of a large catalogue
// (e.g. 50,000 rows of 2,048 floats, 400 MB) would exceed the message limit (msg::limits::max_bytes, 256 MiB).
// `take` gets each reply in id order.
template <class Take>
void lookup_shard(caf::scoped_actor& self, router_actor& router, const std::string& from, job_ref job, int i,
                  int shards, std::int64_t num_items, const std::string& version, std::chrono::milliseconds retry_for,
                  Take&& take) {
  constexpr std::size_t chunk = 8192;
  const auto ids = ids_of_shard(i, shards, num_items);
  for (std::size_t start = 0; start < ids.size(); start += chunk) {
    msg::cache_lookup l;
    l.shard = static_cast<std::uint32_t>(i);
    l.model_version = version;
    l.item_ids.assign(ids.begin() + start, ids.begin() + std::min(ids.size(), start + chunk));
    take(ask_or_throw(self, router, from, job, shard_name(i), l, retry_for));
  }
}

}  // namespace

cache_fill_result fill_cache(caf::actor_system& sys, router_actor router, const cache_fill_options& o) {
  if (o.encoders.empty() || o.shards < 1 || o.unit_items < 1) {
    throw error(errc::invalid_input, "cache fill: needs encoders, shards and unit_items >= 1");
  }
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::int64_t> done_units;
  if (!o.ledger_path.empty()) {
    fs::create_directories(fs::path(o.ledger_path).parent_path());
    if (fs::exists(o.ledger_path)) {
      auto l = json::parse(storage::read_text_file(o.ledger_path), nullptr, false);
      if (!l.is_discarded() && l.value("version", "") == o.version && l.value("unit_items", 0) == o.unit_items) {
        done_units = l.value("done", std::vector<std::int64_t>{});
      }
    }
  }
  cache_fill_result result;
  result.units_total = (o.num_items + o.unit_items - 1) / o.unit_items;
  std::deque<std::int64_t> todo;
  for (std::int64_t u = 0; u < result.units_total; ++u) {
    if (std::find(done_units.begin(), done_units.end(), u) == done_units.end()) todo.push_back(u);
  }
  caf::scoped_actor self{sys};
  struct in_flight {
    std::int64_t unit;
    std::size_t encoder;
    pending<msg::encode_request> reply;
  };
  std::deque<in_flight> flying;
  std::vector<bool> busy(o.encoders.size(), false);
  std::vector<std::int64_t> pending_units;
  // The ledger lists only units whose rows are durable: shards persist first, then the ledger names the units.
  auto persist_and_record = [&] {
    if (o.ledger_path.empty()) return;
    for (int i = 0; i < o.shards; ++i) {
      const auto d = ask_or_throw(self, router, o.sender, o.job, shard_name(i),
                                  msg::checkpoint_request{0, "", "cache fill"}, o.retry_for);
      if (!d.ok && d.error != "nothing cached yet") {
        throw error(errc::io, "cache shard " + std::to_string(i) + " cannot persist: " + d.error);
      }
    }
    done_units.insert(done_units.end(), pending_units.begin(), pending_units.end());
    pending_units.clear();
    std::string text = json{{"version", o.version}, {"unit_items", o.unit_items}, {"done", done_units}}.dump();
    storage::write_file_durably(o.ledger_path, text.data(), text.size());
  };
  auto dispatch = [&] {
    for (std::size_t e = 0; e < o.encoders.size() && !todo.empty(); ++e) {
      if (busy[e]) continue;
      std::int64_t u = todo.front();
      todo.pop_front();
      msg::encode_request r;
      // Unit u holds ids u * unit + 1 .. (u + 1) * unit: units cover 1..num_items exactly.
      for (std::int64_t id = u * o.unit_items + 1; id <= std::min<std::int64_t>((u + 1) * o.unit_items, o.num_items);
           ++id) {
        r.item_ids.push_back(static_cast<std::int32_t>(id));
      }
      r.model_version = o.version;
      r.write_to_cache = true;
      flying.push_back({u, e, send_request(self, router, o.sender, o.job, o.encoders[e], r, o.unit_timeout)});
      busy[e] = true;
    }
  };
  auto encode_all = [&] {
    dispatch();
    while (!flying.empty()) {
      auto f = std::move(flying.front());
      flying.pop_front();
      const auto r = f.reply.receive();
      busy[f.encoder] = false;
      if (r.ok()) {
        pending_units.push_back(f.unit);
        ++result.units_encoded;
        if (o.on_progress) o.on_progress(static_cast<std::int64_t>(done_units.size() + pending_units.size()));
        if (static_cast<std::int64_t>(pending_units.size()) >= o.persist_every_units) persist_and_record();
      } else {
        spdlog::warn("cache: unit {} failed on {} ({}); re-queued", f.unit, o.encoders[f.encoder],
                     r.failure().message);
        todo.push_back(f.unit);
      }
      dispatch();
    }
    persist_and_record();
  };
  // Every shard must hold every row of this version. A shard restarted during the fill lost the rows it had not
  // persisted (and the ledger may already name their units): the units of its missing rows are encoded again.
  std::uint64_t present = 0, expected = 0;
  for (int round = 0;; ++round) {
    encode_all();
    present = expected = 0;
    std::set<std::int64_t> refill;
    for (int i = 0; i < o.shards; ++i) {
      auto c = ask_or_throw(self, router, o.sender, o.job, shard_name(i), msg::coverage_request{o.version},
                            o.retry_for);
      present += c.rows_present;
      expected += c.rows_expected;
      if (c.rows_present == c.rows_expected || round >= 3) continue;
      lookup_shard(self, router, o.sender, o.job, i, o.shards, o.num_items, o.version, o.retry_for,
                   [&](const msg::cache_rows& rows) {
                     for (std::int32_t id : rows.missing_ids) refill.insert((id - 1) / o.unit_items);
                   });
    }
    if (present == expected || refill.empty()) break;
    spdlog::warn("cache: shards miss {} of {} rows (a shard restarted during the fill); encoding {} units again",
                 expected - present, expected, refill.size());
    done_units.erase(std::remove_if(done_units.begin(), done_units.end(),
                                    [&](std::int64_t u) { return refill.count(u) != 0; }),
                     done_units.end());
    todo.assign(refill.begin(), refill.end());
  }
  if (present != expected) {
    throw error(errc::mismatch, "cache fill: shards hold " + std::to_string(present) + " of " +
                                    std::to_string(expected) + " rows after every unit finished");
  }
  result.rows = present;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

std::vector<float> fetch_cache_matrix(caf::actor_system& sys, router_actor router, const std::string& sender,
                                      job_ref job, int shards, std::int64_t num_items, const std::string& version,
                                      std::uint32_t& dim) {
  caf::scoped_actor self{sys};
  std::vector<float> m;
  dim = 0;
  for (int i = 0; i < shards; ++i) {
    std::size_t missing = 0;
    lookup_shard(self, router, sender, job, i, shards, num_items, version, std::chrono::milliseconds(0),
                 [&](const msg::cache_rows& rows) {
                   missing += rows.missing_ids.size();
                   if (missing > 0 || rows.item_ids.empty()) return;
                   if (dim == 0) {
                     dim = static_cast<std::uint32_t>(rows.rows.shape[1]);
                     m.assign(static_cast<std::size_t>(num_items + 1) * dim, 0.0f);
                   }
                   for (std::size_t k = 0; k < rows.item_ids.size(); ++k) {
                     std::memcpy(m.data() + static_cast<std::size_t>(rows.item_ids[k]) * dim,
                                 rows.rows.data.data() + k * dim * sizeof(float), dim * sizeof(float));
                   }
                 });
    if (missing > 0) {
      throw error(errc::not_found, "cache shard " + std::to_string(i) + " misses " + std::to_string(missing) +
                                       " rows of version " + version + " (run the cache stage)");
    }
  }
  return m;
}

}  // namespace hllm
