// `hllm convert`: the paper's datasets in their published layouts -> the two CSVs `hllm prepare` reads. Torch-free,
// sentencepiece-free: links only hllm_storage.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "storage/convert.hpp"
#include "storage/error.hpp"

int main(int argc, char** argv) {
  using hllm::storage::convert_format;
  hllm::storage::convert_options o;
  bool quiet = false;
  CLI::App app{"hllm convert: turn a published dataset layout into the interactions.csv and items.csv that "
               "`hllm prepare` reads (docs/data.md, \"Real data\")",
               "hllm convert"};
  app.require_subcommand(1, 1);
  struct format_command {
    convert_format format;
    const char* name;
    const char* help;
    const char* in_help;
  };
  const format_command formats[] = {
      {convert_format::pixelrec, "pixelrec",
       "PixelRec: interactions CSV (item_id,user_id,timestamp) + item info CSV (item_id, title, tag, description, "
       "...); keeps title, tag, description",
       "the interactions CSV, then the item info CSV"},
      {convert_format::amazon_books, "amazon-books",
       "Amazon Books (McAuley 2014): ratings_Books.csv (no header: user,item,rating,timestamp) + meta_Books.json "
       "(one Python dict per line, or JSON); keeps title, description. Then prepare with --kcore 5 (the paper's "
       "5-core)",
       "a directory holding ratings_Books.csv and meta_Books.json, or those two files in that order"},
      {convert_format::movielens, "movielens",
       "MovieLens (ml-latest, ml-25m, ...): ratings.csv + movies.csv, or ml-1m's ratings.dat + movies.dat; keeps "
       "title, and genres as tag",
       "a directory holding ratings.csv and movies.csv (or ratings.dat and movies.dat), or those two files in that "
       "order"},
  };
  for (const auto& f : formats) {
    auto* sub = app.add_subcommand(f.name, f.help);
    sub->add_option("--in", o.inputs, f.in_help)->required()->expected(1, 2)->allow_extra_args(false);
    sub->add_option("--out", o.out_dir,
                    "output directory: interactions.csv, items.csv, convert_report.json (each replaced atomically)")
        ->required();
    sub->add_flag("--strict", o.strict, "stop at the first bad record instead of skipping and counting it");
    sub->add_flag("--quiet", quiet, "no progress counts");
    sub->callback([&o, fmt = f.format] { o.format = fmt; });
  }
  CLI11_PARSE(app, argc, argv);
  o.progress = !quiet;
  try {
    auto report = hllm::storage::convert_dataset(o);
    std::printf("hllm convert %s: wrote %s/interactions.csv and %s/items.csv\n%s", to_string(o.format),
                o.out_dir.c_str(), o.out_dir.c_str(), report.summary().c_str());
    std::printf("next: hllm prepare --interactions %s/interactions.csv --items %s/items.csv --out DATASET %s%s"
                "(--tokenizer MODEL | --train-tokenizer VOCAB)\n",
                o.out_dir.c_str(), o.out_dir.c_str(), report.prepare_hint.c_str(),
                report.prepare_hint.empty() ? "" : " ");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm convert: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
