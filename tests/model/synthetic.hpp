#pragma once
// A topic-structured synthetic catalogue in which text predicts behaviour (CALIBRATION.md): items carry topic,
// class and attribute words; the next item's class follows one of two fixed successors (85%); each user prefers
// two attributes; one item per class is cold (never in a training sequence) and 30% of evaluation targets are
// drawn from the cold items. Built in memory: no tokenizer, no files.
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "test_support.hpp"

namespace hllm::model::testing {

struct synthetic_data {
  owned_texts texts;
  std::vector<uint64_t> seq_offsets{0};
  std::vector<int32_t> seq_items;
  std::vector<int64_t> train_counts;
  std::vector<bool> cold;  // per item id
  int64_t vocab = 0;
  int64_t items = 0;
  interaction_table view() const {
    return {{seq_offsets.data(), seq_offsets.size()}, {seq_items.data(), seq_items.size()},
            {train_counts.data(), train_counts.size()}};
  }
};

inline synthetic_data make_synthetic(int users, uint32_t seed) {
  constexpr int topics = 8, classes = 32, per_class = 7, attrs = 8, fillers = 20;
  std::mt19937 rng(seed);
  auto uni = [&](int n) { return static_cast<int>(rng() % n); };
  synthetic_data d;
  d.items = classes * per_class;
  const int class_word = 2 + topics * 2, attr_word = class_word + classes * 3, filler = attr_word + attrs;
  const int name_word = filler + fillers;
  d.vocab = name_word + d.items + 1;
  std::vector<int> item_class(d.items + 1);
  std::vector<std::vector<int>> item_attrs(d.items + 1);
  d.cold.assign(d.items + 1, false);
  for (int k = 1; k <= d.items; ++k) {
    const int c = (k - 1) % classes, t = c / (classes / topics);
    int a0 = uni(attrs), a1 = (a0 + 1 + uni(attrs - 1)) % attrs;
    item_class[k] = c;
    item_attrs[k] = {a0, a1};
    d.texts.add({1, 2 + t * 2, 3 + t * 2, class_word + c * 3, class_word + c * 3 + 1, class_word + c * 3 + 2,
                 attr_word + a0, attr_word + a1, filler + uni(fillers), filler + uni(fillers), name_word + k});
    d.cold[k] = (k - 1) / classes == per_class - 1;  // the last item of every class
  }
  std::vector<std::array<int, 2>> successor(classes);
  for (auto& s : successor) s = {uni(classes), uni(classes)};
  // Zipf-skewed choice among a class's items that carry a preferred attribute (any of the class if none).
  auto pick = [&](int c, const std::array<int, 2>& pref, bool want_cold) {
    std::vector<int> cands, fallback;
    for (int k = c + 1; k <= d.items; k += classes) {
      if (d.cold[k] != want_cold) continue;
      fallback.push_back(k);
      for (int a : item_attrs[k])
        if (a == pref[0] || a == pref[1]) { cands.push_back(k); break; }
    }
    auto& from = cands.empty() ? fallback : cands;
    std::vector<double> w;
    for (size_t i = 0; i < from.size(); ++i) w.push_back(1.0 / (i + 1));
    return from[std::discrete_distribution<int>(w.begin(), w.end())(rng)];
  };
  for (int u = 0; u < users; ++u) {
    const int a0 = uni(attrs);
    const std::array<int, 2> pref{a0, (a0 + 1 + uni(attrs - 1)) % attrs};
    const int n = 8 + uni(9);
    int c = uni(classes);
    for (int j = 0; j < n; ++j) {
      if (j > 0) c = uni(100) < 85 ? successor[c][uni(2)] : uni(classes);
      const bool eval_target = j >= n - 2;
      d.seq_items.push_back(pick(c, pref, eval_target && uni(100) < 30));
    }
    d.seq_offsets.push_back(d.seq_items.size());
  }
  d.train_counts.assign(d.items + 1, 0);
  auto v = d.view();
  for (int64_t u = 0; u < users; ++u)
    for (int32_t i : v.train_part(u)) ++d.train_counts[i];
  return d;
}

}  // namespace hllm::model::testing
