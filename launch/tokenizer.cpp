#include "launch/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm::launch {
namespace {

class sentencepiece_tokenizer final : public storage::tokenizer {
 public:
  explicit sentencepiece_tokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp) : sp_(std::move(sp)) {}
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    auto st = sp_->Encode(std::string(text), &ids);
    if (!st.ok()) throw error(errc::invalid_input, "tokenizer: cannot encode text: " + st.ToString());
    return {ids.begin(), ids.end()};
  }
  int32_t bos_id() const override { return sp_->bos_id() >= 0 ? sp_->bos_id() : 1; }
  int32_t vocab_size() const override { return sp_->GetPieceSize(); }
  std::string serialized_model() const override { return sp_->serialized_model_proto(); }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
};

class text_iterator final : public sentencepiece::SentenceIterator {
 public:
  explicit text_iterator(const std::vector<std::string>& texts) : texts_(texts) {}
  bool done() const override { return i_ >= texts_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return texts_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const std::vector<std::string>& texts_;
  std::size_t i_ = 0;
};

}  // namespace

std::unique_ptr<storage::tokenizer> load_sentencepiece(const std::string& model_path) {
  if (!storage::path_exists(model_path)) {
    throw error(errc::not_found, "tokenizer model '" + model_path + "' does not exist");
  }
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  std::string bytes = storage::read_text_file(model_path);
  auto st = sp->LoadFromSerializedProto(bytes);
  if (!st.ok()) {
    throw error(errc::format, "tokenizer model '" + model_path + "' is not a SentencePiece model: " + st.ToString());
  }
  return std::make_unique<sentencepiece_tokenizer>(std::move(sp));
}

std::unique_ptr<storage::tokenizer> train_sentencepiece(const std::vector<std::string>& texts, int vocab_size) {
  if (vocab_size < 16) throw error(errc::invalid_input, "--train-tokenizer: vocabulary size must be at least 16");
  text_iterator it(texts);
  std::string model;
  std::unordered_map<std::string, std::string> args{
      {"model_type", "bpe"},       {"vocab_size", std::to_string(vocab_size)},
      {"hard_vocab_limit", "false"},   {"character_coverage", "1.0"},
      {"unk_id", "0"},                 {"bos_id", "1"},
      {"eos_id", "2"},                 {"pad_id", "-1"},
      {"num_threads", "2"},            {"minloglevel", "2"},
      {"max_sentence_length", "16384"}, {"split_digits", "true"},
  };
  auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!st.ok()) throw error(errc::invalid_input, "--train-tokenizer: training failed: " + st.ToString());
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  st = sp->LoadFromSerializedProto(model);
  if (!st.ok()) throw error(errc::format, "--train-tokenizer: trained model does not load: " + st.ToString());
  return std::make_unique<sentencepiece_tokenizer>(std::move(sp));
}

}  // namespace hllm::launch
