#include "actors/job_runner.hpp"

namespace hllm {
namespace job_internal {

std::string metrics_cell(const std::optional<model::ranking_metrics>& m, int k, bool ndcg) {
  if (!m || m->users == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", ndcg ? m->ndcg[k] : m->recall[k]);
  return buf;
}

void job_runner::record(const std::string& name, const std::vector<int64_t>& ranks) {
  result_row r;
  r.model = name;
  r.all = model::summarize_ranks(ranks);
  r.cold = model::summarize_ranks(ranks, test_cold_);
  rows_[name] = r;
}

// Test metrics of the HLLM models, evaluated against the cached item matrix.
void job_runner::test() {
  if (!cfg_.job.runs("stage1") && !fs::exists(opt_.out_dir + "/stage1/best/model.safetensors")) {
    spdlog::info("test: no stage-1 model in this plan or on disk; the table holds the rows that ran");
    return;
  }
  if (!cfg_.job.runs("cache") && !cfg_.job.runs("stage2")) {
    // No embedding cache in this plan: stage 1 ranks with its own Item LLM encoding every item (the same item
    // vectors the cache would hold).
    auto s1 = model::trainer::load(stage1_checkpoint(), texts_, {}, opt_.device);
    record("hllm-stage1", s1.ranks(test_));
    return;
  }
  auto matrix = cache_matrix();
  span<const float> cache(matrix.data(), matrix.size());
  auto stage1_cfg = job_model_config(cfg_, data_, model::item_source::cache);
  model::train_config tc;
  tc.threads = threads_;
  model::trainer s1(stage1_cfg, tc, texts_, cache);
  s1.load_weights_from(stage1_checkpoint());
  record("hllm-stage1", s1.ranks(test_));
  std::string s2 = stage2_dir_.empty() ? opt_.out_dir + "/stage2/best" : stage2_dir_;
  if (fs::exists(s2 + "/model.safetensors")) {
    auto net = model::trainer::load(s2, texts_, cache, opt_.device);
    record("hllm-stage2", net.ranks(test_));
  }
}

// How the Item LLM of a text row started, with model.item_llm_from set ("" otherwise, and for the other rows): the
// table must say which stage-1 row is the pretrained one.
std::string item_llm_start(const spec::job_spec& cfg, const std::string& row) {
  if (cfg.model.item_llm_from.empty()) return "";
  if (row == "hllm-stage1-random") return "random Item LLM";
  if (row != "hllm-stage1" && row != "hllm-frozen") return "";
  fs::path dir = fs::path(cfg.model.item_llm_from).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // "DIR/"
  return "pretrained Item LLM: " + dir.filename().string();
}

void job_runner::write_results() {
  std::ostringstream md;
  md << "| model | split | R@10 | R@50 | R@200 | N@10 | N@50 | N@200 |\n"
     << "|---|---|---|---|---|---|---|---|\n";
  json rows = json::array();
  for (const char* name : {"popularity", "text-only", "id-baseline", "hllm-stage1", "hllm-stage1-random", "hllm-frozen",
                           "hllm-stage2"}) {
    auto it = rows_.find(name);
    if (it == rows_.end()) continue;
    const std::string start = item_llm_start(cfg_, name);
    for (const auto& [split, m] : {std::pair{"all", it->second.all}, std::pair{"cold", it->second.cold}}) {
      md << "| " << name << (start.empty() ? "" : " (" + start + ")") << " | " << split;
      json j{{"model", name}, {"split", split}, {"users", m ? m->users : 0}};
      if (!start.empty()) j["item_llm"] = start;
      for (int k : {1, 2, 3}) md << " | " << metrics_cell(m, k, false);
      for (int k : {1, 2, 3}) md << " | " << metrics_cell(m, k, true);
      md << " |\n";
      if (m && m->users > 0) {
        for (int k = 0; k < 4; ++k) {
          j["R@" + std::to_string(model::ranking_ks[k])] = m->recall[k];
          j["N@" + std::to_string(model::ranking_ks[k])] = m->ndcg[k];
        }
      }
      rows.push_back(j);
    }
  }
  std::string table = md.str();
  // How each trained model ended (STAGE/training.json): optimizer steps, and whether it ran all its epochs, was
  // stopped by patience or hit its step cap.
  std::ostringstream tr;
  json training = json::object();
  for (const auto& [stage, model_name] : trained_models) {
    const std::string path = opt_.out_dir + "/" + stage + "/training.json";
    if (!rows_.count(model_name) || !fs::exists(path)) continue;
    json t;
    try {
      t = json::parse(storage::read_text_file(path));
    } catch (const std::exception& e) {
      spdlog::warn("results: cannot read {}: {}", path, e.what());
      continue;
    }
    training[model_name] = t;
    tr << "| " << model_name << " | " << t.value("steps", int64_t{0}) << " | "
       << t.value("stopped_by", std::string("-")) << " | " << t.value("best_step", int64_t{-1}) << " | "
       << t.value("validations", int64_t{0}) << " |\n";
  }
  json out{{"split", "test"}, {"scale", "x100"}, {"rows", rows}, {"trainer_samples_per_second", speeds_},
           {"training", training},
           {"config_hash", hex(opt_.config_hash)}, {"cache_version", version_}};
  std::string text = out.dump(2) + "\n";
  storage::write_file_durably(opt_.out_dir + "/results.json", text.data(), text.size());
  storage::write_file_durably(opt_.out_dir + "/results.md", table.data(), table.size());
  std::printf("\nTest results (x100; %zu users, %lld with a cold target):\n\n%s\n", test_.targets.size(),
              static_cast<long long>(std::count(test_cold_.begin(), test_cold_.end(), true)), table.c_str());
  if (!tr.str().empty()) {
    std::printf(
        "Training (optimizer steps; stopped by: epochs = ran them all, patience = early stopping, cap = "
        "max_steps):\n\n| model | steps | stopped by | best at step | validations |\n|---|---|---|---|---|\n%s\n",
        tr.str().c_str());
  }
  std::fflush(stdout);
}

}  // namespace job_internal

}  // namespace hllm
