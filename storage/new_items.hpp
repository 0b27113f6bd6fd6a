#pragma once
// Items that arrive after training (stage 3): an item CSV that never went through `hllm prepare`, tokenized exactly
// as a prepared dataset's items were (its prompt, fields, token cut and tokenizer), into a dataset directory that
// holds those items and no users. `hllm encode --items` encodes it with the job's Item LLM and appends the rows to an
// item export. Torch-free; the tokenizer comes in through storage::tokenizer (SentencePiece in hllm prepare).
#include <cstdint>
#include <string>

#include "storage/prepare.hpp"

namespace hllm::storage {

struct new_items_report {
  int64_t items = 0;
  int64_t skipped = 0;        // malformed rows, empty or duplicate ids
  std::string first_problem;  // file:line: why, of the first skipped row
};

// Reads `items_csv` (header: item_id plus the reference's text fields, any order), writes the items-only dataset
// to `out_dir` (atomically). `reference_dir` is the prepared dataset the model was trained on. Throws hllm::error
// naming the file for a missing column, an empty file, or no usable row.
new_items_report prepare_new_items(const std::string& items_csv, const std::string& reference_dir,
                                   const std::string& out_dir, const tokenizer& tok, bool force = false);

}  // namespace hllm::storage
