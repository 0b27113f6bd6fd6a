#pragma once
// `hllm convert`: the published layouts of the paper's datasets -> the two CSVs `hllm prepare` reads
// (DIR/interactions.csv `item_id,user_id,timestamp` and DIR/items.csv `item_id,<text fields>`). docs/data.md,
// "Real data", describes each layout and what is kept.
//
//   pixelrec      interactions CSV (item_id,user_id,timestamp; extra columns dropped) + item info CSV (item_id and
//                 title, tag, description kept; view_number, comment_number, ... dropped and reported)
//   amazon-books  ratings_Books.csv (no header: user,item,rating,timestamp) + meta_Books.json (one Python dict
//                 literal per line, or JSON); items.csv = item_id,title,description. No k-core here: the paper's
//                 one-pass 5-core is `hllm prepare --kcore 5`, so it is done once, in one place.
//   movielens     ratings.csv (userId,movieId,rating,timestamp) + movies.csv (movieId,title,genres), or the ml-1m
//                 style ratings.dat + movies.dat ("::"-separated, Latin-1); items.csv = item_id,title,tag (genres)
//
// Streaming: inputs are read record by record (CSV through the memory-mapped reader, metadata lines through a
// stream), outputs written through temporary files that are fsynced and renamed at the end, so a failed run leaves
// no half-written CSV. Only the set of interacted item ids is held in memory.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hllm::storage {

enum class convert_format { pixelrec, amazon_books, movielens };

// "pixelrec", "amazon-books", "movielens"; parse_convert_format throws hllm::error(invalid_input) for others.
const char* to_string(convert_format f);
convert_format parse_convert_format(const std::string& name);

struct convert_options {
  convert_format format = convert_format::pixelrec;
  // Two files in the order (interactions, items), or one directory holding the published file names
  // (amazon-books: ratings_Books.csv, meta_Books.json; movielens: ratings.csv, movies.csv or ratings.dat,
  // movies.dat). PixelRec's file names vary by release, so it needs the two files.
  std::vector<std::string> inputs;
  std::string out_dir;      // created if missing; interactions.csv, items.csv and convert_report.json replaced
  bool strict = false;      // strict: the first bad row is an error; lenient: skip it and count it
  bool progress = false;    // row counts on stderr (only on a terminal)
};

struct convert_report {
  std::string format;
  std::string interactions_input, items_input;
  int64_t interaction_rows_read = 0;
  int64_t interactions_written = 0;
  int64_t items_interacted = 0;      // distinct item ids in the written interactions
  int64_t item_rows_read = 0;        // records (rows or lines) of the item input
  int64_t items_written = 0;         // rows of items.csv: one per interacted item that has an item record
  int64_t items_without_text = 0;    // written rows with every text field empty (kept: the prompt alone)
  int64_t items_without_title = 0;   // written rows whose first text field (the title) is empty
  int64_t items_without_row = 0;     // interacted items with no item record (not written; prepare keeps them, empty)
  int64_t item_rows_unused = 0;      // item records of items no interaction refers to (not written)
  int64_t text_repaired = 0;         // item records whose text was not UTF-8 and was read as Latin-1
  std::vector<std::string> fields;   // text columns of items.csv after item_id
  std::vector<std::string> dropped_columns;  // "file: column" for input columns not carried over
  std::vector<std::string> notes;            // anything else people should know (a header taken as data, ...)
  std::map<std::string, int64_t> skipped;    // reason -> records skipped (lenient mode)
  std::vector<std::string> examples;         // first few skip messages, "file:line: reason (detail)"
  std::string prepare_hint;                  // the `hllm prepare` options this format wants
  double seconds = 0;

  std::string to_json() const;
  std::string summary() const;  // one screen for people
};

// Converts. Throws hllm::error naming the file (and line, for bad input in strict mode) for a missing input, a
// missing column, an empty file or nothing usable; on any error no output file is replaced.
convert_report convert_dataset(const convert_options& options);

}  // namespace hllm::storage
