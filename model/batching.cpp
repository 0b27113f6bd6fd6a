#include "model/batching.hpp"

#include <algorithm>

#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "storage/random.hpp"

namespace hllm::model {
namespace {

// Purpose keys keep streams of different uses apart even with equal (seed, step, ...).
constexpr uint64_t purpose_epoch_order = 0x6f72646572;  // "order"
constexpr uint64_t purpose_negatives = 0x6e6567;        // "neg"

}  // namespace

span<const int32_t> interaction_table::train_part(int64_t user) const {
  auto s = sequence(user);
  return s.size() < 3 ? span<const int32_t>() : s.subspan(0, s.size() - 2);
}

item_text_table item_texts_of(const storage::dataset& d) { return {d.item_token_offsets(), d.item_tokens_all()}; }

interaction_table interactions_of(const storage::dataset& d) {
  return {d.seq_offsets(), d.seq_items(), d.item_train_counts()};
}

std::vector<int64_t> trainable_users(const interaction_table& t) {
  std::vector<int64_t> out;
  for (int64_t u = 0; u < t.num_users(); ++u) {
    if (t.train_part(u).size() >= 2) {
      out.push_back(u);
    }
  }
  return out;
}

std::vector<int32_t> training_items(const interaction_table& t) {
  std::vector<int32_t> out;
  for (int64_t i = 1; i <= t.num_items(); ++i) {
    if (t.train_counts[i] > 0) {
      out.push_back(static_cast<int32_t>(i));
    }
  }
  return out;
}

std::vector<int64_t> epoch_order(const std::vector<int64_t>& users, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> out = users;
  hllm::rng r{seed, static_cast<uint64_t>(epoch), purpose_epoch_order};
  for (std::size_t i = out.size(); i > 1; --i) {
    std::swap(out[i - 1], out[r.below(i)]);  // Fisher-Yates with our own generator: same order everywhere
  }
  return out;
}

train_batch make_train_batch(const interaction_table& t, const std::vector<int64_t>& users, int64_t seq_len) {
  train_batch b;
  b.batch = static_cast<int64_t>(users.size());
  b.seq_len = seq_len;
  const int64_t width = seq_len + 1;
  b.items.assign(b.batch * width, 0);
  for (int64_t r = 0; r < b.batch; ++r) {
    auto part = t.train_part(users[r]);
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(part.size()), width);
    for (int64_t j = 0; j < n; ++j) {
      b.items[r * width + (width - n) + j] = part[part.size() - n + j];
    }
  }
  return b;
}

std::vector<int32_t> sample_negatives(const std::vector<int32_t>& candidates, int64_t count, uint64_t seed,
                                      int64_t stage, int64_t epoch, int64_t step, int64_t rank) {
  if (candidates.empty()) {
    throw error(errc::invalid_input, "sample_negatives: no candidate items");
  }
  hllm::rng r{seed, static_cast<uint64_t>(stage), static_cast<uint64_t>(epoch), static_cast<uint64_t>(step),
              static_cast<uint64_t>(rank), purpose_negatives};
  std::vector<int32_t> out(count);
  for (auto& x : out) {
    x = candidates[r.below(candidates.size())];
  }
  return out;
}

eval_set make_eval_set(const interaction_table& t, split s, int64_t max_history, int64_t max_users) {
  eval_set e;
  for (int64_t u = 0; u < t.num_users(); ++u) {
    auto seq = t.sequence(u);
    if (seq.size() < 3) {
      continue;
    }
    const std::size_t target_pos = s == split::valid ? seq.size() - 2 : seq.size() - 1;
    const std::size_t start = static_cast<std::size_t>(
        std::max<int64_t>(0, static_cast<int64_t>(target_pos) - max_history));
    e.history.insert(e.history.end(), seq.begin() + start, seq.begin() + target_pos);
    e.history_offsets.push_back(e.history.size());
    e.mask.insert(e.mask.end(), seq.begin(), seq.begin() + target_pos);
    e.mask_offsets.push_back(e.mask.size());
    e.targets.push_back(seq[target_pos]);
    e.users.push_back(u);
    if (max_users > 0 && e.size() >= max_users) {
      break;
    }
  }
  return e;
}

}  // namespace hllm::model
