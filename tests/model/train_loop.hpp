#pragma once
// The training loop of the learning tests: whole epochs of the trainable users in each epoch's shuffled order.
#include <cstdint>
#include <vector>

#include "model/batching.hpp"
#include "model/trainer.hpp"

namespace hllm::model::testing {

// `steps` steps of `t` on `view`: step s takes the next `batch` users of its epoch's order (epoch_order with
// `seed`), their last seq_len + 1 training items, with timestamps when `with_times`, and `negatives` shared negatives
// drawn from the training items (stage 1, rank 0).
inline void train_over_epochs(trainer& t, const interaction_table& view, uint64_t seed, int64_t steps, int64_t batch,
                              int64_t seq_len, int64_t negatives, bool with_times = false) {
  const auto users = trainable_users(view);
  const auto pool = training_items(view);
  const int64_t per_epoch = static_cast<int64_t>(users.size()) / batch;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t epoch = s / per_epoch, k = s % per_epoch;
    const auto order = epoch_order(users, seed, epoch);
    std::vector<int64_t> u(order.begin() + k * batch, order.begin() + (k + 1) * batch);
    auto b = make_train_batch(view, u, seq_len);
    if (with_times) attach_times(b, view);
    b.negatives = sample_negatives(pool, negatives, seed, 1, epoch, s, 0);
    t.step(b);
  }
}

}  // namespace hllm::model::testing
