#include "actors/job_runner.hpp"

namespace hllm {
namespace job_internal {

// Coordinator side of the cache fill: work units of item ids, dispatched to encoders (one unit in flight per
// encoder), recorded in a ledger when their rows are in the shards, so an interrupted fill resumes.
void job_runner::cache_fill() {
  std::string ckpt = stage1_checkpoint();
  version_ = storage::checkpoint_version_hex(ckpt);
  if (cfg_.placement.workers > 0) {
    cache_fill_in_workers(ckpt);
    return;
  }
  std::vector<addressable_actor> local_encoders;
  actor_home h = home_of_actors();
  h.checkpoint = ckpt;
  h.version = version_;
  for (int i = 0; i < cfg_.placement.encoders; ++i) {
    if (encoder_home(i) == opt_.rank)
      local_encoders.push_back(spawn_job_actor(*sys_, router_, "encoder-" + std::to_string(i), h));
  }
  barrier();  // encoders everywhere are up
  if (monitor_) {
    for (int i = 0; i < cfg_.placement.encoders; ++i) monitor_->core().add_target("encoder-" + std::to_string(i));
  }
  if (chief_) dispatch_cache_fill();
  barrier();  // the fill is complete
  if (monitor_) {
    for (int i = 0; i < cfg_.placement.encoders; ++i) monitor_->core().remove_target("encoder-" + std::to_string(i));
  }
  // The encoders' frozen Item LLM is not needed any more: free it.
  caf::scoped_actor self{*sys_};
  for (std::size_t e = 0; e < local_encoders.size(); ++e)
    self->send_exit(local_encoders[e], caf::exit_reason::user_shutdown);
}

// With worker processes, each item encoder runs in a process of its own for the fill (watched and respawned like
// the other workers; a unit lost with it is re-queued), then stops: the frozen Item LLM is not needed any more.
void job_runner::cache_fill_in_workers(const std::string& ckpt) {
  if (chief_) {
    std::vector<std::string> names;
    for (int i = 0; i < cfg_.placement.encoders; ++i) {
      std::string encoder = "encoder-" + std::to_string(i);
      names.push_back("worker-" + encoder);
      pool_->start(worker_spec_of(names.back(), encoder_ports_.at(static_cast<std::size_t>(i)), {encoder},
                                  json{{"checkpoint", ckpt}, {"version", version_}}));
      if (monitor_) {
        monitor_->core().add_target(encoder);
        monitor_->core().add_target(worker_router_name(names.back()));
      }
    }
    dispatch_cache_fill();
    for (int i = 0; i < cfg_.placement.encoders; ++i) {
      pool_->stop(names[i]);
      if (monitor_) {
        monitor_->core().remove_target("encoder-" + std::to_string(i));
        monitor_->core().remove_target(worker_router_name(names[i]));
      }
    }
  }
  barrier();  // the fill is complete
}

void job_runner::dispatch_cache_fill() {
  cache_fill_options fo;
  fo.job = job_;
  for (int i = 0; i < cfg_.placement.encoders; ++i) fo.encoders.push_back("encoder-" + std::to_string(i));
  fo.shards = cfg_.placement.cache_shards;
  fo.num_items = data_.num_items();
  fo.unit_items = cfg_.cache.unit_items;
  fo.version = version_;
  fo.ledger_path = opt_.out_dir + "/cache/ledger.json";
  fo.persist_every_units = cfg_.cache.persist_every_units;
  fo.unit_timeout = std::chrono::seconds(cfg_.cache.unit_timeout_s);
  // A cache shard being respawned misses a few requests: ask again for as long as a respawn may take.
  if (pool_) fo.retry_for = std::chrono::milliseconds(cfg_.placement.heartbeat_timeout_ms) +
                            std::chrono::seconds(60);
  fo.on_progress = [this](int64_t done) {
    if (coordinator_board_) coordinator_board_->set_counter("cache.units_done", done);
  };
  auto r = fill_cache(*sys_, router_, fo);
  spdlog::info("cache: {} rows of version {} in {} shards; {} of {} units encoded now ({:.0f} items/s)", r.rows,
               version_, cfg_.placement.cache_shards, r.units_encoded, r.units_total,
               static_cast<double>(r.units_encoded * fo.unit_items) / std::max(r.seconds, 1e-9));
}

// The version tag of the cached rows: the hash of stage 1's checkpoint, computed once (it reads the whole file).
const std::string& job_runner::cache_version() {
  if (version_.empty()) version_ = storage::checkpoint_version_hex(stage1_checkpoint());
  return version_;
}

// The item matrix [(num_items + 1) x hidden] from the cache shards (row 0 zeros): stage 2 and evaluation read
// item embeddings only from here, never from the Item LLM.
std::vector<float> job_runner::cache_matrix() {
  // Replies travel back by the sender's address: only rank 0 is reachable as "coordinator".
  std::string from = chief_ ? "coordinator" : "trainer-" + std::to_string(opt_.rank);
  uint32_t dim = 0;
  return fetch_cache_matrix(*sys_, router_, from, job_, cfg_.placement.cache_shards, data_.num_items(), cache_version(),
                            dim);
}

}  // namespace job_internal

}  // namespace hllm
