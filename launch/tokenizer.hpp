#pragma once
// SentencePiece behind storage::tokenizer. Links sentencepiece: never include this in a process that links torch.
#include <memory>
#include <string>
#include <vector>

#include "storage/prepare.hpp"

namespace hllm::launch {

// Loads a SentencePiece `tokenizer.model` (e.g. a Llama tokenizer). Throws hllm::error naming the file.
std::unique_ptr<storage::tokenizer> load_sentencepiece(const std::string& model_path);

// Trains a SentencePiece BPE model (like the Llama tokenizer; unigram split the shared prompt words into letters on small catalogues) with about `vocab_size` pieces on `texts` (BOS = 1, EOS = 2, UNK = 0, as
// Llama), deterministic for the same texts.
std::unique_ptr<storage::tokenizer> train_sentencepiece(const std::vector<std::string>& texts, int vocab_size);

}  // namespace hllm::launch
