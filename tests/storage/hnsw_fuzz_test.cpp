// hnswlib's own reader under fuzzing (issue 20). ann_index::load compares index.hnsw's size and checksum with
// meta.json before hnswlib reads a byte, so damage is caught (fuzz_readers.ann_index_directories). But a file whose
// checksum matches and whose content is wrong (a bug, another hnswlib version, a crafted file with a recomputed
// meta.json) crashed hnswlib in this test: loadIndex trusts its header and searchKnn every neighbour id. The checks of
// hnsw_check.hpp, before and after loadIndex, must turn each such case into an hllm::error.
// A binary of its own: hnswlib's header defines non-inline functions, so it can be in one translation unit only, and
// hllm_export's ann_index.cpp is that unit elsewhere.
#include <gtest/gtest.h>

#include <hnswlib/hnswlib.h>

#include <memory>
#include <random>

#include "fuzz_util.hpp"
#include "storage/hnsw_check.hpp"
#include "storage/error.hpp"
#include "test_util.hpp"

using namespace hllm;
using namespace hllm::fuzzing;

TEST(fuzz_readers, hnsw_files_with_a_matching_checksum_are_checked_before_hnswlib_trusts_them) {
  test::temp_dir tmp;
  const uint32_t dim = 8;
  const int64_t rows = 50;
  const std::size_t m = 4;
  hnswlib::InnerProductSpace space(dim);
  {
    // As ann_index::build makes it: one thread, rows in order, labels = row numbers.
    hnswlib::HierarchicalNSW<float> g(&space, rows, m, 20, 100);
    std::mt19937_64 rng(5);
    std::normal_distribution<float> n;
    std::vector<float> v(dim);
    for (int64_t r = 0; r < rows; ++r) {
      for (float& x : v) x = n(rng);
      g.addPoint(v.data(), static_cast<std::size_t>(r));
    }
    g.saveIndex(tmp / "seed.hnsw");
  }
  const std::string seed = test::read_bytes(tmp / "seed.hnsw");
  storage::check_hnsw_header(seed, dim, rows, m, "seed");
  const std::string path = tmp / "case.hnsw";
  std::vector<float> q(dim, 0.5f);
  auto o = fuzz("hnsw-rehashed", {seed}, {}, [&](const std::string& bytes) {
    storage::check_hnsw_header(bytes, dim, rows, m, path);
    put(path, bytes);
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> g;
    try {
      g = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space, path, false, static_cast<std::size_t>(rows));
    } catch (const std::exception& e) {
      throw error(errc::format, path + ": hnswlib cannot read it (" + e.what() + ")");
    }
    storage::check_hnsw_graph(*g, rows, path);
    g->setEf(16);
    auto r = g->searchKnn(q.data(), 5);
    while (!r.empty()) {
      ASSERT_LT(r.top().second, static_cast<std::size_t>(rows));
      r.pop();
    }
  });
  EXPECT_GT(o.refused, 0);
  EXPECT_GT(o.parsed, 0);  // changed vector bytes still load and search
}
