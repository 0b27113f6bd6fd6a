// `hllm encode`: the embedding of every item of a prepared dataset, from a Hugging Face Llama checkpoint or a
// trained HLLM checkpoint, written as X.npy (row i = dense item id i, row 0 zeros) and X.ids.txt (raw ids of rows
// 1..n). Either model is encoded by item-encoder actors through embedding-cache shards (the job's cache fill,
// actors/cache_fill.hpp, in this process): `--encoders` encoders each hold the frozen Item LLM (for --hf-model:
// with `--pooling`, the `--seed` of its [ITEM] vector and `--bf16`), take work units of `--batch` item ids and put
// the rows, tagged with the model's version (item_encoder_version_hex), into `--shards` shards; the matrix is read
// back from the shards. The output does not depend on the number of encoders or shards.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include <caf/all.hpp>

#include "actors/cache_fill.hpp"
#include "actors/embedding_cache_shard.hpp"
#include "messages/shard.hpp"
#include "actors/item_encoder.hpp"
#include "actors/router.hpp"
#include "launch/stage3.hpp"
#include "model/hllm.hpp"
#include "model/trainer.hpp"
#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "storage/export.hpp"
#include "storage/file_io.hpp"
#include "storage/job_checkpoint.hpp"
#include "storage/npy.hpp"

namespace {

using namespace hllm;

struct encode_options {
  std::string data, hf_model, checkpoint, out, pooling = "item";
  int64_t batch = 256;
  int threads = 2;
  bool bf16 = false;
  bool verify = true;
  uint64_t seed = 2020;
  int encoders = 1;        // item encoder actors sharing the work units
  int shards = 1;          // embedding-cache shard actors the rows go through
  std::string device = "auto";  // where the Item LLM computes, a checkpoint's or --hf-model's (model::resolve_device)
  std::string new_items, job, append_to;  // stage 3: items that never went through prepare
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

struct encoded {
  std::vector<float> matrix;  // [(num_items + 1) x dim], row 0 zeros
  uint32_t dim = 0;
  std::string version;        // the version tag of the rows
  int64_t units = 0;
};

// Both kinds of model run on the job's actors, all in this process: item encoders (each holding its own copy of the
// frozen Item LLM) take work units of `--batch` item ids and put their rows into embedding-cache shards, from which
// the matrix is read back. Units are the same id ranges whatever the number of encoders and shards, so the bytes are
// too.
encoded encode_on_actors(const storage::dataset& d, const encode_options& o) {
  item_encoder_options llm;  // the model every encoder holds
  // A device this build or machine lacks is one error line before any weight is read. The rows' version tag names
  // the model, not the device.
  llm.device = model::resolve_device(o.device, 0, "--device");
  if (!o.checkpoint.empty()) {
    const auto cfg = model::read_checkpoint_config(o.checkpoint);
    if (cfg.num_items != d.num_items() && o.new_items.empty()) {
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
    llm.checkpoint_dir = o.checkpoint;
  } else {
    // Before any weight is loaded: a dataset tokenized for another model fails fast.
    check_vocabulary(d, model::load_hf_config(o.hf_model + "/config.json").vocab_size, o.hf_model);
    llm.hf_model_dir = o.hf_model;
    llm.hf_pooling = o.pooling == "mean" ? model::item_pooling::mean : model::item_pooling::item_token;
    llm.hf_seed = o.seed;
    llm.hf_bf16 = o.bf16;
  }
  const std::string version = item_encoder_version_hex(llm);
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
  for (int i = 0; i < o.shards; ++i) {
    embedding_cache_shard_options so;
    so.name = msg::shard_name(static_cast<uint32_t>(i));
    so.shard = static_cast<uint32_t>(i);
    so.shard_count = static_cast<uint32_t>(o.shards);
    so.num_items = d.num_items();
    actors.push_back(spawn_embedding_cache_shard(sys, router, so));
  }
  cache_fill_options fo;
  fo.sender = "encode";
  for (int i = 0; i < o.encoders; ++i) {
    item_encoder_options eo = llm;
    eo.name = "encoder-" + std::to_string(i);
    eo.dataset_dir = d.dir();
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
  encoded out;
  out.units = fill_cache(sys, router, fo).units_total;
  out.version = version;
  out.matrix = fetch_cache_matrix(sys, router, "encode", {}, o.shards, d.num_items(), version, out.dim);
  return out;
}

void write_ids(const storage::dataset& d, const std::string& path) {
  std::string text;
  for (int64_t i = 1; i <= d.num_items(); ++i) {
    text += d.raw_item_id(static_cast<int32_t>(i));
    text += '\n';
  }
  storage::write_file_durably(path, text.data(), text.size());
}

std::string ids_path(const std::string& npy) {
  const auto stem = npy.size() > 4 && npy.compare(npy.size() - 4, 4, ".npy") == 0 ? npy.substr(0, npy.size() - 4)
                                                                                    : npy;
  return stem + ".ids.txt";
}

// Stage 3: new items (a CSV that never went through prepare) -> tokenized in hllm prepare (a process without torch:
// sentencepiece and libtorch never share one) -> encoded on the encoder actors -> appended to an item export.
int encode_new_items(encode_options o) {
  const auto t0 = std::chrono::steady_clock::now();
  auto j = stage3::open_job(o.job, o.data);
  if (o.checkpoint.empty()) o.checkpoint = j.item_checkpoint;
  const std::string version = storage::checkpoint_version_hex(o.checkpoint);
  // Refuse a foreign export before any work.
  const auto meta = storage::read_export_meta(o.append_to);
  if (meta.value("kind", std::string()) != "items" || meta.value("item_version", std::string()) != version) {
    throw error(errc::mismatch, "cannot append to " + o.append_to + ": it holds " + meta.value("kind", std::string()) +
                                    " of Item-LLM version " + meta.value("item_version", std::string()) + ", " +
                                    o.checkpoint + " is version " + version);
  }
  const std::string tmp = storage::export_paths(o.append_to).npy + ".new-items-" + std::to_string(::getpid());
  struct remove_tmp {
    std::string dir;
    ~remove_tmp() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{tmp};
  const int status = stage3::run_sibling("prepare", {"--new-items", o.new_items, "--like", j.data_dir, "--out", tmp});
  if (status != 0) {
    throw error(errc::invalid_input, "tokenizing " + o.new_items + " failed (hllm prepare --new-items, status " +
                                         std::to_string(status) + ")");
  }
  auto d = storage::dataset::open(tmp, true);
  o.data = tmp;
  const auto enc = encode_on_actors(d, o);
  storage::export_data e;
  e.dim = enc.dim;
  e.rows = d.num_items();
  e.matrix.assign(enc.matrix.begin() + enc.dim, enc.matrix.end());
  for (int64_t i = 1; i <= d.num_items(); ++i) {
    e.ids.emplace_back(d.raw_item_id(static_cast<int32_t>(i)));
    auto tokens = d.item_tokens(static_cast<int32_t>(i));
    e.fingerprints.push_back(
        storage::row_fingerprint(version, e.ids.back(), tokens.data(), tokens.size() * sizeof(int32_t)));
  }
  e.meta = {{"kind", "items"}, {"item_version", enc.version}};
  storage::append_export(o.append_to, e);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("hllm encode: %lld new items from %s appended to %s (item version %s) in %.1f s\n",
              static_cast<long long>(e.rows), o.new_items.c_str(), o.append_to.c_str(), enc.version.c_str(), s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  encode_options o;
  CLI::App app{"hllm encode: the embedding of every item of a prepared dataset (X.npy + X.ids.txt)", "hllm encode"};
  app.add_option("--data", o.data, "prepared dataset directory (hllm prepare)");
  auto* hf = app.add_option("--hf-model", o.hf_model, "Hugging Face Llama checkpoint directory");
  auto* ck = app.add_option("--checkpoint", o.checkpoint, "trained HLLM checkpoint directory");
  hf->excludes(ck);
  app.add_option("--pooling", o.pooling, "with --hf-model: item ([ITEM] token) or mean (over the text tokens)")
      ->check(CLI::IsMember({"item", "mean"}))
      ->capture_default_str();
  app.add_option("--out", o.out, "output .npy path; raw ids go to <out without .npy>.ids.txt");
  app.add_option("--items", o.new_items, "stage 3: an item CSV that never went through prepare: tokenized like the "
                                         "job's dataset (in hllm prepare), encoded with the job's stage-1 Item LLM "
                                         "(or --checkpoint) and appended to --append-to");
  app.add_option("--job", o.job, "with --items: the job directory");
  app.add_option("--append-to", o.append_to, "with --items: the item export (hllm export items) to append to; its "
                                             "item version must be the Item LLM's");
  app.add_option("--batch", o.batch, "items per work unit (one forward pass)")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--threads", o.threads, "torch threads")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the [ITEM] vector for --hf-model")->capture_default_str();
  app.add_flag("--bf16", o.bf16, "run the matmuls in bf16 (--hf-model)");
  app.add_option("--encoders", o.encoders, "item encoder actors sharing the work (each holds a copy of the model)")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--shards", o.shards, "embedding-cache shard actors the rows go through")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("!--no-verify", o.verify, "skip the dataset checksum verification");
  app.add_option("--device", o.device, "where the Item LLM (a checkpoint's or a --hf-model) computes: auto (a GPU "
                                       "when this build has CUDA and one is visible, else the CPU), cpu, cuda or "
                                       "cuda:N; rows come back to host memory")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (!o.new_items.empty()) {
    if (o.job.empty() || o.append_to.empty() || !o.hf_model.empty()) {
      std::fprintf(stderr, "hllm encode: --items needs --job and --append-to (and takes no --hf-model)\n");
      return 2;
    }
    try {
      torch::set_num_threads(o.threads);
      return encode_new_items(o);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hllm encode: error: %s\n", e.what());
      return 1;
    }
  }
  if (o.data.empty() || o.out.empty()) {
    std::fprintf(stderr, "hllm encode: --data and --out are required\n");
    return 2;
  }
  if (o.hf_model.empty() == o.checkpoint.empty()) {
    std::fprintf(stderr, "hllm encode: give exactly one of --hf-model and --checkpoint\n");
    return 2;
  }
  try {
    torch::set_num_threads(o.threads);
    const auto t0 = std::chrono::steady_clock::now();
    auto d = storage::dataset::open(o.data, o.verify);
    const auto e = encode_on_actors(d, o);
    storage::write_npy_f32(o.out, e.matrix.data(), d.num_items() + 1, e.dim);
    write_ids(d, ids_path(o.out));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("hllm encode: %lld items x %u -> %s in %.1f s (%.0f items/s; %lld units on %d encoders, %d cache "
                "shards; rows version %s)\n",
                static_cast<long long>(d.num_items()), e.dim, o.out.c_str(), s,
                static_cast<double>(d.num_items()) / s, static_cast<long long>(e.units), o.encoders, o.shards,
                e.version.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm encode: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
