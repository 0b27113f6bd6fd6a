#pragma once
// Torch-free views of a prepared dataset and the pure functions that turn it into training batches, negative
// pools and evaluation sets. Every random choice is a pure function of its keys (determinism contract).
#include <cstdint>
#include <vector>

#include "storage/span.hpp"

namespace hllm::storage {
class dataset;
}

namespace hllm::model {

// Token ids of every item: row i = dense item i, CSR with offsets.size() == num_items + 2 (row 0 = padding).
struct item_text_table {
  span<const uint64_t> offsets;
  span<const int32_t> tokens;
  int64_t num_items() const { return offsets.size() < 2 ? 0 : static_cast<int64_t>(offsets.size()) - 2; }
  span<const int32_t> row(int32_t item) const {
    return tokens.subspan(offsets[item], offsets[item + 1] - offsets[item]);
  }
};

// Users' time-ordered sequences (CSR) and per-item training counts (row 0 = padding).
struct interaction_table {
  span<const uint64_t> seq_offsets;
  span<const int32_t> seq_items;
  span<const int64_t> train_counts;
  span<const int64_t> seq_times;  // beside seq_items (may be empty: no timestamp features)
  int64_t num_users() const { return seq_offsets.empty() ? 0 : static_cast<int64_t>(seq_offsets.size()) - 1; }
  int64_t num_items() const { return train_counts.empty() ? 0 : static_cast<int64_t>(train_counts.size()) - 1; }
  span<const int32_t> sequence(int64_t user) const {
    return seq_items.subspan(seq_offsets[user], seq_offsets[user + 1] - seq_offsets[user]);
  }
  // Leave-one-out: all but the last two (empty when the user has fewer than 3 interactions).
  span<const int32_t> train_part(int64_t user) const;
};

item_text_table item_texts_of(const storage::dataset& d);
interaction_table interactions_of(const storage::dataset& d);

// Windows of seq_len + 1 items, left-padded with 0: inputs are columns [0, seq_len), targets [1, seq_len].
struct train_batch {
  int64_t batch = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> items;      // [batch, seq_len + 1]
  std::vector<int32_t> negatives;  // one pool shared by every position of every sample
  // Item source = cache (stage 2): the cached embeddings of this batch, looked up per batch from the embedding-cache
  // shards with every id deduplicated. row_ids: the distinct nonzero ids of `items` and `negatives`, ascending;
  // rows: row-major [row_ids.size() x hidden], row i the embedding of row_ids[i]. Empty: the trainer's own item
  // matrix is used instead.
  std::vector<int32_t> row_ids;
  std::vector<float> rows;
  // Timestamp features (hllm_config::time_buckets): the timestamps beside `items` ([batch, seq_len + 1], 0 under
  // padding), and the batch's dense user ids (attach_times fills `times` from them). Empty when unused.
  std::vector<int64_t> times;
  std::vector<int64_t> users;
};

// The time-interval bucket of an input: 0 = padding, 1 = the first item of a window (no earlier one), else
// 2 + floor(log2(1 + seconds since the previous item)), capped at buckets - 1.
int64_t time_bucket(int64_t previous, int64_t now, bool first, int64_t buckets);
// Fills b.times from b.users and the table's timestamps (the same windows make_train_batch takes). Only models with
// timestamp features need it: the trainer calls it, so batches cost nothing extra when the feature is off.
void attach_times(train_batch& b, const interaction_table& t);

// Users with at least two training items (one input, one target).
std::vector<int64_t> trainable_users(const interaction_table& t);
// Items that occur in the training split: the default negative candidates (CALIBRATION.md trap 2).
std::vector<int32_t> training_items(const interaction_table& t);
// `users` shuffled for an epoch: a pure function of (seed, epoch).
std::vector<int64_t> epoch_order(const std::vector<int64_t>& users, uint64_t seed, int64_t epoch);
// The most recent seq_len + 1 training items of each user.
train_batch make_train_batch(const interaction_table& t, const std::vector<int64_t>& users, int64_t seq_len);
// `count` uniform draws (with replacement) from `candidates`: a pure function of the keys.
std::vector<int32_t> sample_negatives(const std::vector<int32_t>& candidates, int64_t count, uint64_t seed,
                                      int64_t stage, int64_t epoch, int64_t step, int64_t rank);

enum class split { valid, test };

// One ranking query per user: the history the User LLM reads, the target, and the items masked from ranking.
struct eval_set {
  std::vector<uint64_t> history_offsets{0};  // CSR over users
  std::vector<int32_t> history;              // the most recent max_history items before the target
  std::vector<uint64_t> mask_offsets{0};     // CSR: every item the user saw before the target (masked)
  std::vector<int32_t> mask;
  std::vector<int64_t> history_times;        // beside history when the table has timestamps
  std::vector<int32_t> targets;
  std::vector<int64_t> users;
  int64_t size() const { return static_cast<int64_t>(targets.size()); }
};

// valid: history = train part, target = second to last; test: history = train part + valid, target = last.
// At most max_users users (0 = all), taken in user order.
eval_set make_eval_set(const interaction_table& t, split s, int64_t max_history, int64_t max_users = 0);

}  // namespace hllm::model
