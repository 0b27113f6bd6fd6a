#pragma once
// Negative sampler: answers negatives_request(stage, epoch, step, rank) with `count` item ids drawn uniformly from
// the items that occur in the training split (CALIBRATION.md trap 2), never the padding id. A pure function of
// (job seed, stage, epoch, step, rank): any sampler, restarted or not, gives the same ids.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "actors/actors.hpp"
#include "messages/bodies.hpp"

namespace caf {
class actor_system;
}

namespace hllm {

struct negative_sampler_options {
  std::string name;         // e.g. "sampler-0"
  std::string dataset_dir;
  std::uint64_t seed = 2020;
  bool all_items = false;   // draw from every item (the reference's choice) instead of training items
  bool verify_dataset = true;  // as data_loader_options::verify_dataset
};

class negative_sampler {
 public:
  explicit negative_sampler(negative_sampler_options o);
  msg::body handle(const msg::body& request);
  msg::body negatives_of(const msg::negatives_request& r);
  msg::status_reply status() const;

 private:
  negative_sampler_options opt_;
  std::vector<std::int32_t> candidates_;
  std::uint64_t served_ = 0, refused_ = 0;
  std::string last_error_;
};

addressable_actor spawn_negative_sampler(caf::actor_system& sys, router_actor router, negative_sampler_options o);

}  // namespace hllm
