// `hllm index build|check`: the ANN index over an item export (storage/ann_index.hpp; hnswlib HNSW, cosine).
// Torch-free.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "storage/ann_index.hpp"
#include "storage/error.hpp"
#include "storage/export.hpp"
#include "storage/npy.hpp"
#include "storage/random.hpp"

namespace {

using namespace hllm;
namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string embeddings, out, index, queries;
  storage::ann_params params;
  std::size_t k = 10;
  int64_t sample = 1000;
  uint64_t seed = 2020;
  bool force = false;
};

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

int build(const options& o) {
  const auto t0 = clock_type::now();
  // Refuse an --out that holds anything but an index before the build (checked again when the index is swapped in).
  storage::check_replaceable(o.out, storage::ann_index_replace_policy(o.force));
  auto e = storage::read_export(o.embeddings);
  if (e.meta.value("kind", std::string()) != "items") {
    throw error(errc::invalid_input, o.embeddings + " is an export of " + e.meta.value("kind", std::string()) +
                                         ": index an item export (hllm export items)");
  }
  if (e.rows < 1) throw error(errc::invalid_input, o.embeddings + " holds no rows");
  auto idx = storage::ann_index::build(e.matrix.data(), e.rows, e.dim, o.params);
  const double build_s = seconds_since(t0);
  nlohmann::json extra{{"item_version", e.meta.value("item_version", std::string())},
                       {"embeddings", fs::absolute(o.embeddings).string()},
                       {"job", e.meta.value("job", std::string())}};
  idx.save(o.out, e.ids, extra, o.force);
  std::printf("hllm index build: %lld items x %u -> %s (HNSW M %zu, ef_construction %zu, ef_search %zu, %u threads; "
              "item version %s) in %.2f s (%.0f items/s)\n",
              static_cast<long long>(e.rows), e.dim, o.out.c_str(), o.params.m, o.params.ef_construction,
              o.params.ef_search, o.params.threads, extra["item_version"].get<std::string>().c_str(), build_s,
              static_cast<double>(e.rows) / std::max(build_s, 1e-9));
  return 0;
}

// Recall@k of the index against exact search over the export it was built from, and queries per second.
int check(const options& o, bool ef_given) {
  auto idx = storage::ann_index::load(o.index);
  if (ef_given) idx.set_ef_search(o.params.ef_search);
  const std::string emb = !o.embeddings.empty() ? o.embeddings : idx.meta().value("embeddings", std::string());
  auto e = storage::read_export(emb);
  if (e.rows != idx.rows() || e.dim != idx.dim()) {
    throw error(errc::mismatch, emb + " (" + std::to_string(e.rows) + " x " + std::to_string(e.dim) +
                                    ") is not what " + o.index + " was built from (" + std::to_string(idx.rows()) +
                                    " x " + std::to_string(idx.dim()) + ")");
  }
  std::vector<float> base = e.matrix;
  storage::l2_normalize_rows(base.data(), e.rows, e.dim);
  std::vector<float> queries;
  int64_t nq = 0;
  if (!o.queries.empty()) {
    auto q = storage::read_export(o.queries);
    if (q.dim != e.dim) throw error(errc::mismatch, o.queries + ": dim " + std::to_string(q.dim) + ", index " +
                                                        std::to_string(e.dim));
    nq = std::min<int64_t>(q.rows, o.sample);
    queries.assign(q.matrix.begin(), q.matrix.begin() + nq * q.dim);
  } else {
    // Rows of the export itself, chosen by a seeded draw.
    nq = std::min<int64_t>(e.rows, o.sample);
    hllm::rng draw(o.seed);
    for (int64_t i = 0; i < nq; ++i) {
      const auto r = static_cast<int64_t>(draw.below(static_cast<uint64_t>(e.rows)));
      queries.insert(queries.end(), e.matrix.begin() + r * e.dim, e.matrix.begin() + (r + 1) * e.dim);
    }
  }
  storage::l2_normalize_rows(queries.data(), nq, e.dim);
  const auto t0 = clock_type::now();
  std::vector<std::vector<storage::ann_hit>> got(nq);
  for (int64_t i = 0; i < nq; ++i) got[i] = idx.search(queries.data() + i * e.dim, o.k);
  const double ann_s = seconds_since(t0);
  const auto t1 = clock_type::now();
  int64_t hits = 0, total = 0;
  for (int64_t i = 0; i < nq; ++i) {
    auto want = storage::exact_top_k(base.data(), e.rows, e.dim, queries.data() + i * e.dim, o.k);
    for (const auto& w : want) {
      ++total;
      for (const auto& g : got[i]) hits += g.row == w.row;
    }
  }
  const double exact_s = seconds_since(t1);
  std::printf("hllm index check: %s: recall@%zu %.4f vs exact search over %lld queries; %.0f queries/s (ANN, ef %zu) "
              "vs %.0f queries/s (exact)\n",
              o.index.c_str(), o.k, static_cast<double>(hits) / std::max<int64_t>(total, 1),
              static_cast<long long>(nq), static_cast<double>(nq) / std::max(ann_s, 1e-9), idx.params().ef_search,
              static_cast<double>(nq) / std::max(exact_s, 1e-9));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App app{"hllm index: an ANN index (HNSW, cosine) over an item export, for hllm recommend", "hllm index"};
  app.require_subcommand(1);
  auto* b = app.add_subcommand("build", "build an index directory from an item export (hllm export items)");
  b->add_option("--embeddings", o.embeddings, "item export (.npy with .ids.txt and .meta.json beside it)")->required();
  b->add_option("--out", o.out, "index directory to write: created, or replaced atomically when it holds an index; "
                                "anything else (a job directory, exports) is refused (see --force)")
      ->required();
  b->add_flag("--force", o.force, "replace --out even when it is not an index (never the current directory or one "
                                  "above it)");
  b->add_option("--M", o.params.m, "HNSW graph degree")->check(CLI::Range(2, 256))->capture_default_str();
  b->add_option("--ef-construction", o.params.ef_construction, "HNSW candidate list while building")
      ->check(CLI::PositiveNumber)->capture_default_str();
  b->add_option("--ef-search", o.params.ef_search, "HNSW candidate list while searching (stored in the index)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  o.params.threads = std::max(1u, std::thread::hardware_concurrency());
  b->add_option("--threads", o.params.threads, "insertion threads (default: every core; 1: the same graph every "
                                               "time for the same rows)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  auto* c = app.add_subcommand("check", "recall@k of an index against exact search, and queries/s");
  c->add_option("--index", o.index, "index directory")->required();
  c->add_option("--embeddings", o.embeddings, "the item export it was built from (default: the one it names)");
  c->add_option("--queries", o.queries, "query export (e.g. hllm export users); default: rows of the item export");
  c->add_option("-k", o.k, "neighbours per query")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--sample", o.sample, "queries to run")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--ef-search", o.params.ef_search, "override the index's ef_search");
  CLI11_PARSE(app, argc, argv);
  try {
    return b->parsed() ? build(o) : check(o, c->count("--ef-search") > 0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm index: error: %s\n", e.what());
    return 1;
  }
}
