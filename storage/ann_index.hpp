#pragma once
// Approximate nearest-neighbour index over exported item embeddings (stage 3): hnswlib's HNSW graph with the inner
// product of L2-normalised rows, i.e. cosine similarity (the score training and evaluation use).
//
// An index is a directory, written through a staging directory and one atomic rename:
//   index.hnsw   hnswlib's own serialisation of the graph (labels = row numbers of the export)
//   ids.txt      the raw item id of every row, one per line (row r on line r + 1)
//   meta.json    format "hllm-ann-index", version, dim, rows, metric, HNSW parameters, the caller's fields (the item
//                version the rows were made with, the export they came from) and the XXH3-64 and size of both files
// Loading checks meta.json, both sizes and both checksums before hnswlib reads a byte, so a truncated or damaged
// index is an error naming the file, never a crash inside hnswlib.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "storage/file_io.hpp"

namespace hllm::storage {

struct ann_params {
  std::size_t m = 16;                 // graph degree (hnswlib M)
  std::size_t ef_construction = 200;  // candidate list while inserting
  std::size_t ef_search = 128;        // candidate list while searching (>= k); stored, changeable at load
  std::size_t seed = 100;             // hnswlib's level generator: the same rows and seed give the same graph
  unsigned threads = 1;               // insertion threads; 1: the graph is a pure function of rows and params
};

struct ann_hit {
  int64_t row = 0;   // row of the export (and line of ids.txt, 0-based)
  float score = 0;   // cosine similarity
};

// Scales every row of a [rows x dim] matrix to unit length (all-zero rows stay zero).
void l2_normalize_rows(float* rows, int64_t n, uint32_t dim);

// The k best rows of an L2-normalised [n x dim] matrix for a normalised query, by exact (brute force) inner product,
// best first; ties broken by the lower row. For recall measurements and small catalogues.
std::vector<ann_hit> exact_top_k(const float* rows, int64_t n, uint32_t dim, const float* query, std::size_t k);

// How many rows of `want` (e.g. the exact top k) are among `got` (e.g. an index's answer): the hits of a recall
// measurement.
std::size_t shared_rows(const std::vector<ann_hit>& got, const std::vector<ann_hit>& want);

class ann_index {
 public:
  // Builds over `rows` [n x dim] (normalised on the way in; the caller's matrix is not changed). With one thread
  // the rows go in in order and the graph is a pure function of the rows and params; with more, hnswlib's
  // thread-safe insertion is used and the graph depends on the interleaving (recall does not).
  static ann_index build(const float* rows, int64_t n, uint32_t dim, const ann_params& p);
  // Opens and verifies an index directory. Throws hllm::error naming the file: not_found, format, checksum, version.
  static ann_index load(const std::string& dir);

  ann_index(ann_index&&) noexcept;
  ann_index& operator=(ann_index&&) noexcept;
  ~ann_index();

  // Writes the index directory atomically (staging directory, fsync, rename). `ids` has one raw id per row; `extra`
  // fields are stored in meta.json as they are (e.g. {"item_version": ...}).
  // `dir` is created, or replaced atomically when it holds an index (meta.json of this format); anything else
  // (a job directory, exports, files) is refused unless `force` (never the current directory or one above it).
  void save(const std::string& dir, const std::vector<std::string>& ids, const nlohmann::json& extra,
            bool force = false) const;

  // The k nearest rows to `query` (any scale; normalised here), best first. k is capped at the row count.
  std::vector<ann_hit> search(const float* query, std::size_t k) const;
  void set_ef_search(std::size_t ef);

  int64_t rows() const;
  uint32_t dim() const;
  const ann_params& params() const;
  // Loaded indexes: the raw ids (ids.txt) and the whole meta.json; built ones: empty.
  const std::vector<std::string>& ids() const;
  const nlohmann::json& meta() const;

 private:
  struct impl;
  explicit ann_index(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

// What may replace an index directory: an absent or empty one, or an index (its meta.json names this format).
replace_policy ann_index_replace_policy(bool force);

}  // namespace hllm::storage
