// `hllm train`: runs a training job (actors/job.hpp). Links libtorch, never sentencepiece.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <spdlog/spdlog.h>

#include "actors/job.hpp"
#include "launch/default_job.hpp"
#include "launch/job_config.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"

int main(int argc, char** argv) {
  std::string config_path, data_dir, out_dir = "hllm-job";
  std::vector<std::string> sets;
  int world = 1;
  bool print_config = false;
  CLI::App app{"hllm train: run a training job (stage 1, cache fill, stage 2, evaluation) on a prepared dataset",
               "hllm train"};
  app.add_option("--config", config_path, "job config (TOML); default: the embedded default job");
  app.add_option("--data", data_dir, "prepared dataset directory (hllm prepare)")->required();
  app.add_option("--out", out_dir, "job directory: checkpoints, cache, metrics.jsonl, results")->capture_default_str();
  app.add_option("--set", sets, "override a config value: section.key=value (repeatable)");
  app.add_option("--world", world, "trainer processes (multi-process jobs are not built yet: 1)")
      ->capture_default_str();
  app.add_flag("--print-config", print_config, "print the effective config as TOML and exit");
  CLI11_PARSE(app, argc, argv);
  try {
    auto cfg = hllm::launch::job_config::load(config_path, sets, hllm::launch::default_job_toml);
    if (print_config) {
      std::printf("%s", cfg.to_toml().c_str());
      return 0;
    }
    if (world != 1) {
      throw hllm::error(hllm::errc::invalid_input,
                        "--world " + std::to_string(world) + ": multi-process jobs are not built yet; run with --world 1");
    }
    spdlog::set_pattern("[%H:%M:%S] %v");
    hllm::job_options o;
    o.config = cfg.tree();
    o.config_hash = cfg.hash();
    o.data_dir = data_dir;
    o.out_dir = out_dir;
    std::filesystem::create_directories(out_dir);
    std::string toml = cfg.to_toml();
    hllm::storage::write_file_durably(out_dir + "/job.toml", toml.data(), toml.size());
    return hllm::run_job(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm train: error: %s\n", e.what());
    return 1;
  }
}
