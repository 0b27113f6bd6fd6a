// `hllm checkpoint list|verify|digest`: inspects job checkpoints (storage/job_checkpoint.hpp) without torch.
//   list JOB       every checkpoint under JOB/checkpoints, newest first, with its position and validity
//   verify JOB|CKPT  checks manifests and checksums; exit 1 when any checkpoint is bad or there is none
// A path that does not exist or holds no JOB/checkpoints (nor, for verify, a checkpoint's manifest) is an error
// (exit 1, one line), never "0 checkpoints".
//   digest CKPT|DIR  one XXH3 over every parameter tensor's name, dtype, shape and bytes, printed as the last line:
//                  of a job checkpoint (CKPT/trainer), a trainer checkpoint (DIR/model.safetensors), or a job
//                  directory's final parameters (the best of its last trained stage: stage2, stage1, baseline)
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>

#include "model/safetensors.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/job_checkpoint.hpp"

namespace {

namespace fs = std::filesystem;
using namespace hllm;
namespace job_checkpoint = hllm::storage::job_checkpoint;

bool is_file(const std::string& p) { return fs::is_regular_file(p); }

// The model.safetensors a path stands for.
std::string model_file_of(const std::string& path) {
  if (is_file(path)) return path;
  for (const char* rel : {"/trainer/model.safetensors", "/model.safetensors", "/stage2/best/model.safetensors",
                          "/stage1/best/model.safetensors", "/baseline/best/model.safetensors"}) {
    if (is_file(path + rel)) return path + rel;
  }
  throw error(errc::not_found, "no model.safetensors for '" + path +
                                   "' (a job checkpoint, a trainer checkpoint or a job directory with a stage best)");
}

// Hash of per-tensor records (name, dtype, shape, XXH3 of the bytes) in name order: any change of any parameter,
// its type or its shape changes the digest; file layout and metadata do not.
std::string digest(const std::string& file) {
  auto f = model::safetensors_file::open(file);
  std::string records;
  for (const auto& [name, t] : f->tensors()) {
    records += name;
    records += '\0';
    records += model::to_string(t.dtype);
    for (int64_t d : t.shape) records += ',' + std::to_string(d);
    records += '\0';
    records += storage::hash_hex(storage::hash_bytes(t.data, t.bytes));
    records += '\n';
  }
  return storage::hash_hex(storage::hash_bytes(records.data(), records.size()));
}

std::string position(const nlohmann::json& s) {
  if (s.is_null()) return "?";
  return s.value("stage", "?") + " epoch " + std::to_string(s.value("epoch", int64_t{-1})) + " step " +
         std::to_string(s.value("epoch_step", int64_t{-1})) + " (" + std::to_string(s.value("steps_done", int64_t{-1})) +
         " steps done)";
}

// A path that is neither a job directory with checkpoints nor (for verify) one checkpoint is an error, never an
// empty listing: `verify /no/such/dir` must not look like a job whose checkpoints are all fine.
void require_checkpoints(const std::string& path, bool verify_only) {
  if (!fs::exists(path)) throw error(errc::not_found, "'" + path + "' does not exist");
  if (!fs::is_directory(path)) {
    throw error(errc::invalid_input, "'" + path + "' is not a directory (a job directory" +
                                         std::string(verify_only ? " or one checkpoint directory" : "") + ")");
  }
  if (!fs::is_directory(job_checkpoint::root_of(path))) {
    throw error(errc::not_found, "'" + path + "' holds no job checkpoints (no " + job_checkpoint::root_of(path) +
                                     (verify_only ? " and no manifest.json of a checkpoint" : "") + ")");
  }
}

int list(const std::string& job, bool verify_only) {
  if (verify_only && fs::exists(job + "/" + job_checkpoint::manifest_name)) {
    std::string problem = job_checkpoint::check(job);
    std::printf("%s: %s\n", job.c_str(), problem.empty() ? "ok" : problem.c_str());
    return problem.empty() ? 0 : 1;
  }
  require_checkpoints(job, verify_only);
  auto all = job_checkpoint::list(job);
  if (verify_only && all.empty()) {
    throw error(errc::not_found, "no checkpoints under " + job_checkpoint::root_of(job) + " (nothing to verify)");
  }
  std::string latest = job_checkpoint::latest(job);
  int bad = 0;
  for (const auto& c : all) {
    bad += !c.problem.empty();
    std::printf("%-28s serial %-4lld %-44s %s%s\n", c.name.c_str(), static_cast<long long>(c.serial),
                position(c.state).c_str(), c.problem.empty() ? "ok" : ("BAD: " + c.problem).c_str(),
                c.name == latest ? "  <- latest" : "");
  }
  if (all.empty()) std::printf("no checkpoints under %s\n", job_checkpoint::root_of(job).c_str());
  if (verify_only) std::printf("%zu checkpoints, %d bad\n", all.size(), bad);
  return verify_only && bad > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hllm checkpoint: list, verify and digest job checkpoints", "hllm checkpoint"};
  app.require_subcommand(1);
  std::string dir;
  auto* l = app.add_subcommand("list", "list JOB/checkpoints, newest first");
  l->add_option("DIR", dir, "job directory")->required();
  auto* v = app.add_subcommand("verify", "check manifests and checksums (exit 1 when one is bad or there is none)");
  v->add_option("DIR", dir, "job directory or one checkpoint directory")->required();
  auto* d = app.add_subcommand("digest", "one hash over every parameter tensor (last line of the output)");
  d->add_option("CKPT", dir, "job checkpoint, trainer checkpoint, model.safetensors or job directory")->required();
  CLI11_PARSE(app, argc, argv);
  try {
    if (l->parsed()) return list(dir, false);
    if (v->parsed()) return list(dir, true);
    std::string file = model_file_of(dir);
    std::printf("parameters: %s\n%s\n", file.c_str(), digest(file).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm checkpoint: error: %s\n", e.what());
    return 1;
  }
}
