#pragma once
// `hllm prepare`: interaction and item CSVs -> the prepared dataset (storage/dataset.hpp). No torch, no
// sentencepiece here: the tokenizer comes in through the `tokenizer` interface (launch/tokenizer.* wraps
// SentencePiece), so this library stays testable on its own.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hllm::storage {

class tokenizer {
 public:
  virtual ~tokenizer() = default;
  // Token ids of `text`, without BOS (the preparer prepends bos_id()). Called from several threads at once.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual int32_t bos_id() const = 0;
  virtual int32_t vocab_size() const = 0;
  // The serialized model, stored beside the dataset.
  virtual std::string serialized_model() const = 0;
};

// Makes the tokenizer once the item texts are known (so `--train-tokenizer` can train on them).
using tokenizer_factory = std::function<std::unique_ptr<tokenizer>(const std::vector<std::string>& item_texts)>;

struct prepare_options {
  std::string interactions_path;
  std::string items_path;
  std::string out_dir;
  // Item text fields, in prompt order. Empty: every column of the items file except item_id, in the file's order
  // (item_text_columns).
  std::vector<std::string> fields;
  std::string prompt = "Compress the following sentence into embedding: ";
  int max_text_tokens = 256;  // tokens per item including BOS
  int kcore = 0;              // 0: off; k: keep items and users with >= k interactions (one pass)
  bool strict = false;        // strict: the first bad row is an error; lenient: skip it and count it
  bool progress = false;      // draw progress bars on stderr
  std::string source;         // recorded in the manifest
  // Replace out_dir even when it is not a prepared dataset (a directory of other files, a file). Never the inputs,
  // the current directory or one above it (storage/file_io.hpp check_replaceable).
  bool force = false;
};

struct prepare_report {
  int64_t rows_read = 0;
  int64_t users = 0, items = 0, interactions = 0, cold_items = 0;
  int64_t items_without_text = 0;    // interacted items with no row in the item CSV (empty text)
  int64_t items_truncated = 0;       // items whose tokens were cut at max_text_tokens
  int64_t users_too_short = 0;       // users dropped: fewer than 3 interactions (leave-one-out needs 3)
  int64_t kcore_removed = 0;         // interactions removed by the k-core filter
  int64_t item_rows_unused = 0;      // item CSV rows of items no kept interaction refers to
  std::map<std::string, int64_t> skipped;  // reason -> rows skipped (lenient mode)
  std::vector<std::string> examples;       // first few skip messages, with file and line
  std::vector<int64_t> tokens_per_item_percentiles;  // p0, p50, p90, p99, p100
  double parse_seconds = 0, tokenize_seconds = 0, write_seconds = 0;

  std::string to_json() const;
  std::string summary() const;  // one screen for people
};

// Builds the dataset. Throws hllm::error naming file and line for bad input in strict mode, and for problems no
// mode can skip (missing file or column, empty file, nothing left). On any error nothing is written.
prepare_report prepare_dataset(const prepare_options& options, const tokenizer_factory& make_tokenizer);
// The text columns of an items CSV: its header's names except item_id (lower-cased, trimmed), in the file's order.
std::vector<std::string> item_text_columns(const std::string& items_path);

// The prompt text of one item: prompt, then "<field>: <value>" for every non-empty field, no separator.
std::string item_prompt_text(const std::string& prompt, const std::vector<std::string>& field_names,
                             const std::vector<std::string_view>& values);

}  // namespace hllm::storage
