#include "model/text_baseline.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

#include "storage/error.hpp"

namespace hllm::model {

bm25_index::bm25_index(const item_text_table& texts, const text_baseline_options& o)
    : texts_(texts), num_items_(texts.num_items()) {
  if (o.k1 < 0 || o.b < 0 || o.b > 1 || o.history_items < 1) {
    throw error(errc::invalid_input, "text baseline: needs k1 >= 0 (is " + std::to_string(o.k1) + "), b in [0, 1] (is " +
                                         std::to_string(o.b) + ") and history_items >= 1 (is " +
                                         std::to_string(o.history_items) + ")");
  }
  int32_t max_token = 0;
  for (int64_t i = 1; i <= num_items_; ++i) {
    for (int32_t t : texts.row(static_cast<int32_t>(i))) {
      if (t < 0) {
        throw error(errc::invalid_input, "text baseline: item " + std::to_string(i) + " has a negative token id");
      }
      max_token = std::max(max_token, t);
    }
  }
  ignored_.assign(static_cast<std::size_t>(max_token) + 1, false);
  for (int32_t t : o.ignore_tokens) {
    if (t >= 0 && t <= max_token) ignored_[t] = true;
  }
  // Term frequencies per item, document lengths (tokens not ignored) and document frequencies.
  std::vector<std::vector<std::pair<int32_t, int32_t>>> tf(num_items_ + 1);
  std::vector<int64_t> length(num_items_ + 1, 0), df(ignored_.size(), 0);
  double total = 0;
  for (int64_t i = 1; i <= num_items_; ++i) {
    std::vector<int32_t> tokens;
    for (int32_t t : texts.row(static_cast<int32_t>(i))) {
      if (!ignored_[t]) tokens.push_back(t);
    }
    std::sort(tokens.begin(), tokens.end());
    length[i] = static_cast<int64_t>(tokens.size());
    total += static_cast<double>(tokens.size());
    for (std::size_t k = 0; k < tokens.size();) {
      std::size_t e = k;
      while (e < tokens.size() && tokens[e] == tokens[k]) ++e;
      tf[i].emplace_back(tokens[k], static_cast<int32_t>(e - k));
      ++df[tokens[k]];
      k = e;
    }
  }
  const double n = static_cast<double>(num_items_);
  const double avg = num_items_ > 0 && total > 0 ? total / n : 1.0;
  postings_.resize(ignored_.size());
  for (int64_t i = 1; i <= num_items_; ++i) {
    const double norm = o.k1 * (1.0 - o.b + o.b * static_cast<double>(length[i]) / avg);
    for (auto [t, f] : tf[i]) {
      const double d = static_cast<double>(df[t]);
      const double idf = std::log(1.0 + (n - d + 0.5) / (d + 0.5));  // Lucene's BM25 idf: never negative
      const double fd = static_cast<double>(f);
      postings_[t].push_back({static_cast<int32_t>(i), idf * fd * (o.k1 + 1.0) / (fd + norm)});
    }
  }
}

void bm25_index::query_terms(const std::vector<int32_t>& items, std::vector<std::pair<int32_t, double>>& out) const {
  out.clear();
  std::vector<int32_t> tokens;
  for (int32_t item : items) {
    if (item <= 0 || item > num_items_) {
      if (item == 0) continue;  // padding
      throw error(errc::not_found, "text baseline: item id " + std::to_string(item) + " is not in 1.." +
                                       std::to_string(num_items_));
    }
    for (int32_t t : texts_.row(item)) {
      if (!ignored_[t]) tokens.push_back(t);
    }
  }
  std::sort(tokens.begin(), tokens.end());
  for (std::size_t k = 0; k < tokens.size();) {
    std::size_t e = k;
    while (e < tokens.size() && tokens[e] == tokens[k]) ++e;
    out.emplace_back(tokens[k], static_cast<double>(e - k));
    k = e;
  }
}

std::vector<double> bm25_index::scores(const std::vector<int32_t>& query_items) const {
  std::vector<std::pair<int32_t, double>> terms;
  query_terms(query_items, terms);
  std::vector<double> s(num_items_ + 1, 0.0);
  for (auto [t, w] : terms) {
    for (const auto& p : postings_[t]) s[p.item] += w * p.weight;
  }
  return s;
}

std::vector<int64_t> text_baseline_ranks(const item_text_table& texts, const eval_set& e,
                                         const text_baseline_options& o) {
  const bm25_index index(texts, o);
  const int64_t n = index.num_items();
  std::vector<int64_t> ranks(e.size());
  std::vector<double> score(n + 1, 0.0);
  std::vector<int32_t> touched, masked, query;
  std::vector<bool> is_touched(n + 1, false);
  std::vector<std::pair<int32_t, double>> terms;
  for (int64_t q = 0; q < e.size(); ++q) {
    const int32_t target = e.targets[q];
    if (target <= 0 || target > n) {
      throw error(errc::not_found, "text baseline: query " + std::to_string(q) + "'s target " +
                                       std::to_string(target) + " is not in 1.." + std::to_string(n));
    }
    const auto b = e.history_offsets[q], end = e.history_offsets[q + 1];
    const auto from = end - std::min<uint64_t>(end - b, static_cast<uint64_t>(o.history_items));
    query.assign(e.history.begin() + static_cast<std::ptrdiff_t>(from),
                 e.history.begin() + static_cast<std::ptrdiff_t>(end));
    index.query_terms(query, terms);
    touched.clear();
    for (auto [t, w] : terms) {
      for (const auto& p : index.postings_[t]) {
        if (!is_touched[p.item]) {
          is_touched[p.item] = true;
          touched.push_back(p.item);
        }
        score[p.item] += w * p.weight;
      }
    }
    masked.assign(e.mask.begin() + static_cast<std::ptrdiff_t>(e.mask_offsets[q]),
                  e.mask.begin() + static_cast<std::ptrdiff_t>(e.mask_offsets[q + 1]));
    std::sort(masked.begin(), masked.end());
    masked.erase(std::unique(masked.begin(), masked.end()), masked.end());
    const double st = score[target];
    int64_t rank = 0;
    if (st > 0) {
      // Only items sharing a token with the query can score >= a positive target score.
      for (int32_t i : touched) {
        if (i != target && score[i] >= st) ++rank;
      }
    } else {
      rank = n - 1;  // every other item scores >= 0 = the target's score
    }
    for (int32_t m : masked) {
      if (m != target && m > 0 && m <= n && score[m] >= st) --rank;
    }
    ranks[q] = rank;
    for (int32_t i : touched) {
      score[i] = 0.0;
      is_touched[i] = false;
    }
  }
  return ranks;
}

}  // namespace hllm::model
