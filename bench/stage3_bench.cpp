// stage3_bench: the stage-3 numbers of docs/benchmarks.md. Torch-free.
//   1. ANN index (hnswlib HNSW, cosine) over N clustered item embeddings: build time, recall@10 against exact search,
//      queries/s of the index and of exact search, at several ef_search values.
//   2. Item export from an embedding cache: shard files (as the job writes them) -> X.npy + ids + fingerprints,
//      rows/s.
// usage: stage3_bench [--items 100000,1000000] [--dim 64] [--queries 200] [--threads 1 (build)] [--out DIR]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "storage/ann_index.hpp"
#include "storage/embedding_shard.hpp"
#include "storage/export.hpp"
#include "storage/synth.hpp"

using namespace hllm;
using clock_type = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

long peak_rss_mb() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  char line[256];
  long kb = 0;
  while (f && std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) kb = std::atol(line + 6);
  }
  if (f) std::fclose(f);
  return kb / 1024;
}

unsigned build_threads = 1;

void ann_rows(int64_t n, uint32_t dim, int64_t nq) {
  // One draw of n + nq rows: the first n are indexed, the rest are queries (near the items, not among them).
  auto all = storage::clustered_rows(n + nq, dim, std::max<int64_t>(n / 500, 10), 0.6, 2020);
  std::vector<float> base(all.begin(), all.begin() + n * dim), queries(all.begin() + n * dim, all.end());
  all.clear();
  all.shrink_to_fit();
  const auto t0 = clock_type::now();
  storage::ann_params params;
  params.threads = build_threads;
  auto idx = storage::ann_index::build(base.data(), n, dim, params);
  const double build_s = since(t0);
  std::vector<float> norm = base, q = queries;
  storage::l2_normalize_rows(norm.data(), n, dim);
  storage::l2_normalize_rows(q.data(), nq, dim);
  std::vector<std::vector<storage::ann_hit>> exact(nq);
  const auto t1 = clock_type::now();
  for (int64_t i = 0; i < nq; ++i) exact[i] = storage::exact_top_k(norm.data(), n, dim, q.data() + i * dim, 10);
  const double exact_qps = nq / since(t1);
  for (std::size_t ef : {16, 32, 64, 128, 256}) {
    idx.set_ef_search(ef);
    // Enough repeats for a stable queries/s; recall from the first pass.
    int64_t hits = 0;
    int64_t repeats = 0;
    const auto t2 = clock_type::now();
    do {
      for (int64_t i = 0; i < nq; ++i) {
        auto got = idx.search(q.data() + i * dim, 10);
        if (repeats == 0) hits += static_cast<int64_t>(storage::shared_rows(got, exact[i]));
      }
      ++repeats;
    } while (since(t2) < 1.0);
    const double qps = static_cast<double>(nq * repeats) / since(t2);
    std::printf("| %lld | %u | %zu | %.1f | %.4f | %.0f | %.0f | %.1fx | %ld |\n", static_cast<long long>(n), dim, ef,
                build_s, static_cast<double>(hits) / (nq * 10.0), qps, exact_qps, qps / exact_qps, peak_rss_mb());
    std::fflush(stdout);
  }
}

void export_rows(int64_t n, uint32_t dim, const std::string& dir) {
  const uint32_t shards = 4;
  const uint64_t version = 0x5eed;
  fs::create_directories(dir + "/cache");
  auto rows = storage::clustered_rows(n + 1, dim, 100, 0.5, 7);
  for (uint32_t s = 0; s < shards; ++s) {
    const storage::embedding_shard_header h{storage::embedding_dtype::f32, dim, s, shards,
                                            storage::shard_rows(n, s, shards), version};
    std::vector<uint8_t> presence(h.rows, 1);
    std::vector<float> body(h.rows * dim);
    for (uint64_t r = 0; r < h.rows; ++r) {
      std::memcpy(body.data() + r * dim, rows.data() + (r * shards + s) * dim, dim * sizeof(float));
    }
    storage::write_embedding_shard(dir + "/cache/shard-" + std::to_string(s) + "-of-4.emb", h, presence, body.data(),
                                   body.size() * sizeof(float));
  }
  const auto t0 = clock_type::now();
  auto cache = storage::cache_reader::open(dir + "/cache");
  auto m = cache.matrix(n);
  storage::export_data e;
  e.dim = dim;
  e.rows = n;
  e.matrix.assign(m.begin() + dim, m.end());
  for (int64_t i = 1; i <= n; ++i) {
    e.ids.push_back("item-" + std::to_string(i));
    int32_t v = static_cast<int32_t>(i);
    e.fingerprints.push_back(storage::row_fingerprint(cache.version(), e.ids.back(), &v, sizeof v));
  }
  e.meta = {{"kind", "items"}, {"item_version", cache.version()}};
  storage::write_export(dir + "/items.npy", e);
  const double s = since(t0);
  std::printf("| items from the cache (%u shards) | %lld | %u | %.2f | %.0f |\n", shards, static_cast<long long>(n), dim, s,
              n / s);
}

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string part;
  while (std::getline(ss, part, ',')) out.push_back(std::stoll(part));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> sizes{100000, 1000000};
  uint32_t dim = 64;
  int64_t nq = 200;
  std::string out = "bench-out/stage3";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--items") sizes = parse_list(argv[i + 1]);
    else if (a == "--dim") dim = static_cast<uint32_t>(std::atoi(argv[i + 1]));
    else if (a == "--queries") nq = std::atoll(argv[i + 1]);
    else if (a == "--out") out = argv[i + 1];
    else if (a == "--threads") build_threads = static_cast<unsigned>(std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: stage3_bench [--items 100000,1000000] [--dim 64] [--queries 200] [--threads 1] [--out DIR]\n");
      return 2;
    }
  }
  std::printf("ANN index (HNSW M 16, ef_construction 200; build on %u thread(s), queries on one; %lld queries drawn "
              "like the items, not in the index)\n\n",
              build_threads, static_cast<long long>(nq));
  std::printf("| items | dim | ef_search | build s | recall@10 vs exact | ANN queries/s | exact queries/s | speed-up | "
              "peak RSS MB |\n|---|---|---|---|---|---|---|---|---|\n");
  for (auto n : sizes) ann_rows(n, dim, nq);
  std::printf("\nItem export (cache shard files -> X.npy, X.ids.txt, X.fp.u64, X.meta.json)\n\n");
  std::printf("| export | rows | dim | seconds | rows/s |\n|---|---|---|---|---|\n");
  for (auto n : sizes) export_rows(n, dim, out + "/export-" + std::to_string(n));
  fs::remove_all(out);
  return 0;
}
