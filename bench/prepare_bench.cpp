// Benchmark of `hllm prepare` at Pixel1M scale (1,000,000 users, 100,000 items, ~20,000,000 interactions):
// wall time, peak memory (ru_maxrss of the child), interactions/s parsed and items/s tokenized.
// usage: prepare_bench [--users N] [--items N] [--work DIR]; prints a Markdown table for docs/benchmarks.md.

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/child_process.hpp"
#include "storage/file_io.hpp"

namespace {

using hllm::bench::run_child;

}  // namespace

int main(int argc, char** argv) {
  std::string users = "1000000", items = "100000", work = "bench-out/prepare";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--users") == 0) users = argv[i + 1];
    if (std::strcmp(argv[i], "--items") == 0) items = argv[i + 1];
    if (std::strcmp(argv[i], "--work") == 0) work = argv[i + 1];
  }
  std::string bin = std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
  std::string csv = work + "/csv-" + users + "-" + items;
  if (!std::filesystem::exists(csv + "/items.csv")) {
    std::fprintf(stderr, "generating %s users x %s items with hllm synth ...\n", users.c_str(), items.c_str());
    auto g = run_child({bin + "/hllm-synth", "--out", csv, "--users", users, "--items", items, "--topics", "200",
                  "--min-length", "8", "--max-length", "32"});
    if (g.status != 0) return 1;
    std::fprintf(stderr, "synth: %.1f s, peak %.0f MiB\n", g.seconds, g.max_rss_kib / 1024.0);
  }
  std::fprintf(stderr, "running hllm prepare ...\n");
  auto r = run_child({bin + "/hllm-prepare", "--interactions", csv + "/interactions.csv", "--items", csv + "/items.csv",
                "--out", work + "/prepared", "--train-tokenizer", "8000", "--quiet"});
  if (r.status != 0) return 1;
  auto manifest = nlohmann::json::parse(hllm::storage::read_text_file(work + "/prepared/manifest.json"));
  const auto& rep = manifest.at("report");
  double rows = rep.at("rows_read").get<double>();
  double n_items = rep.at("items").get<double>();
  double parse_s = rep.at("parse_seconds").get<double>();
  double tok_s = rep.at("tokenize_seconds").get<double>();
  std::printf("| users | items | interactions | wall s | peak RSS MiB | parse interactions/s | tokenize items/s (incl. training the tokenizer) |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  std::printf("| %s | %.0f | %.0f | %.1f | %.0f | %.2f M | %.0f k |\n", users.c_str(), n_items,
              rep.at("interactions").get<double>(), r.seconds, r.max_rss_kib / 1024.0, rows / parse_s / 1e6,
              n_items / tok_s / 1e3);
  return 0;
}
