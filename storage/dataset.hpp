#pragma once
// The prepared dataset (`hllm prepare` output): memory-mapped, read-only, verified against its manifest.
//
// Layout of a dataset directory (all integers little-endian, every array file is raw elements, no header):
//   manifest.json          format, version, counts, options used, and the xxh64 of every other file
//   item_token_offsets.u64 n_items + 2 offsets into item_tokens (row 0 = padding item, empty)
//   item_tokens.i32        token ids of every item's prompt text, BOS first, cut at max_text_tokens
//   item_raw_offsets.u64   n_items + 2 offsets into item_raw_ids (row 0 empty)
//   item_raw_ids.bin       the raw item ids from the CSV, concatenated
//   user_raw_offsets.u64   n_users + 1 offsets into user_raw_ids
//   user_raw_ids.bin       the raw user ids, concatenated
//   seq_offsets.u64        n_users + 1 offsets into seq_items / seq_times
//   seq_items.i32          dense item ids (1..n_items) of every user's sequence, sorted stably by timestamp
//   seq_times.i64          the timestamps beside seq_items
//   item_train_count.i64   n_items + 1: how often each item occurs in a training part (popularity; row 0 = 0)
//   item_title_offsets.u64 optional (datasets prepared before stage 3 lack it): n_items + 2 offsets into
//   item_titles.bin        the first text field of every item (its title), for people reading recommendations
//   tokenizer.model        the SentencePiece model used (copied or trained), for reproducibility
//
// Split (leave-one-out, REFERENCE.md): for a user sequence s of length n >= 3, the training part is s[0 .. n-2),
// the validation target s[n-2] and the test target s[n-1]. An item is cold when its train count is 0.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/file_io.hpp"

#include "storage/span.hpp"

namespace hllm::storage {

inline constexpr const char* dataset_format = "hllm-dataset";
inline constexpr int dataset_format_version = 1;

struct dataset_info {
  int64_t users = 0;
  int64_t items = 0;          // dense ids 1..items; 0 is padding
  int64_t interactions = 0;
  int64_t cold_items = 0;     // items with train count 0
  int64_t tokens = 0;         // total item tokens
  int32_t max_text_tokens = 0;
  int32_t vocab_size = 0;
  int32_t bos_id = 1;
  std::string prompt;
  std::string fields;         // comma-separated text fields used
  std::string source;         // free text: where the data came from
};

// Everything a dataset directory holds, in memory; `write_dataset` turns it into files.
struct dataset_arrays {
  std::vector<uint64_t> item_token_offsets{0, 0};  // row 0 = padding item
  std::vector<int32_t> item_tokens;
  std::vector<uint64_t> item_raw_offsets{0, 0};
  std::string item_raw_ids;
  std::vector<uint64_t> user_raw_offsets{0};
  std::string user_raw_ids;
  std::vector<uint64_t> seq_offsets{0};
  std::vector<int32_t> seq_items;
  std::vector<int64_t> seq_times;
  std::vector<int64_t> item_train_count{0};
  // Optional: empty offsets write no title files.
  std::vector<uint64_t> item_title_offsets;
  std::string item_titles;
};

// Writes a dataset into `dir` atomically: files go to a sibling staging directory, are fsynced and hashed, the
// manifest is written last, then the staging directory replaces `dir` in one rename. `tokenizer_model` is the
// serialized SentencePiece model (may be empty). `report` is stored in the manifest as is.
// `dir` is replaced only when it is absent, empty or a dataset of the same kind (dataset_replace_policy), unless
// `policy` says otherwise; a refused `dir` is left as it was (hllm::error(invalid_input)).
void write_dataset(const std::string& dir, const dataset_info& info, const dataset_arrays& arrays,
                   const std::string& tokenizer_model, const std::string& report_json);
void write_dataset(const std::string& dir, const dataset_info& info, const dataset_arrays& arrays,
                   const std::string& tokenizer_model, const std::string& report_json, const replace_policy& policy);

// What may replace a dataset directory: a training dataset replaces any dataset (re-preparing); an items-only one
// (hllm prepare --new-items, `items_only`) only another items-only one, never a training dataset. `protect`: the
// command's inputs (never replaced, even with `force`).
replace_policy dataset_replace_policy(bool items_only, bool force, std::vector<std::string> protect);

class dataset {
 public:
  // Opens DIR read-only. With verify, every file's xxh64 is checked against the manifest.
  // Throws hllm::error naming the file on any problem.
  static dataset open(const std::string& dir, bool verify = true);

  dataset(dataset&&) noexcept;
  dataset& operator=(dataset&&) noexcept;
  ~dataset();

  const dataset_info& info() const;
  const std::string& dir() const;
  int64_t num_users() const { return info().users; }
  int64_t num_items() const { return info().items; }

  // Token ids of item `item` (1..num_items); empty for 0.
  span<const int32_t> item_tokens(int32_t item) const;
  std::string_view raw_item_id(int32_t item) const;
  std::string_view raw_user_id(int64_t user) const;
  // The item's title (its first text field); empty when the dataset has no titles (prepared before they existed).
  std::string_view item_title(int32_t item) const;
  bool has_titles() const;

  // The user's whole time-ordered sequence, and its parts under the leave-one-out split.
  span<const int32_t> user_sequence(int64_t user) const;
  span<const int64_t> user_times(int64_t user) const;
  span<const int32_t> train_sequence(int64_t user) const;  // all but the last two
  int32_t valid_target(int64_t user) const;
  int32_t test_target(int64_t user) const;

  int64_t train_count(int32_t item) const;
  bool is_cold(int32_t item) const { return train_count(item) == 0; }

  // Whole arrays, for bulk consumers (evaluators, samplers).
  span<const uint64_t> seq_offsets() const;
  span<const int32_t> seq_items() const;
  span<const int64_t> seq_times() const;
  span<const uint64_t> item_token_offsets() const;
  span<const int32_t> item_tokens_all() const;
  span<const int64_t> item_train_counts() const;

 private:
  struct impl;
  explicit dataset(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace hllm::storage
