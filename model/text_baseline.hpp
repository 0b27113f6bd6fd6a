#pragma once
// The text-only baseline (issue 19: "is HLLM just text matching?"): no training, items ranked by BM25 between their
// token texts and a query made of the texts of the user's most recent history items. Torch-free, sparse (an
// inverted index over token ids). It ranks with the protocol of every other row of the results table
// (metrics.hpp target_ranks): every item a candidate, the user's earlier items masked (never the target), ties
// counted against the target, so an item sharing no token with the query ranks below every item that shares one.
#include <cstdint>
#include <vector>

#include "model/batching.hpp"

namespace hllm::model {

struct text_baseline_options {
  int64_t history_items = 10;  // the query: the texts of the last this-many items of each query's history
  double k1 = 1.2;             // BM25 term-frequency saturation
  double b = 0.75;             // BM25 length normalisation
  // Token ids that carry no meaning (BOS, padding): left out of the index and the queries. The idf already makes a
  // token that every item carries weigh almost nothing.
  std::vector<int32_t> ignore_tokens;
};

class bm25_index {
 public:
  // Indexes every item's whole text (not cut at the model's max_text_tokens). Throws hllm::error(invalid_input)
  // for k1 < 0, b outside [0, 1] or history_items < 1.
  bm25_index(const item_text_table& texts, const text_baseline_options& o = {});
  // BM25 score of every item (index = item id, row 0 = 0) against the query: the tokens of `query_items`' texts,
  // each token weighted by how often it occurs in them.
  std::vector<double> scores(const std::vector<int32_t>& query_items) const;
  int64_t num_items() const { return num_items_; }

 private:
  struct posting {
    int32_t item;
    double weight;  // the BM25 term weight of the token in the item (idf x saturated tf)
  };
  // Adds weight x posting weight into `acc` for every item of the token's postings.
  std::vector<std::vector<posting>> postings_;  // by token id
  std::vector<bool> ignored_;
  const item_text_table texts_;
  int64_t num_items_ = 0;
  friend std::vector<int64_t> text_baseline_ranks(const item_text_table&, const eval_set&,
                                                  const text_baseline_options&);
  void query_terms(const std::vector<int32_t>& items, std::vector<std::pair<int32_t, double>>& out) const;
};

// 0-based rank of each query's target under BM25(item text, text of the last `history_items` history items), with
// target_ranks' masking and tie rule. The job's row: text_baseline_ranks(texts_, test_, options).
std::vector<int64_t> text_baseline_ranks(const item_text_table& texts, const eval_set& e,
                                         const text_baseline_options& o = {});

}  // namespace hllm::model
