// `hllm prepare`: CSVs -> prepared dataset. Links sentencepiece, never torch.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "launch/tokenizer.hpp"
#include "storage/error.hpp"
#include "storage/new_items.hpp"
#include "storage/prepare.hpp"

int main(int argc, char** argv) {
  hllm::storage::prepare_options o;
  std::string tokenizer_path, fields;
  int train_vocab = 0;
  bool quiet = false;
  CLI::App app{"hllm prepare: build a prepared dataset (dense ids, time-ordered sequences, leave-one-out split, "
               "tokenized item prompts) from an interactions CSV and an item CSV",
               "hllm prepare"};
  std::string new_items, like;
  app.add_option("--interactions", o.interactions_path, "interactions CSV with header item_id,user_id,timestamp");
  app.add_option("--items", o.items_path, "item CSV with header item_id,<text fields...>");
  app.add_option("--out", o.out_dir, "output dataset directory: created, or replaced atomically when it holds a "
                                     "dataset of the same kind; anything else is refused (see --force)")
      ->required();
  app.add_flag("--force", o.force, "replace --out even when it holds something else (a directory of other files, a "
                                   "file); never the inputs, the current directory or one above it");
  app.add_option("--new-items", new_items, "stage 3: an item CSV that arrived after training: tokenize it like the "
                                           "dataset --like (its prompt, fields, cut and tokenizer) into an items-only "
                                           "dataset for hllm encode --items");
  app.add_option("--like", like, "with --new-items: the prepared dataset the model was trained on");
  auto* tk = app.add_option("--tokenizer", tokenizer_path, "SentencePiece tokenizer.model (e.g. a Llama tokenizer)");
  auto* tr = app.add_option("--train-tokenizer", train_vocab, "train a SentencePiece model of this vocabulary size "
                                                               "on the item texts instead");
  tk->excludes(tr);
  tr->excludes(tk);
  app.add_option("--fields", fields, "item text fields in prompt order (Books: title,description); default: every "
                                     "column of the items file but item_id, in the file's order");
  app.add_option("--prompt", o.prompt, "text before the fields")->capture_default_str();
  app.add_option("--max-text-tokens", o.max_text_tokens, "tokens per item including BOS (paper: 256)")
      ->capture_default_str();
  app.add_option("--kcore", o.kcore, "keep items and users with at least K interactions (one pass; 0 = off)")
      ->capture_default_str();
  app.add_flag("--strict", o.strict, "stop at the first bad row instead of skipping and counting it");
  app.add_flag("--quiet", quiet, "no progress bars");
  CLI11_PARSE(app, argc, argv);
  if (!new_items.empty()) {
    if (like.empty()) {
      std::fprintf(stderr, "hllm prepare: error: --new-items needs --like DATASET (the dataset the model was trained on)\n");
      return 2;
    }
    try {
      auto tok = hllm::launch::load_sentencepiece(like + "/tokenizer.model");
      auto r = hllm::storage::prepare_new_items(new_items, like, o.out_dir, *tok, o.force);
      std::printf("hllm prepare: %lld new items from %s tokenized like %s -> %s (%lld rows skipped%s%s)\n",
                  static_cast<long long>(r.items), new_items.c_str(), like.c_str(), o.out_dir.c_str(),
                  static_cast<long long>(r.skipped), r.first_problem.empty() ? "" : "; first: ",
                  r.first_problem.c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hllm prepare: error: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  if (o.interactions_path.empty() || o.items_path.empty()) {
    std::fprintf(stderr, "hllm prepare: error: give --interactions and --items (or --new-items with --like)\n");
    return 2;
  }
  if (tokenizer_path.empty() && train_vocab == 0) {
    std::fprintf(stderr, "hllm prepare: error: give --tokenizer MODEL or --train-tokenizer VOCAB\n");
    return 2;
  }
  o.fields.clear();
  for (std::size_t start = 0; start <= fields.size();) {
    std::size_t end = fields.find(',', start);
    if (end == std::string::npos) end = fields.size();
    if (end > start) o.fields.push_back(fields.substr(start, end - start));
    start = end + 1;
  }
  o.progress = !quiet;
  o.source = o.interactions_path + " + " + o.items_path;
  try {
    auto make = [&](const std::vector<std::string>& texts) {
      return tokenizer_path.empty() ? hllm::launch::train_sentencepiece(texts, train_vocab)
                                    : hllm::launch::load_sentencepiece(tokenizer_path);
    };
    auto report = hllm::storage::prepare_dataset(o, make);
    std::printf("hllm prepare: wrote %s\n%s", o.out_dir.c_str(), report.summary().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm prepare: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
