#pragma once
// Checks of an hnswlib index file that hnswlib itself does not make (issue 20, fuzzed readers). A file whose checksum
// matches meta.json but whose content is wrong (a bug, another hnswlib version, a crafted file) crashes hnswlib:
// loadIndex trusts its header (max_elements below the element count overflows its buffer, maxM_ near 2^62 divides
// by zero) and searchKnn trusts every neighbour id. storage/ann_index.cpp load() calls check_hnsw_header on the
// file's bytes (memory-mapped) before hnswlib reads them and check_hnsw_graph after loadIndex, before the first
// search; tests/storage/hnsw_fuzz_test.cpp shows they suffice. Header-only: hnswlib's graph type is a template.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>

#include "storage/error.hpp"

namespace hllm::storage {

// hnswlib's saveIndex header: offsetLevel0_, max_elements_, cur_element_count, size_data_per_element_,
// label_offset_, offsetData_ (size_t each), maxlevel_ (int), enterpoint_node_ (uint32), maxM_, maxM0_, M_ (size_t),
// mult_ (double), ef_construction_ (size_t): 96 bytes. Every field must be what an index of `rows` float vectors of
// `dim` built with `m` has.
inline void check_hnsw_header(std::string_view file, uint32_t dim, int64_t rows, std::size_t m,
                              const std::string& where) {
  auto fail = [&](const std::string& what) {
    throw error(errc::format, where + ": " + what + " (not an index of " + std::to_string(rows) + " rows of dim " +
                                  std::to_string(dim) + ", M " + std::to_string(m) + ")");
  };
  if (file.size() < 96) fail("shorter than hnswlib's 96-byte header");
  std::size_t at = 0;
  auto u64 = [&] {
    uint64_t v;
    std::memcpy(&v, file.data() + at, 8);
    at += 8;
    return v;
  };
  const uint64_t offset_level0 = u64(), max_elements = u64(), count = u64(), per_element = u64(),
                 label_offset = u64(), offset_data = u64();
  int32_t max_level;
  uint32_t entry;
  std::memcpy(&max_level, file.data() + at, 4);
  std::memcpy(&entry, file.data() + at + 4, 4);
  at += 8;
  const uint64_t max_m = u64(), max_m0 = u64(), m_ = u64();
  double mult;
  std::memcpy(&mult, file.data() + at, 8);
  at += 8;
  const uint64_t links0 = 2 * m * 4 + 4;
  if (offset_level0 != 0) fail("offsetLevel0 " + std::to_string(offset_level0) + " is not 0");
  if (count != static_cast<uint64_t>(rows)) fail("holds " + std::to_string(count) + " elements");
  if (max_elements < count) fail("max_elements " + std::to_string(max_elements) + " below the element count");
  if (m_ != m || max_m != m || max_m0 != 2 * m) fail("M " + std::to_string(m_) + "/" + std::to_string(max_m) + "/" +
                                                       std::to_string(max_m0));
  if (offset_data != links0 || label_offset != links0 + 4ull * dim || per_element != label_offset + 8) {
    fail("element layout " + std::to_string(offset_data) + "/" + std::to_string(label_offset) + "/" +
         std::to_string(per_element));
  }
  if (max_level < 0 || max_level > 64) fail("max level " + std::to_string(max_level));
  if (count > 0 && entry >= count) fail("entry point " + std::to_string(entry));
  if (!std::isfinite(mult) || mult <= 0) fail("level multiplier is not a positive number");
  // The level-0 block must fit in the file before hnswlib seeks over it (count * per_element cannot overflow: both
  // are bounded by the checks above and rows comes from ids.txt, which is in memory).
  if (count * per_element > file.size() - 96) fail("level-0 data runs past the end of the file");
}

// After loadIndex: every level and list size in range, every neighbour and label a valid row, labels distinct.
template <class Graph>
void check_hnsw_graph(const Graph& g, int64_t rows, const std::string& where) {
  auto fail = [&](const std::string& what) { throw error(errc::format, where + ": " + what); };
  const auto n = static_cast<std::size_t>(rows);
  std::unordered_set<std::size_t> labels;
  for (std::size_t i = 0; i < n; ++i) {
    const int levels = g.element_levels_[i];
    if (levels < 0 || levels > g.maxlevel_) fail("element " + std::to_string(i) + " has level " + std::to_string(levels));
    for (int level = 0; level <= levels; ++level) {
      const auto* list = level == 0 ? g.get_linklist0(static_cast<unsigned>(i))
                                    : g.get_linklist(static_cast<unsigned>(i), level);
      uint16_t count16;  // hnswlib's getListCount: the first two bytes
      std::memcpy(&count16, list, 2);
      const std::size_t size = count16;
      if (size > (level == 0 ? g.maxM0_ : g.maxM_)) fail("element " + std::to_string(i) + " has " +
                                                          std::to_string(size) + " links at level " +
                                                          std::to_string(level));
      const auto* ids = reinterpret_cast<const uint32_t*>(list + 1);
      for (std::size_t k = 0; k < size; ++k) {
        if (ids[k] >= n) fail("element " + std::to_string(i) + " links to " + std::to_string(ids[k]));
      }
    }
    const std::size_t label = g.getExternalLabel(static_cast<unsigned>(i));
    if (label >= n || !labels.insert(label).second) fail("element " + std::to_string(i) + " has label " +
                                                         std::to_string(label));
  }
  if (n > 0 && g.element_levels_[g.enterpoint_node_] != g.maxlevel_) fail("the entry point is not on the top level");
}

}  // namespace hllm::storage
