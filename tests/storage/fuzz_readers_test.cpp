// Bounded mutation fuzzing of the readers of files a user hands in: .npy, .safetensors, CSV (with the timestamp
// parser on every field), Python literals (pylit) and ANN index directories. Valid seeds are mutated (bit flips,
// byte changes, truncation, insertion, deletion, duplication, tokens and extreme numbers of the format) with a fixed
// seed; every reader must either parse or throw hllm::error, never crash, hang or throw anything else. Run under the
// sanitizer build (-DHLLM_SANITIZE=ON) to also catch out-of-bounds reads and UB. HLLM_FUZZ_ITERATIONS (default 2000)
// sets the mutations per reader; HLLM_FUZZ_SEED changes the seed.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "model/safetensors.hpp"
#include "storage/ann_index.hpp"
#include "storage/csv.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/npy.hpp"
#include "storage/number.hpp"
#include "storage/pylit.hpp"
#include "storage/timestamp.hpp"
#include "fuzz_util.hpp"
#include "test_util.hpp"

using namespace hllm;
namespace fs = std::filesystem;
using namespace hllm::fuzzing;



TEST(fuzz_readers, npy) {
  test::temp_dir tmp;
  std::vector<std::string> seeds;
  for (auto [r, c] : {std::pair<int64_t, int64_t>{3, 4}, {1, 1}, {0, 8}, {17, 3}}) {
    std::vector<float> m(static_cast<std::size_t>(r * c));
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(i) * 0.5f - 1.0f;
    storage::write_npy_f32(tmp / "seed.npy", m.data(), r, c);
    seeds.push_back(test::read_bytes(tmp / "seed.npy"));
    const auto back = storage::read_npy_f32(tmp / "seed.npy");  // the seeds themselves are valid
    ASSERT_EQ(back.rows, r);
    ASSERT_EQ(back.data, m);
  }
  const std::string path = tmp / "case.npy";
  auto o = fuzz("npy", seeds, {"'<f4'", "'<f8'", "'>f4'", "True", "False", "'shape'", "(1,)", "(2, 3, 4)", "(-1, 4)",
                               "\x93NUMPY", "\x02", "\x03"},
                [&](const std::string& bytes) {
                  put(path, bytes);
                  const auto m = storage::read_npy_f32(path);
                  // A parse is a consistent one: the shape matches the data.
                  ASSERT_GE(m.rows, 0);
                  ASSERT_GE(m.cols, 0);
                  ASSERT_EQ(static_cast<std::size_t>(m.rows * m.cols), m.data.size());
                });
  EXPECT_GT(o.refused, 0);
  EXPECT_GT(o.parsed, 0);  // some mutations (of the data section, of padding) still parse
}

TEST(fuzz_readers, npy_header_numbers_that_overflow_are_format_errors) {
  // rows * cols * 4 overflowing 64 bits wrapped to a small size before (std::stoll, unchecked product).
  test::temp_dir tmp;
  auto read_with_shape = [&](const std::string& shape, std::size_t data_bytes) {
    const std::string h = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }\n";
    std::string bytes("\x93NUMPY\x01\x00", 8);
    bytes += static_cast<char>(h.size() & 0xff);
    bytes += static_cast<char>(h.size() >> 8);
    bytes += h;
    bytes.append(data_bytes, '\0');
    test::write_text(tmp / "b.npy", bytes);
    try {
      storage::read_npy_f32(tmp / "b.npy");
    } catch (const hllm::error& e) {
      EXPECT_EQ(e.code(), errc::format) << e.what();
      return std::string(e.what());
    }
    return std::string("parsed");
  };
  // 2^62 rows of one float: 2^64 bytes, which wraps to 0 (an empty data section passed before).
  EXPECT_NE(read_with_shape("(4611686018427387904, 1)", 0).find("is negative or too large"), std::string::npos);
  EXPECT_NE(read_with_shape("(4294967296, 4294967296)", 0).find("is negative or too large"), std::string::npos);
  EXPECT_NE(read_with_shape("(99999999999999999999, 1)", 4).find("not a 2-D little-endian float32"),
            std::string::npos);
  EXPECT_NE(read_with_shape("(-1, 4)", 4).find("is negative or too large"), std::string::npos);
  EXPECT_NE(read_with_shape("(2, 1)", 4).find("4 data bytes, but shape (2, 1) needs 8"), std::string::npos);
  EXPECT_EQ(read_with_shape("(2, 1)", 8), "parsed");
  EXPECT_EQ(read_with_shape("(0, 3)", 0), "parsed");
}

TEST(fuzz_readers, safetensors) {
  test::temp_dir tmp;
  std::vector<float> f(12, 0.25f);
  std::vector<int64_t> l{1, -2, 3};
  std::vector<uint8_t> u(5, 7);
  model::write_safetensors(tmp / "seed.safetensors",
                           {{"a.weight", model::st_dtype::f32, {3, 4}, f.data(), f.size() * 4},
                            {"b", model::st_dtype::i64, {3}, l.data(), l.size() * 8},
                            {"c", model::st_dtype::u8, {5, 1}, u.data(), u.size()},
                            {"empty", model::st_dtype::bf16, {0, 4}, nullptr, 0}},
                           {{"format", "pt"}});
  const std::string seed = test::read_bytes(tmp / "seed.safetensors");
  ASSERT_EQ(model::safetensors_file::open(tmp / "seed.safetensors")->tensors().size(), 4u);
  const std::string path = tmp / "case.safetensors";
  auto o = fuzz("safetensors", {seed},
                {"\"F32\"", "\"F64\"", "\"BOOL\"", "\"X9\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"",
                 "\"__metadata__\"", "[4611686018427387904, 8]", "[-1]", "[1.5]", "{}", "null", "true"},
                [&](const std::string& bytes) {
                  put(path, bytes);
                  const auto file = model::safetensors_file::open(path);
                  // A parse is a safe one: every view lies inside the file and matches its shape and dtype.
                  for (const auto& [name, t] : file->tensors()) {
                    ASSERT_EQ(static_cast<uint64_t>(t.numel()) * model::element_size(t.dtype), t.bytes) << name;
                    ASSERT_LE(t.bytes, bytes.size()) << name;
                    uint64_t sum = 0;  // touch every byte (ASan sees a read outside the map)
                    for (std::size_t i = 0; i < t.bytes; ++i) sum += t.data[i];
                    (void)sum;
                  }
                });
  EXPECT_GT(o.refused, 0);
  EXPECT_GT(o.parsed, 0);
}

TEST(fuzz_readers, safetensors_shapes_that_overflow_are_format_errors) {
  test::temp_dir tmp;
  // numel = 2^62 * 4 wraps to 0 in 64 bits: with 0 data bytes the old check passed.
  const std::string header = R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})";
  std::string bytes(8, '\0');
  bytes[0] = static_cast<char>(header.size());
  bytes += header;
  test::write_text(tmp / "o.safetensors", bytes);
  try {
    model::safetensors_file::open(tmp / "o.safetensors");
    FAIL() << "an overflowing shape was accepted";
  } catch (const hllm::error& e) {
    EXPECT_EQ(e.code(), errc::format);
    EXPECT_NE(std::string(e.what()).find("tensor 't': byte count 0 does not match shape and dtype"), std::string::npos)
        << e.what();
  }
}

TEST(fuzz_readers, csv_and_timestamps) {
  const std::vector<std::string> seeds{
      "item_id,user_id,timestamp\n101,alice,1700000000\n102,alice,2021-07-12T09:30:00+08:00\n103,\"bob, jr\",1.6e9\n",
      "\xef\xbb\xbfitem_id,title,tag,description\r\n101,\"Sunset \"\"timelapse\"\"\",nature,\"Clouds,\nsea\"\r\n"
      "102,Cat video,pets,A cat falls asleep\r\n",
      "a,b,c\n\n\n1,2,3\n\"unterminated,4,5\n"};
  test::temp_dir tmp;
  int i = 0;
  auto o = fuzz("csv", seeds, {"\"\"", "\",\"", "2021-02-29", "1600031572.0", "-1.5", "9999-12-31T23:59:60Z"},
                [&](const std::string& bytes) {
                  auto read_all = [&](storage::csv_reader& r) {
                    int64_t calls = 0;
                    storage::timestamp_column col("fuzz.csv");
                    for (auto res = r.next(); res != storage::csv_reader::result::end; res = r.next()) {
                      // Every call consumes input: at most one call per byte (plus the end).
                      ASSERT_LE(++calls, static_cast<int64_t>(bytes.size()) + 1);
                      ASSERT_LE(r.position(), r.size());
                      if (res == storage::csv_reader::result::malformed) {
                        ASSERT_FALSE(r.error().empty());
                        continue;
                      }
                      for (auto f : r.fields()) {
                        storage::is_valid_utf8(f);
                        int64_t t = 0;
                        std::string why;
                        if (col.parse(f, r.line(), t, &why) != storage::timestamp_error::none) {
                          ASSERT_FALSE(why.empty()) << std::string(f);
                        }
                      }
                    }
                    col.note();  // may refuse mixed units with hllm::error
                  };
                  storage::csv_reader mem(bytes, "fuzz.csv");
                  read_all(mem);
                  if (++i % 10 == 0) {  // the memory-mapped path too (BOM, empty file)
                    put(tmp / "case.csv", bytes);
                    storage::csv_reader file(tmp / "case.csv");
                    read_all(file);
                  }
                });
  EXPECT_GT(o.parsed, 0);
  EXPECT_GT(o.refused, 0);  // mixed timestamp units
}

TEST(fuzz_readers, python_literals) {
  const std::vector<std::string> seeds{
      R"({'asin': '000100039X', 'title': "Bob's book", 'categories': [['Books']], 'salesRank': {'Books': 6334800}})",
      R"({'price': 12.5, 'related': {'also_bought': ('B1', 'B2')}, 'ok': True, 'n': None, 'big': 123L, 'set': {1, 2}})",
      R"([u'caf\xe9', b'\xc3\xa9', r'\d+', '\u00e9\U0001F600\101\n', -1e-3, nan, -inf])",
      R"({"asin": "0001", "title": "JSON \"quoted\" \ud83d\ude00", "x": [1, 2.5e10, null, true, false]})"};
  auto o = fuzz("pylit", seeds,
                {"'", "\"", "u'", "b'", "r'", "\\x", "\\u", "\\U", "\\U00110000", "\\ud800", "\\", "123L", "0x",
                 "1e999", "True", "None", "nan", "[[[[[[[[", "{{{{", "((((", ":"},
                [&](const std::string& text) { storage::parse_python_literal(text); });
  EXPECT_GT(o.parsed, 0);
  EXPECT_GT(o.refused, 0);
  // Deep nesting is an error, not a stack overflow.
  EXPECT_THROW(storage::parse_python_literal(std::string(100000, '[')), hllm::error);
}

namespace {

// A small saved index (50 rows, dim 8) and its three files.
struct index_files {
  std::string meta, ids, hnsw;
};

index_files saved_index(const std::string& dir) {
  const int64_t n = 50;
  const uint32_t dim = 8;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> g;
  std::vector<float> rows(static_cast<std::size_t>(n) * dim);
  for (float& x : rows) x = g(rng);
  std::vector<std::string> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back("item-" + std::to_string(i));
  storage::ann_params p;
  p.m = 4;
  p.ef_construction = 20;
  storage::ann_index::build(rows.data(), n, dim, p).save(dir, ids, {{"item_version", "v"}});
  return {test::read_bytes(dir + "/meta.json"), test::read_bytes(dir + "/ids.txt"),
          test::read_bytes(dir + "/index.hnsw")};
}

void load_and_search(const std::string& dir) {
  auto idx = storage::ann_index::load(dir);
  ASSERT_EQ(static_cast<std::size_t>(idx.rows()), idx.ids().size());
  // load checks meta.json's dim against the graph's element layout: whatever loads can be searched.
  std::vector<float> q(idx.dim(), 0.5f);
  for (const auto& hit : idx.search(q.data(), 5)) {
    ASSERT_GE(hit.row, 0);
    ASSERT_LT(hit.row, idx.rows());
  }
}

}  // namespace

TEST(fuzz_readers, ann_index_directories) {
  test::temp_dir tmp;
  const index_files seed = saved_index(tmp / "seed");
  load_and_search(tmp / "seed");
  const std::string dir = tmp / "case";
  fs::create_directories(dir);
  std::mt19937_64 rng(base_seed() ^ 0xa22);
  const std::vector<std::string> tokens{"\"dim\"", "\"rows\"", "\"M\"", "\"bytes\"", "\"xxh3_64\"",
                                        "\"hllm-ann-index\"", "1.5", "null", "{}", "[]", "\n", "4294967296"};
  // Each case damages one of the three files: meta.json's sizes and checksums must catch damage to the other two
  // before hnswlib reads them, and meta.json itself is checked field by field.
  auto o = run_cases("ann-index", [&](int i) {
    std::string meta = seed.meta, ids = seed.ids, hnsw = seed.hnsw;
    std::string& victim = i % 3 == 0 ? meta : i % 3 == 1 ? ids : hnsw;
    victim = mutate(victim, rng, tokens);
    put(dir + "/meta.json", meta);
    put(dir + "/ids.txt", ids);
    put(dir + "/index.hnsw", hnsw);
    load_and_search(dir);
  });
  EXPECT_GT(o.refused, 0);
  EXPECT_GT(o.parsed, 0);  // e.g. a changed ef_search or item_version in meta.json still loads
}

// meta.json has no checksum of its own: its dim must be checked against the graph (hnswlib's element layout) before
// a search reads dim floats per row (storage/ann_index.cpp load() calls check_hnsw_header, storage/hnsw_check.hpp).
TEST(fuzz_readers, ann_index_meta_dim_must_match_the_graph) {
  test::temp_dir tmp;
  const index_files seed = saved_index(tmp / "idx");
  for (uint32_t dim : {4u, 16u, 4096u}) {
    auto meta = nlohmann::json::parse(seed.meta);
    meta["dim"] = dim;
    put(tmp / "idx/meta.json", meta.dump());
    try {
      storage::ann_index::load(tmp / "idx");
      ADD_FAILURE() << "meta.json dim " << dim << " accepted for a graph of 8-float vectors";
    } catch (const hllm::error& e) {
      EXPECT_EQ(e.code(), errc::format) << e.what();
    }
  }
}
