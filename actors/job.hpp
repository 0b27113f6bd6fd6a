#pragma once
// The training job in one process: starts the router and the actors of the placement, then runs the configured
// stages as the coordinator (popularity, ID baseline, stage 1, cache fill, stage 2, test) and prints the results
// table. The configuration is the JSON tree of a job config (launch/job_config.hpp, launch/default_job.toml).
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace hllm {

struct job_options {
  nlohmann::json config;       // the whole job config
  std::uint64_t config_hash = 0;
  std::string data_dir;        // prepared dataset
  std::string out_dir;         // checkpoints, cache shards, metrics.jsonl, results.json, results.md
};

// Runs the job; returns 0 on success. Throws hllm::error on what cannot go on (bad config, missing data).
int run_job(const job_options& o);

}  // namespace hllm
