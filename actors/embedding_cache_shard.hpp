#pragma once
// Embedding-cache shard: holds the item-embedding rows of ids with `msg::shard_of(id, shard_count) == shard`, tagged with the
// version (hash) of the Item-LLM checkpoint that made them; persists them to a shard file
// (storage/embedding_shard.hpp) and reloads it on start, so a restarted shard only refills missing rows.
//
// Version rule: a put with a new version starts a fresh cache (the old rows belong to an older Item LLM);
// a lookup or coverage query for any other version than the current one is refused with an error.
#include <cstdint>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "messages/bodies.hpp"

namespace caf {
class actor_system;
}

namespace hllm {

struct embedding_cache_shard_options {
  std::string name;            // its address, e.g. "cache-shard-0"
  std::uint32_t shard = 0;
  std::uint32_t shard_count = 1;
  std::int64_t num_items = 0;  // dense ids 1..num_items
  std::string directory;       // where the shard file lives; empty: memory only
};

// The actor's logic without CAF, so tests can drive it directly.
class embedding_cache_shard {
 public:
  explicit embedding_cache_shard(embedding_cache_shard_options o);

  // Answers one request body (cache_put, cache_lookup, coverage_request, checkpoint_request, status_request);
  // anything else gets an error body.
  msg::body handle(const msg::body& request);

  msg::body put(const msg::cache_put& p);
  msg::body lookup(const msg::cache_lookup& l);
  msg::coverage coverage_of() const;
  msg::checkpoint_done persist(const msg::checkpoint_request& c);
  msg::status_reply status() const;

  std::string file_path() const;
  const std::string& version() const { return version_; }

 private:
  msg::error fail(msg::error_code code, std::string message);
  void reset(const std::string& version, std::uint32_t dim);
  void load_file();

  embedding_cache_shard_options opt_;
  std::string version_;
  std::uint32_t dim_ = 0;
  std::uint64_t rows_ = 0;
  std::vector<float> data_;
  std::vector<std::uint8_t> present_;
  std::uint64_t puts_ = 0, lookups_ = 0, rows_served_ = 0, refused_ = 0, persisted_ = 0;
  std::string last_error_;
};

// Spawns the shard actor and enrolls it with the router under options.name.
addressable_actor spawn_embedding_cache_shard(caf::actor_system& sys, router_actor router,
                                              embedding_cache_shard_options o);

}  // namespace hllm
