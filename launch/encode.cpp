// `hllm encode`: the embedding of every item of a prepared dataset, from a Hugging Face Llama checkpoint or a
// trained HLLM checkpoint, written as X.npy (row i = dense item id i, row 0 zeros) and X.ids.txt (raw ids of rows
// 1..n). A trained checkpoint is encoded by item-encoder actors through embedding-cache shards (the job's cache
// fill, in this process); a Hugging Face checkpoint by a plain loop.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <caf/all.hpp>

#include "actors/cache_fill.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "actors/item_encoder.hpp"
#include "actors/router.hpp"
#include "model/hllm.hpp"
#include "model/npy.hpp"
#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "storage/random.hpp"

namespace {

using namespace hllm;

struct encode_options {
  std::string data, hf_model, checkpoint, out, pooling = "item";
  int64_t batch = 256;
  int threads = 2;
  bool bf16 = false;
  bool verify = true;
  uint64_t seed = 2020;
  int encoders = 1;        // item encoder actors (--checkpoint)
  int shards = 1;          // embedding-cache shard actors the rows go through
};

// Token ids must index the model's vocabulary: a dataset tokenized for another model fails here, not in a gather.
void check_vocabulary(const storage::dataset& d, int64_t vocab, const std::string& model) {
  const auto tokens = d.item_tokens_all();
  const int32_t max_id = tokens.empty() ? 0 : *std::max_element(tokens.begin(), tokens.end());
  if (max_id >= vocab) {
    throw error(errc::mismatch, d.dir() + ": token id " + std::to_string(max_id) + " is outside the vocabulary (" +
                                    std::to_string(vocab) + ") of " + model);
  }
}

torch::Tensor encode_hf(const storage::dataset& d, const encode_options& o) {
  auto llm = model::load_hf_llama(o.hf_model);
  check_vocabulary(d, llm->config().vocab_size, o.hf_model);
  const auto pooling = o.pooling == "mean" ? model::item_pooling::mean : model::item_pooling::item_token;
  model::item_llm item(llm->config(), d.info().max_text_tokens, pooling);
  // A Hugging Face checkpoint has no [ITEM] vector: it gets the seeded N(0, 0.02) initialisation (docs/model.md).
  item->init_random(stream_seed({o.seed, 1}));
  item->model = item->replace_module("model", llm);
  if (o.bf16) {
    item->model->set_compute_dtype(torch::kBFloat16);
  }
  torch::NoGradGuard no_grad;
  const auto texts = model::item_texts_of(d);
  const int64_t n = d.num_items();
  auto out = torch::zeros({n + 1, llm->config().hidden_size});
  for (int64_t start = 1; start <= n; start += o.batch) {
    std::vector<int32_t> ids;
    for (int64_t i = start; i < std::min(start + o.batch, n + 1); ++i) {
      ids.push_back(static_cast<int32_t>(i));
    }
    out.narrow(0, start, static_cast<int64_t>(ids.size())).copy_(item->encode(texts, ids));
  }
  return out;
}

// A trained HLLM checkpoint is encoded by the job's actors: item encoders (each holding the frozen model) take
// work units and put rows into embedding-cache shards, from which the matrix is read back, all in this process.
std::vector<float> encode_checkpoint(const storage::dataset& d, const encode_options& o, uint32_t& dim) {
  const auto cfg = model::read_checkpoint_config(o.checkpoint);
  if (cfg.num_items != d.num_items()) {
    throw error(errc::mismatch, o.checkpoint + ": trained for " + std::to_string(cfg.num_items) +
                                    " items, the dataset " + d.dir() + " has " + std::to_string(d.num_items()));
  }
  if (cfg.source == model::item_source::cache) {
    throw error(errc::invalid_input, o.checkpoint + ": a stage-2 checkpoint holds no item encoder; encode with "
                                                    "the stage-1 checkpoint instead");
  }
  if (cfg.source == model::item_source::text) {
    check_vocabulary(d, cfg.item_llm.vocab_size, o.checkpoint);
  }
  caf::actor_system_config caf_cfg;
  configure_actor_system(caf_cfg);
  caf::actor_system sys{caf_cfg};
  router_config rc;
  rc.bind = {};
  auto router = spawn_router(sys, rc);
  std::vector<addressable_actor> actors;
  // The actor system waits for every actor when it goes: stop them on every way out, errors included.
  struct stop_all {
    std::vector<addressable_actor>& actors;
    router_actor& router;
    ~stop_all() {
      for (auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(router, caf::exit_reason::user_shutdown);
    }
  } stopper{actors, router};
  const std::string version = checkpoint_version_hex(o.checkpoint);
  for (int i = 0; i < o.shards; ++i) {
    embedding_cache_shard_options so;
    so.name = "cache-shard-" + std::to_string(i);
    so.shard = static_cast<uint32_t>(i);
    so.shard_count = static_cast<uint32_t>(o.shards);
    so.num_items = d.num_items();
    actors.push_back(spawn_embedding_cache_shard(sys, router, so));
  }
  cache_fill_options fo;
  fo.sender = "encode";
  for (int i = 0; i < o.encoders; ++i) {
    item_encoder_options eo;
    eo.name = "encoder-" + std::to_string(i);
    eo.dataset_dir = d.dir();
    eo.checkpoint_dir = o.checkpoint;
    eo.model_version = version;
    eo.cache_shards = static_cast<uint32_t>(o.shards);
    eo.threads = static_cast<uint32_t>(std::max(1, o.threads / o.encoders));
    eo.verify_dataset = false;  // main() opened and verified it
    actors.push_back(spawn_item_encoder(sys, router, eo));
    fo.encoders.push_back(eo.name);
  }
  fo.shards = o.shards;
  fo.num_items = d.num_items();
  fo.unit_items = o.batch;
  fo.version = version;
  fill_cache(sys, router, fo);
  return fetch_cache_matrix(sys, router, "encode", {}, o.shards, d.num_items(), version, dim);
}

void write_ids(const storage::dataset& d, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    for (int64_t i = 1; i <= d.num_items(); ++i) {
      out << d.raw_item_id(static_cast<int32_t>(i)) << '\n';
    }
    if (!out) {
      throw error(errc::io, "cannot write " + tmp);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw error(errc::io, "cannot rename " + tmp + " -> " + path);
  }
}

std::string ids_path(const std::string& npy) {
  const auto stem = npy.size() > 4 && npy.compare(npy.size() - 4, 4, ".npy") == 0 ? npy.substr(0, npy.size() - 4)
                                                                                    : npy;
  return stem + ".ids.txt";
}

}  // namespace

int main(int argc, char** argv) {
  encode_options o;
  CLI::App app{"hllm encode: the embedding of every item of a prepared dataset (X.npy + X.ids.txt)", "hllm encode"};
  app.add_option("--data", o.data, "prepared dataset directory (hllm prepare)")->required();
  auto* hf = app.add_option("--hf-model", o.hf_model, "Hugging Face Llama checkpoint directory");
  auto* ck = app.add_option("--checkpoint", o.checkpoint, "trained HLLM checkpoint directory");
  hf->excludes(ck);
  app.add_option("--pooling", o.pooling, "with --hf-model: item ([ITEM] token) or mean (over the text tokens)")
      ->check(CLI::IsMember({"item", "mean"}))
      ->capture_default_str();
  app.add_option("--out", o.out, "output .npy path; raw ids go to <out without .npy>.ids.txt")->required();
  app.add_option("--batch", o.batch, "items per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", o.threads, "torch threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the [ITEM] vector for --hf-model")->capture_default_str();
  app.add_flag("--bf16", o.bf16, "run the matmuls in bf16 (--hf-model)");
  app.add_option("--encoders", o.encoders, "with --checkpoint: item encoder actors sharing the work")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--shards", o.shards, "with --checkpoint: embedding-cache shard actors the rows go through")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("!--no-verify", o.verify, "skip the dataset checksum verification");
  CLI11_PARSE(app, argc, argv);
  if (o.hf_model.empty() == o.checkpoint.empty()) {
    std::fprintf(stderr, "hllm encode: give exactly one of --hf-model and --checkpoint\n");
    return 2;
  }
  try {
    torch::set_num_threads(o.threads);
    const auto t0 = std::chrono::steady_clock::now();
    auto d = storage::dataset::open(o.data, o.verify);
    int64_t dim = 0;
    if (o.hf_model.empty()) {
      uint32_t d32 = 0;
      auto m = encode_checkpoint(d, o, d32);
      dim = d32;
      model::write_npy_f32(o.out, m.data(), d.num_items() + 1, dim);
    } else {
      auto x = encode_hf(d, o).contiguous();
      dim = x.size(1);
      model::write_npy_f32(o.out, x.data_ptr<float>(), x.size(0), x.size(1));
    }
    write_ids(d, ids_path(o.out));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("hllm encode: %lld items x %lld -> %s in %.1f s (%.0f items/s)\n",
                static_cast<long long>(d.num_items()), static_cast<long long>(dim), o.out.c_str(), s,
                static_cast<double>(d.num_items()) / s);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm encode: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
