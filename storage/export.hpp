#pragma once
// Stage 3 files (ARCHITECTURE.md "Exports"): embeddings for online retrieval, readable by NumPy and every ML stack.
//
// An export X.npy comes with three files beside it (stem = X without .npy):
//   X.npy            [rows x dim] float32, C order; row r is the embedding of the id on line r + 1 of X.ids.txt
//   X.ids.txt        the original (raw) item or user ids, one per line
//   X.fp.u64         one little-endian u64 per row: the fingerprint of what made the row (the model version and the
//                    row's input: an item's token ids, a user's history), so a later export can leave out the rows
//                    that did not change (--since-checkpoint)
//   X.meta.json      format "hllm-export", kind ("items" or "users"), item_version (the Item-LLM version the item rows
//                    come from: the embedding cache's version tag), user_model (users: the hash of the User-LLM
//                    checkpoint), dim, rows, delta (true: only changed rows), and where it came from
// The four files are replaced as one unit (write_export); meta.json names the row count and the hashes of the ids,
// the rows and the fingerprints, so a reader that finds the files disagreeing reports it instead of pairing rows
// with the wrong ids.
//
// The embedding cache of a job directory (JOB/cache/shard-i-of-S.emb, storage/embedding_shard.hpp) is read here
// directly, without actors: `cache_reader` maps every shard file and hands out rows by item id.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "storage/embedding_shard.hpp"

namespace hllm::storage {

// Reads the shard files of one cache directory. Every shard of the set (S files shard-i-of-S.emb) must be there,
// of one version and dim. Throws hllm::error naming the file or the missing shard.
class cache_reader {
 public:
  // `expected_version` (hex, as the job names it): non-empty refuses a cache of another version (errc::mismatch).
  static cache_reader open(const std::string& cache_dir, const std::string& expected_version = "");

  const std::string& version() const { return version_; }  // hex of the shards' item_llm_hash
  uint32_t dim() const { return dim_; }
  uint32_t shards() const { return static_cast<uint32_t>(files_.size()); }
  bool present(int64_t item) const;
  // Copies item's row into out[0 .. dim). Throws errc::not_found when the row is not in the cache.
  void row(int64_t item, float* out) const;
  // Items 1..num_items as a [(num_items + 1) x dim] matrix, row 0 zeros. Throws naming the first missing item.
  std::vector<float> matrix(int64_t num_items) const;

 private:
  std::string dir_, version_;
  uint32_t dim_ = 0;
  std::vector<embedding_shard_file> files_;
};

struct export_files {
  std::string npy, ids, fingerprints, meta;
};
// The four paths of an export named by its .npy path (a path without .npy gets it appended).
export_files export_paths(const std::string& npy);

struct export_data {
  int64_t rows = 0;
  uint32_t dim = 0;
  std::vector<float> matrix;            // [rows x dim]
  std::vector<std::string> ids;         // raw ids
  std::vector<uint64_t> fingerprints;   // per row
  nlohmann::json meta;
};

// Writes all four files as one unit: they go to temporary names, a commit record is written, then they are renamed
// into place; a crash leaves the previous export or the new one (the next read or write finishes an interrupted
// rename). Existing files of that name that are not an hllm export are refused unless `force`. `meta` gets
// format, version, rows, dim and the files' hashes set here. Throws hllm::error naming the file.
void write_export(const std::string& npy, const export_data& e, bool force = false);
// Reads and cross-checks the four files (rows of X.npy, lines of X.ids.txt, fingerprints, meta.json agree).
export_data read_export(const std::string& npy);
// Only meta.json (cheap: for version checks).
nlohmann::json read_export_meta(const std::string& npy);

// Appends rows to an existing export of the same kind, version and dim; ids already in it are refused
// (errc::mismatch naming the first one). The files are rewritten through temporaries.
void append_export(const std::string& npy, const export_data& more);

// XXH3-64 of (model version, row key, input bytes): the fingerprint of one row.
uint64_t row_fingerprint(const std::string& model_version, const std::string& key, const void* input,
                         std::size_t bytes);

}  // namespace hllm::storage
