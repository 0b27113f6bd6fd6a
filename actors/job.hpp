#pragma once
// The training job in one process: starts the router and the actors of the placement, then runs the configured
// stages as the coordinator (popularity, ID baseline, stage 1, cache fill, stage 2, test) and prints the results
// table. The configuration is the typed job spec (actors/job_spec.hpp), read from a job config by launch/job_config.
#include <cstdint>
#include <string>

#include "actors/job_spec.hpp"
#include "model/hllm_config.hpp"

namespace caf {
class actor_system_config;
}
namespace hllm::storage {
class dataset;
}

namespace hllm {

// The job config's [model] table over the named default (model::default_hllm_config) for a dataset and an item
// source (text: stage 1; id: the baseline; cache: stage 2). Throws hllm::error naming a missing or bad key. With
// model.item_llm_from and source text, the Item LLM's shape is the checkpoint's config.json; a hidden size other
// than model.hidden_size or a vocabulary other than the dataset's (`data_dir` names it in the error) is an error.
model::hllm_config job_model_config(const spec::job_spec& config, const storage::dataset& data,
                                    model::item_source source, const std::string& data_dir = {});

struct job_options {
  spec::job_spec spec;         // the whole job config
  std::uint64_t config_hash = 0;     // job_config::hash(): the job's identity (operational keys left out)
  std::uint64_t effective_hash = 0;  // of the whole config, operational keys included: every rank must agree
  std::string data_dir;        // prepared dataset
  std::string out_dir;         // checkpoints, cache shards, metrics.jsonl, results.json, results.md
  // Data-parallel trainer ranks (one process each). Rank 0 is the coordinator: it evaluates, writes checkpoints
  // and results and runs the cache fill; every rank trains. Ranks rendezvous through a TCPStore at
  // master_addr:master_port, where they also publish their routers' endpoints (the address book).
  int rank = 0;
  int world_size = 1;
  std::string master_addr = "127.0.0.1";
  std::uint16_t master_port = 29500;
  std::string host = "127.0.0.1";  // the interface this process's router and Gloo bind to
  int local_ranks = 1;             // ranks on this host (sizes the torch threads when job.threads = 0)
  // Where this rank's trainer and item encoders compute: "cpu" or "cuda:N", already resolved from train.device and
  // the local rank (model::resolve_device).
  std::string device = "cpu";
  // "never": start from scratch; "auto": continue from the newest valid checkpoint of out_dir/checkpoints (none:
  // start from scratch); otherwise the checkpoint directory to continue from (it must be valid).
  std::string resume = "never";
  // The `hllm-train` executable that worker processes run (placement.workers > 0): `hllm-train --worker SPEC`.
  std::string worker_executable;
  // The console's bearer token from `hllm train --monitor-token-file` (in memory only; never written or logged).
  // Empty: monitor.token of the config, else the environment variable HLLM_MONITOR_TOKEN, else none.
  std::string monitor_token;
};

// Runs the job; returns 0 on success. Throws hllm::error on what cannot go on (bad config, missing data).
int run_job(const job_options& o);

// A worker process (`hllm-train --worker SPEC`): hosts the loaders, samplers, cache shards or item encoders named
// in the JSON spec the coordinator wrote, behind its own router bound to the spec's endpoint, until SIGTERM.
int run_worker(const std::string& spec_path);

}  // namespace hllm
