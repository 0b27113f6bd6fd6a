#pragma once
// The embedded default dataset: a deterministic generator of interaction and item CSVs whose structure text can
// reveal and item ids alone cannot (docs/data.md describes the generative model).
#include <cstdint>
#include <string>
#include <vector>

namespace hllm::storage {

struct synth_options {
  int64_t users = 6000;             // number of users
  int64_t items = 2000;             // number of items in the catalogue
  int topics = 24;                  // topics, each with its own vocabulary
  int classes_per_topic = 4;        // item classes inside a topic (the Markov states)
  int attributes = 8;               // item attributes (colour-like words users act on)
  int user_attributes = 2;          // attributes each user prefers
  int user_topics = 3;              // topics each user prefers (start and restarts land there)
  int min_length = 8;               // shortest user sequence (interactions)
  int max_length = 25;              // longest user sequence
  double follow_probability = 0.85; // next class is one of the current class's two successors
  double zipf_exponent = 1.0;       // popularity skew of items within a topic
  double cold_item_share = 0.10;    // items never in a training sequence
  double cold_target_share = 0.30;  // share of validation/test targets drawn from cold items
  uint64_t seed = 2020;
};

struct synth_summary {
  int64_t users = 0, items = 0, interactions = 0, cold_items = 0, cold_targets = 0;
};

// Writes DIR/interactions.csv (item_id,user_id,timestamp), DIR/items.csv (item_id,title,tag,description) and
// DIR/cold_items.txt (the raw ids of items generated as cold: ground truth for tests). Same options, same bytes.
synth_summary write_synthetic_dataset(const std::string& dir, const synth_options& options);

// Item-like embeddings for index and export tests and benchmarks: `clusters` topic centres uniform in [-1, 1)^dim,
// each of the n rows [n x dim] its centre (drawn uniformly) plus uniform noise in [-noise, noise). Same arguments,
// same numbers.
std::vector<float> clustered_rows(int64_t n, uint32_t dim, int64_t clusters, double noise, uint64_t seed);

}  // namespace hllm::storage
