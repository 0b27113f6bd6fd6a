// Stage 3 formats without torch: the ANN index (recall against exact search, persistence, damaged files), exports
// (round trip, cross-checks, append rules) and reading a job's embedding cache from its shard files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "storage/ann_index.hpp"
#include "storage/embedding_shard.hpp"
#include "storage/error.hpp"
#include "storage/export.hpp"
#include "storage/file_io.hpp"
#include "storage/synth.hpp"
#include "../storage/test_util.hpp"

using namespace hllm;
using hllm::test::temp_dir;

namespace {

std::vector<std::string> ids_of(int64_t n, const std::string& prefix = "item-") {
  std::vector<std::string> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(prefix + std::to_string(i));
  return ids;
}

double recall_at(const storage::ann_index& idx, const std::vector<float>& base, const std::vector<float>& queries,
                 uint32_t dim, std::size_t k) {
  std::vector<float> norm = base;
  const int64_t n = static_cast<int64_t>(base.size() / dim), nq = static_cast<int64_t>(queries.size() / dim);
  storage::l2_normalize_rows(norm.data(), n, dim);
  std::vector<float> q = queries;
  storage::l2_normalize_rows(q.data(), nq, dim);
  int64_t hits = 0;
  for (int64_t i = 0; i < nq; ++i) {
    auto want = storage::exact_top_k(norm.data(), n, dim, q.data() + i * dim, k);
    hits += static_cast<int64_t>(storage::shared_rows(idx.search(q.data() + i * dim, k), want));
  }
  return static_cast<double>(hits) / static_cast<double>(nq * k);
}

int error_code_of(const std::function<void()>& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const hllm::error& e) {
    if (what) *what = e.what();
    return static_cast<int>(e.code());
  }
  return -1;
}

}  // namespace

TEST(ann_index, recall_at_10_against_exact_search_is_at_least_0_95) {
  const uint32_t dim = 64;
  const int64_t n = 20000;
  auto base = storage::clustered_rows(n, dim, 200, 0.6, 7);
  auto queries = storage::clustered_rows(500, dim, 200, 0.6, 7 + 1000);  // other draws around centres of another seed
  // Queries near the base rows: perturbed base rows (as users sit near the items they like).
  auto near = storage::clustered_rows(500, dim, 200, 0.6, 7);
  auto idx = storage::ann_index::build(base.data(), n, dim, storage::ann_params{});
  const double r_near = recall_at(idx, base, near, dim, 10);
  const double r_far = recall_at(idx, base, queries, dim, 10);
  EXPECT_GE(r_near, 0.95);
  EXPECT_GE(r_far, 0.95);
  // The same index with the smallest search list is measurably worse: the check above measures the graph search,
  // not an exhaustive scan.
  idx.set_ef_search(1);
  EXPECT_LT(recall_at(idx, base, near, dim, 10), r_near);
}

TEST(ann_index, a_parallel_build_reaches_the_same_recall) {
  const uint32_t dim = 32;
  const int64_t n = 8000;
  auto base = storage::clustered_rows(n, dim, 80, 0.6, 21);
  auto near = storage::clustered_rows(300, dim, 80, 0.6, 21);
  storage::ann_params p;
  p.threads = 2;
  auto idx = storage::ann_index::build(base.data(), n, dim, p);
  EXPECT_EQ(idx.rows(), n);
  EXPECT_GE(recall_at(idx, base, near, dim, 10), 0.95);
}

TEST(ann_index, results_are_best_first_cosine_scores_and_capped_at_the_row_count) {
  const uint32_t dim = 8;
  auto base = storage::clustered_rows(50, dim, 5, 0.3, 3);
  auto idx = storage::ann_index::build(base.data(), 50, dim, storage::ann_params{});
  auto hits = idx.search(base.data() + 3 * dim, 100);
  ASSERT_EQ(hits.size(), 50u);
  EXPECT_EQ(hits[0].row, 3);
  EXPECT_NEAR(hits[0].score, 1.0, 1e-5);
  for (std::size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].score, hits[i].score);
  // A scaled query finds the same rows (cosine).
  std::vector<float> scaled(base.begin() + 3 * dim, base.begin() + 4 * dim);
  for (auto& v : scaled) v *= 17.0f;
  EXPECT_EQ(idx.search(scaled.data(), 5)[0].row, 3);
}

TEST(ann_index, save_and_load_give_the_same_answers_and_ids) {
  temp_dir tmp;
  const uint32_t dim = 16;
  const int64_t n = 3000;
  auto base = storage::clustered_rows(n, dim, 30, 0.5, 11);
  auto idx = storage::ann_index::build(base.data(), n, dim, storage::ann_params{});
  idx.save(tmp / "idx", ids_of(n), {{"item_version", "abc123"}});
  auto back = storage::ann_index::load(tmp / "idx");
  EXPECT_EQ(back.rows(), n);
  EXPECT_EQ(back.dim(), dim);
  EXPECT_EQ(back.meta().at("item_version"), "abc123");
  ASSERT_EQ(back.ids().size(), static_cast<std::size_t>(n));
  EXPECT_EQ(back.ids()[42], "item-42");
  for (int64_t q = 0; q < 50; ++q) {
    auto a = idx.search(base.data() + q * 37 % n * dim, 10), b = back.search(base.data() + q * 37 % n * dim, 10);
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].row, b[i].row);
  }
  // Saving again replaces the directory as a whole.
  idx.save(tmp / "idx", ids_of(n, "other-"), {{"item_version", "def456"}});
  EXPECT_EQ(storage::ann_index::load(tmp / "idx").ids()[0], "other-0");
}

TEST(ann_index, a_damaged_index_is_an_error_naming_the_file_never_a_crash) {
  temp_dir tmp;
  const uint32_t dim = 8;
  auto base = storage::clustered_rows(500, dim, 10, 0.5, 5);
  storage::ann_index::build(base.data(), 500, dim, storage::ann_params{}).save(tmp / "idx", ids_of(500), {});
  const std::string graph = tmp / "idx/index.hnsw";
  const std::string original = test::read_bytes(graph);

  std::string what;
  // One flipped byte in the graph.
  std::string bytes = original;
  bytes[bytes.size() / 2] ^= 0x5a;
  test::write_text(graph, bytes);
  EXPECT_EQ(error_code_of([&] { storage::ann_index::load(tmp / "idx"); }, &what), static_cast<int>(errc::checksum));
  EXPECT_NE(what.find("index.hnsw"), std::string::npos) << what;
  // Truncated.
  test::write_text(graph, original.substr(0, original.size() / 3));
  EXPECT_EQ(error_code_of([&] { storage::ann_index::load(tmp / "idx"); }, &what), static_cast<int>(errc::format));
  EXPECT_NE(what.find("truncated"), std::string::npos) << what;
  // Garbage meta.json.
  test::write_text(graph, original);
  test::write_text(tmp / "idx/meta.json", "\x01\x02 not json");
  EXPECT_EQ(error_code_of([&] { storage::ann_index::load(tmp / "idx"); }, &what), static_cast<int>(errc::format));
  EXPECT_NE(what.find("meta.json"), std::string::npos) << what;
  // Not an index at all.
  EXPECT_EQ(error_code_of([&] { storage::ann_index::load(tmp.path()); }), static_cast<int>(errc::not_found));
}

TEST(export_files, round_trip_and_cross_checks) {
  temp_dir tmp;
  storage::export_data e;
  e.dim = 4;
  e.rows = 3;
  e.matrix = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  e.ids = {"a", "b,c", "d"};
  e.fingerprints = {1, 2, 3};
  e.meta = {{"kind", "items"}, {"item_version", "v1"}};
  storage::write_export(tmp / "x.npy", e);
  auto back = storage::read_export(tmp / "x.npy");
  EXPECT_EQ(back.rows, 3);
  EXPECT_EQ(back.dim, 4u);
  EXPECT_EQ(back.matrix, e.matrix);
  EXPECT_EQ(back.ids, e.ids);
  EXPECT_EQ(back.fingerprints, e.fingerprints);
  EXPECT_EQ(back.meta.at("kind"), "items");
  // The id file of another export beside this matrix is caught.
  test::write_text(tmp / "x.ids.txt", "a\nb,c\nz\n");
  std::string what;
  EXPECT_EQ(error_code_of([&] { storage::read_export(tmp / "x.npy"); }, &what), static_cast<int>(errc::checksum));
  EXPECT_NE(what.find("x.ids.txt"), std::string::npos) << what;
  // No meta: not an export.
  EXPECT_EQ(error_code_of([&] { storage::read_export(tmp / "missing.npy"); }), static_cast<int>(errc::not_found));
}

TEST(export_files, append_needs_the_same_kind_version_and_dim_and_new_ids) {
  temp_dir tmp;
  storage::export_data e;
  e.dim = 2;
  e.rows = 2;
  e.matrix = {1, 0, 0, 1};
  e.ids = {"a", "b"};
  e.fingerprints = {1, 2};
  e.meta = {{"kind", "items"}, {"item_version", "v1"}};
  storage::write_export(tmp / "x.npy", e);
  storage::export_data more = e;
  more.rows = 1;
  more.matrix = {0.5f, 0.5f};
  more.ids = {"c"};
  more.fingerprints = {3};
  more.meta["item_version"] = "v2";
  std::string what;
  EXPECT_EQ(error_code_of([&] { storage::append_export(tmp / "x.npy", more); }, &what), static_cast<int>(errc::mismatch));
  EXPECT_NE(what.find("v2"), std::string::npos) << what;
  more.meta["item_version"] = "v1";
  more.ids = {"a"};
  EXPECT_EQ(error_code_of([&] { storage::append_export(tmp / "x.npy", more); }, &what), static_cast<int>(errc::mismatch));
  EXPECT_NE(what.find("'a'"), std::string::npos) << what;
  EXPECT_EQ(storage::read_export(tmp / "x.npy").rows, 2);  // refused appends change nothing
  more.ids = {"c"};
  storage::append_export(tmp / "x.npy", more);
  auto back = storage::read_export(tmp / "x.npy");
  EXPECT_EQ(back.rows, 3);
  EXPECT_EQ(back.ids.back(), "c");
  EXPECT_EQ(back.matrix.back(), 0.5f);
  EXPECT_EQ(back.meta.at("appended_rows"), 1);
}

TEST(cache_reader, reads_every_shard_and_refuses_missing_stale_or_partial_caches) {
  temp_dir tmp;
  const int64_t items = 10;
  const uint32_t dim = 3, shards = 3;
  const uint64_t version = 0x1234abcdULL;
  std::filesystem::create_directories(tmp / "cache");
  auto write = [&](uint32_t s, bool leave_hole) {
    const storage::embedding_shard_header h{storage::embedding_dtype::f32, dim, s, shards,
                                            storage::shard_rows(items, s, shards), version};
    std::vector<uint8_t> presence(h.rows, 1);
    std::vector<float> rows(h.rows * dim);
    for (uint64_t r = 0; r < h.rows; ++r) {
      const auto item = r * shards + s;
      for (uint32_t d = 0; d < dim; ++d) rows[r * dim + d] = static_cast<float>(item * 10 + d);
    }
    if (s == 0) presence[0] = 0;  // item 0 is padding
    if (leave_hole) presence[1] = 0;
    storage::write_embedding_shard(tmp / ("cache/shard-" + std::to_string(s) + "-of-3.emb"), h, presence, rows.data(),
                                   rows.size() * sizeof(float));
  };
  for (uint32_t s = 0; s < shards; ++s) write(s, false);
  auto c = storage::cache_reader::open(tmp / "cache");
  EXPECT_EQ(c.version(), storage::hash_hex(version));
  auto m = c.matrix(items);
  ASSERT_EQ(m.size(), (items + 1) * dim);
  EXPECT_EQ(m[0], 0.0f);
  EXPECT_EQ(m[7 * dim + 2], 72.0f);
  std::string what;
  EXPECT_EQ(error_code_of([&] { storage::cache_reader::open(tmp / "cache", "ffff"); }, &what),
            static_cast<int>(errc::mismatch));
  EXPECT_NE(what.find("stale"), std::string::npos) << what;
  write(1, true);  // item 4 missing
  auto partial = storage::cache_reader::open(tmp / "cache");
  EXPECT_EQ(error_code_of([&] { partial.matrix(items); }, &what), static_cast<int>(errc::not_found));
  EXPECT_NE(what.find("item 4"), std::string::npos) << what;
  std::filesystem::remove(tmp / "cache/shard-2-of-3.emb");
  EXPECT_EQ(error_code_of([&] { storage::cache_reader::open(tmp / "cache"); }, &what), static_cast<int>(errc::not_found));
  EXPECT_NE(what.find("shard-2-of-3.emb"), std::string::npos) << what;
}
