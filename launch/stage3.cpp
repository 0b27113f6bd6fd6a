#include "launch/stage3.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <unordered_map>

#include <torch/torch.h>

#include "launch/job_config.hpp"
#include "model/batching.hpp"
#include "model/hllm.hpp"
#include "storage/error.hpp"
#include "storage/job_checkpoint.hpp"
#include "storage/file_io.hpp"

namespace hllm::stage3 {
namespace fs = std::filesystem;

namespace {

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool is_checkpoint(const std::string& dir) {
  return storage::path_exists(dir + "/config.json") && storage::path_exists(dir + "/model.safetensors");
}

}  // namespace

job_info open_job(const std::string& job_dir, const std::string& data_override, const std::string& checkpoint_override) {
  if (!fs::is_directory(job_dir)) throw error(errc::not_found, "job directory '" + job_dir + "' does not exist");
  job_info j;
  j.job_dir = job_dir;
  j.cache_dir = job_dir + "/cache";
  j.item_checkpoint = job_dir + "/stage1/best";
  if (!is_checkpoint(j.item_checkpoint)) {
    throw error(errc::not_found, "job '" + job_dir + "' has no stage-1 checkpoint (" + j.item_checkpoint +
                                     "): train it first (hllm train ... --resume auto)");
  }
  if (!data_override.empty()) {
    j.data_dir = data_override;
  } else if (storage::path_exists(job_dir + "/dataset")) {
    j.data_dir = trim(storage::read_text_file(job_dir + "/dataset"));
  } else {
    throw error(errc::not_found, "job '" + job_dir + "' does not name its dataset (no " + job_dir +
                                     "/dataset file, written by hllm train): give --data");
  }
  if (!checkpoint_override.empty()) {
    if (!is_checkpoint(checkpoint_override)) {
      throw error(errc::not_found, "'" + checkpoint_override + "' is not a checkpoint (config.json + model.safetensors)");
    }
    j.user_checkpoint = checkpoint_override;
  } else {
    j.user_checkpoint = is_checkpoint(job_dir + "/stage2/best") ? job_dir + "/stage2/best" : j.item_checkpoint;
  }
  if (storage::path_exists(job_dir + "/job.toml")) {
    auto cfg = launch::job_config::from_toml(storage::read_text_file(job_dir + "/job.toml"), job_dir + "/job.toml");
    j.max_history = cfg.spec().eval.max_history;
  }
  return j;
}


std::string item_version(const job_info& j) { return storage::checkpoint_version_hex(j.item_checkpoint); }

std::vector<int32_t> latest_history(const storage::dataset& d, int64_t user, int64_t max_history) {
  auto seq = d.user_sequence(user);
  const std::size_t start = seq.size() > static_cast<std::size_t>(max_history) ? seq.size() - max_history : 0;
  return std::vector<int32_t>(seq.begin() + start, seq.end());
}

std::vector<int64_t> latest_times(const storage::dataset& d, int64_t user, int64_t max_history) {
  auto t = d.user_times(user);
  const std::size_t start = t.size() > static_cast<std::size_t>(max_history) ? t.size() - max_history : 0;
  return std::vector<int64_t>(t.begin() + start, t.end());
}

int run_sibling(const std::string& command, const std::vector<std::string>& args) {
  const std::string exe = (fs::read_symlink("/proc/self/exe").parent_path() / ("hllm-" + command)).string();
  std::vector<std::string> all{exe};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw error(errc::io, "cannot start " + exe + ": fork failed");
  if (pid == 0) {
    ::execv(exe.c_str(), argv.data());
    std::fprintf(stderr, "cannot run %s\n", exe.c_str());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int64_t find_user(const storage::dataset& d, const std::string& raw_id) {
  for (int64_t u = 0; u < d.num_users(); ++u) {
    if (d.raw_user_id(u) == raw_id) return u;
  }
  throw error(errc::not_found, "user '" + raw_id + "' is not in the dataset " + d.dir() + " (" +
                                   std::to_string(d.num_users()) + " users)");
}

struct user_encoder::impl {
  model::recommender net{nullptr};
  const storage::cache_reader* cache = nullptr;
  uint32_t dim = 0;
};

user_encoder::user_encoder(const std::string& checkpoint_dir, const storage::cache_reader& cache, int threads)
    : impl_(std::make_unique<impl>()) {
  torch::set_num_threads(std::max(1, threads));
  impl_->net = model::load_recommender(checkpoint_dir);
  impl_->net->eval();
  impl_->cache = &cache;
  impl_->dim = static_cast<uint32_t>(impl_->net->config().user_llm.hidden_size);
  if (impl_->dim != cache.dim()) {
    throw error(errc::mismatch, checkpoint_dir + ": User LLM hidden size " + std::to_string(impl_->dim) +
                                    ", the embedding cache's rows have " + std::to_string(cache.dim()));
  }
}

user_encoder::~user_encoder() = default;

uint32_t user_encoder::dim() const { return impl_->dim; }

std::vector<float> user_encoder::embed(const std::vector<std::vector<int32_t>>& histories,
                                       const std::vector<std::vector<int64_t>>& times, int64_t chunk) const {
  if (!times.empty() && times.size() != histories.size()) {
    throw error(errc::invalid_input, "user embedding: times and histories differ in length");
  }
  const auto n = static_cast<int64_t>(histories.size());
  const uint32_t h = impl_->dim;
  std::vector<float> out(static_cast<std::size_t>(n) * h);
  torch::NoGradGuard no_grad;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t rows = std::min(chunk, n - start);
    // Only the rows this chunk reads: a compact item matrix (row 0 = padding) and histories renumbered into it.
    std::unordered_map<int32_t, int32_t> compact;
    std::vector<int32_t> order;
    model::eval_set e;
    for (int64_t r = start; r < start + rows; ++r) {
      if (histories[r].empty()) throw error(errc::invalid_input, "user embedding: an empty history");
      for (int32_t item : histories[r]) {
        auto [it, fresh] = compact.emplace(item, static_cast<int32_t>(order.size() + 1));
        if (fresh) order.push_back(item);
        e.history.push_back(it->second);
      }
      if (!times.empty()) e.history_times.insert(e.history_times.end(), times[r].begin(), times[r].end());
      e.history_offsets.push_back(e.history.size());
      e.mask_offsets.push_back(0);
      e.targets.push_back(0);
      e.users.push_back(r);
    }
    auto items = torch::zeros({static_cast<int64_t>(order.size()) + 1, static_cast<int64_t>(h)});
    float* m = items.data_ptr<float>();
    for (std::size_t i = 0; i < order.size(); ++i) impl_->cache->row(order[i], m + (i + 1) * h);
    auto users = impl_->net->user_embeddings(items, e).contiguous();
    std::copy(users.data_ptr<float>(), users.data_ptr<float>() + rows * h, out.begin() + start * h);
  }
  return out;
}

}  // namespace hllm::stage3
