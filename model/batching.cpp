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
  return {d.seq_offsets(), d.seq_items(), d.item_train_counts(), d.seq_times()};
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
  b.users = users;  // attach_times reads them (timestamp features); the loader's batches never carry times
  return b;
}

int64_t time_bucket(int64_t previous, int64_t now, bool first, int64_t buckets) {
  if (first) return 1;
  const uint64_t gap = now > previous ? static_cast<uint64_t>(now - previous) : 0;
  int64_t log2 = 0;
  for (uint64_t v = gap + 1; v > 1; v >>= 1) ++log2;
  return std::min<int64_t>(2 + log2, buckets - 1);
}

void attach_times(train_batch& b, const interaction_table& t) {
  const int64_t width = b.seq_len + 1;
  if (t.seq_times.empty() || static_cast<int64_t>(b.users.size()) != b.batch) {
    throw error(errc::invalid_input, "attach_times: needs the batch's users and a table with timestamps");
  }
  b.times.assign(b.batch * width, 0);
  for (int64_t r = 0; r < b.batch; ++r) {
    const auto u = b.users[r];
    const auto part = t.train_part(u);
    const auto begin = t.seq_offsets[u];
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(part.size()), width);
    for (int64_t j = 0; j < n; ++j) {
      b.times[r * width + (width - n) + j] = t.seq_times[begin + part.size() - n + j];
    }
  }
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
    if (!t.seq_times.empty()) {
      const auto times = t.seq_times.subspan(t.seq_offsets[u], seq.size());
      e.history_times.insert(e.history_times.end(), times.begin() + start, times.begin() + target_pos);
    }
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
