#include "actors/job_runner.hpp"

namespace hllm {
namespace job_internal {

// job.threads = 0: the cores of this host shared by the ranks running on it (oversubscribed OpenMP threads spin
// and slow every rank down many times).
int torch_threads(const spec::job_spec& cfg, int local_ranks) {
  int t = cfg.job.threads;
  if (t > 0) return t;
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, local_ranks));
}

model::train_config train_config_of(const spec::stage_settings& s, int threads) {
  model::train_config t;
  t.lr = s.lr;
  t.weight_decay = s.weight_decay;
  t.warmup_share = s.warmup_share;
  t.clip_norm = s.clip_norm;
  t.bf16 = s.bf16;
  t.threads = threads;
  return t;
}

stage_spec stage_spec_of(const spec::job_spec& cfg, const std::string& name, std::uint8_t stage, int threads) {
  const spec::stage_settings& s = cfg.schedule(name);
  stage_spec spec;
  spec.name = name;
  spec.stage = stage;
  spec.epochs = s.epochs;
  spec.batch_size = s.batch_size;
  spec.seq_len = s.seq_len;
  spec.negatives = s.negatives;
  spec.train = train_config_of(s, threads);
  spec.validate_every_epoch = cfg.eval.validate_every_epoch;
  spec.patience = s.patience;
  spec.eval_every_steps = s.eval_every_steps;
  spec.max_steps = s.max_steps;
  return spec;
}

job_runner::job_runner(const job_options& o)
    : opt_(o),
      cfg_(o.spec),
      data_(storage::dataset::open(o.data_dir)),
      texts_(model::item_texts_of(data_)),
      table_(model::interactions_of(data_)) {
  fs::create_directories(opt_.out_dir);
  chief_ = opt_.rank == 0;
  threads_ = torch_threads(cfg_, opt_.local_ranks);
  job_.id = opt_.config_hash;
  const spec::placement_settings& p = cfg_.placement;
  spread_over_hosts_ = p.spread_over == "hosts";
  encoder_ranks_.assign(p.encoder_ranks.begin(), p.encoder_ranks.end());
  for (int r : encoder_ranks_) {
    if (r < 0 || r >= opt_.world_size) {
      throw error(errc::invalid_input, "config: placement.encoder_ranks names rank " + std::to_string(r) +
                                           ", the job has ranks 0.." + std::to_string(opt_.world_size - 1));
    }
  }
  if (!cfg_.model.item_llm_from.empty()) {
    // Before anything trains: a checkpoint whose shape or vocabulary the job cannot use is one line now, not an
    // error in the middle of the job.
    (void)job_model_config(cfg_, data_, model::item_source::text, opt_.data_dir);
  }
  valid_ = model::make_eval_set(table_, model::split::valid, cfg_.eval.max_history);
  test_ = model::make_eval_set(table_, model::split::test, cfg_.eval.max_history);
  for (int32_t t : test_.targets) test_cold_.push_back(data_.is_cold(t));
  if (opt_.world_size > 1) {
    model::process_group_options po;
    po.master_addr = opt_.master_addr;
    po.master_port = opt_.master_port;
    po.rank = opt_.rank;
    po.world_size = opt_.world_size;
    po.interface_host = opt_.host;
    po.timeout = std::chrono::seconds(cfg_.train.collective_timeout_s);
    po.device = opt_.device;
    spdlog::info("rank {}/{}: joining the process group at {}:{}", opt_.rank, opt_.world_size, opt_.master_addr,
                 opt_.master_port);
    group_ = std::make_unique<model::process_group>(po);
    check_same_config();
  }
  // Opened only after the rendezvous: rank 0 checks the job directory (and with --fresh sets an earlier run's
  // files aside, metrics included) before it starts the store, so no rank appends to an earlier run's log.
  metrics_path_ = opt_.out_dir + (chief_ ? std::string("/metrics.jsonl")
                                         : "/metrics.rank-" + std::to_string(opt_.rank) + ".jsonl");
  // Read before the log appends to it: did an earlier run of this job directory train anything?
  earlier_steps_logged_ = logged_a_step(metrics_path_);
  log_ = std::make_unique<metrics_log>(metrics_path_);
  job_.epoch = next_job_epoch();
  caf_cfg_ = std::make_unique<caf::actor_system_config>();
  configure_actor_system(*caf_cfg_);
  sys_ = std::make_unique<caf::actor_system>(*caf_cfg_);
}

job_runner::~job_runner() {
  pool_.reset();  // stops the worker processes while the router still runs
  if (monitor_) monitor_->stop();
  // The actor system waits for every actor at destruction: stop them all first.
  for (auto& a : actors_) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  if (router_) caf::anon_send_exit(router_, caf::exit_reason::user_shutdown);
}

int job_runner::run() {
  auto t0 = clock_type::now();
  start_actors();
  choose_resume();
  const std::vector<std::string>& stages = cfg_.job.stages;
  auto wants = [&](const char* s) { return cfg_.job.runs(s); };
  spdlog::info("job {}: {} users, {} items ({} cold), stages: {}", hex(job_.id), data_.num_users(),
               data_.num_items(), data_.info().cold_items, json(stages).dump());
  if (wants("popularity") && chief_) phase("popularity", [&] { popularity(); });
  if (wants("text") && chief_) phase("text", [&] { text_only(); });
  if (wants("baseline")) phase("baseline", [&] { baseline(); });
  if (wants("stage1")) phase("stage1", [&] { stage1(); });
  if (wants("scratch")) phase("scratch", [&] { scratch(); });
  if (wants("frozen")) phase("frozen", [&] { frozen(); });
  if (wants("cache")) phase("cache fill", [&] { cache_fill(); });
  if (wants("stage2")) phase("stage2", [&] { stage2(); });
  if (wants("test") && chief_) phase("test", [&] { test(); });
  // Rank 0 hosts actors the others use: nobody leaves before everybody is done.
  barrier();
  if (pool_) {
    log_->write(json{{"event", "workers"}, {"respawns", pool_->total_respawns()}}.dump());
    pool_.reset();
  }
  if (chief_) write_results();
  spdlog::info("job finished in {:.1f}s; outputs in {}", since(t0), opt_.out_dir);
  return 0;
}

step_feed_options job_runner::feed_options(const stage_spec& spec) const {
  step_feed_options f;
  f.name = "trainer-" + std::to_string(opt_.rank);
  f.world_size = static_cast<uint32_t>(opt_.world_size);
  f.rank = static_cast<uint32_t>(opt_.rank);
  f.job = job_;
  f.loaders = loaders_;
  f.samplers = samplers_;
  f.stage = spec.stage;
  f.batch_size = spec.batch_size;
  f.max_length = spec.seq_len;
  f.negatives = spec.negatives;
  f.window = cfg_.train.window;
  f.timeout = std::chrono::milliseconds(cfg_.train.request_timeout_ms);
  if (spec.stage == 2) {
    // Stage 2 reads item embeddings per batch from the cache shards (deduplicated ids, one step ahead).
    f.cache_shards = static_cast<uint32_t>(cfg_.placement.cache_shards);
    f.cache_version = version_;
  }
  return f;
}

int64_t job_runner::steps_per_epoch(const stage_spec& spec) const {
  auto users = static_cast<int64_t>(model::trainable_users(table_).size());
  int64_t steps = users / (static_cast<int64_t>(spec.batch_size) * opt_.world_size);
  if (steps < 1) throw error(errc::invalid_input, spec.name + ": fewer trainable users than one batch");
  return steps;
}

stage_outcome job_runner::train(model::trainer& net, const stage_spec& spec, const train_progress* from) {
  step_feed feed(*sys_, router_, feed_options(spec));
  trainer_board_->set_state(msg::actor_state::running);
  auto validate = [&](model::trainer& t) { return model::summarize_ranks(t.ranks(valid_)); };
  resume_options ro;
  ro.from = from;
  ro.checkpoint_every = cfg_.train.checkpoint_every_steps;
  ro.rank = opt_.rank;
  if (chief_) ro.checkpoint = [&](const model::trainer& t, const train_progress& p) { write_checkpoint(t, spec, p); };
  stage_spec with_times = spec;  // timestamp features: every batch gets its timestamps from this rank's table
  if (cfg_.model.time_buckets > 0) with_times.times = &table_;
  auto out = run_user_trainer(feed, net, with_times, steps_per_epoch(spec), validate,
                              opt_.out_dir + "/" + spec.name, *log_, group_.get(), trainer_board_.get(), ro);
  completed_.push_back(spec.name);
  trainer_board_->set_state(msg::actor_state::idle);
  if (chief_) {
    spdlog::info("{}: {} steps, {:.0f} samples/s in this trainer, best epoch {} (validation N@200 {:.2f}), retries {}",
                 spec.name, out.steps, out.samples_per_second, out.best_epoch + 1, out.best_ndcg200,
                 feed.counters().retries);
    const auto& c = feed.counters();
    if (c.lookups > 0) {
      spdlog::info("{}: {} cache lookups for {} distinct ids of {} in the batches ({:.1f}x fewer rows moved)",
                   spec.name, c.lookups, c.ids_looked_up, c.ids_in_steps,
                   static_cast<double>(c.ids_in_steps) / static_cast<double>(std::max<uint64_t>(c.ids_looked_up, 1)));
    }
  }
  speeds_[spec.name] = out.samples_per_second;
  if (chief_) {
    // How the stage ended, for the results (a resumed job that skips the stage still shows it).
    json t{{"steps", out.stage_steps},      {"stopped_by", out.stop_reason},   {"best_step", out.best_step},
           {"best_epoch", out.best_epoch},  {"best_valid_ndcg200", out.best_ndcg200},
           {"validations", out.valid_ndcg200.size()}};
    std::string text = t.dump(1) + "\n";
    storage::write_file_durably(opt_.out_dir + "/" + spec.name + "/training.json", text.data(), text.size());
  }
  return out;
}

// The schedule of the trained model `name`: its learning-rate schedule spans its epochs, or its max_steps when
// fewer (a schedule sized to a far cap would stop early inside its warmup).
stage_spec job_runner::schedule_of(const std::string& name, std::uint8_t key) const {
  auto spec = stage_spec_of(cfg_, name, key, threads_);
  spec.train.total_steps = spec.epochs * steps_per_epoch(spec);
  if (spec.max_steps > 0) spec.train.total_steps = std::min(spec.train.total_steps, spec.max_steps);
  return spec;
}

// Trains the model `name` (its [name] schedule; `key` is the stage of the determinism contract) from `fresh`, or
// continues it from the checkpoint this run resumes, or skips it when an earlier run completed it. Returns the
// directory of its best checkpoint (by validation).
std::string job_runner::train_stage(const std::string& name, std::uint8_t key, const model::hllm_config& fresh) {
  auto spec = schedule_of(name, key);
  switch (start_of(spec)) {
    case stage_start::done:
      spdlog::info("{}: completed before this run (checkpoint {}); not trained again", name, resume_dir_);
      return opt_.out_dir + "/" + name + "/best";
    case stage_start::resume: {
      auto net = model::trainer::load(resume_dir_ + "/trainer", texts_, {}, opt_.device);
      auto from = resumed_progress();
      return train(net, spec, &from).best_dir;
    }
    case stage_start::fresh:
      break;
  }
  model::trainer net(fresh, spec.train, texts_, {}, opt_.device);
  if (fresh.source == model::item_source::text && name != "scratch" && !cfg_.model.item_llm_from.empty()) {
    net.load_item_llm(cfg_.model.item_llm_from);  // pretrained vs random: the one difference from `scratch`
  }
  return train(net, spec).best_dir;
}

// The model config of a trained stage: the job's [model] with that stage's training-only regularisation.
model::hllm_config job_runner::model_config_of(const std::string& name, model::item_source source) const {
  auto c = job_model_config(cfg_, data_, source, opt_.data_dir);
  c.input_dropout = c.block_dropout = cfg_.schedule(name).dropout;
  if (name == "baseline") c.position_embeddings = cfg_.baseline.position_embeddings;
  if (name == "frozen") c.freeze_item_llm = true;
  c.validate();
  return c;
}

// Trains the model `name` (train_stage) and, on the chief, records the test ranks of its best checkpoint as `row`
// (a model evaluated alone: its items encoded by its own Item LLM or id table, no cache).
void job_runner::train_and_record(const std::string& name, std::uint8_t key, model::item_source source,
                                  const std::string& row) {
  const std::string best_dir = train_stage(name, key, model_config_of(name, source));
  if (!chief_) return;
  auto best = model::trainer::load(best_dir, texts_, {}, opt_.device);
  record(row, best.ranks(test_));
}

void job_runner::baseline() { train_and_record("baseline", 0, model::item_source::id, "id-baseline"); }

void job_runner::stage1() {
  stage1_dir_ = train_stage("stage1", 1, model_config_of("stage1", model::item_source::text));
}

// The paper's ablation (conclusion 2): stage 1 with the Item LLM kept at its initial weights, on stage 1's
// schedule and data order; evaluated like the ID baseline (items encoded by its own, frozen, Item LLM).
void job_runner::frozen() { train_and_record("frozen", 1, model::item_source::text, "hllm-frozen"); }

// The other half of the paper's conclusion 1 (pretrained vs random Item LLM): stage 1's schedule, data order and
// Item-LLM shape, but the Item LLM starts from the seeded random weights although model.item_llm_from is set.
void job_runner::scratch() { train_and_record("scratch", 1, model::item_source::text, "hllm-stage1-random"); }

// Text matching alone, no training (is HLLM just text matching?): BM25 between item texts and the texts of the
// user's most recent history items.
void job_runner::text_only() { record("text-only", model::text_baseline_ranks(texts_, test_)); }

std::string job_runner::stage1_checkpoint() {
  if (stage1_dir_.empty()) stage1_dir_ = opt_.out_dir + "/stage1/best";
  if (!fs::exists(stage1_dir_ + "/model.safetensors")) {
    throw error(errc::not_found, "no stage-1 checkpoint at '" + stage1_dir_ + "' (run the stage1 stage first)");
  }
  return stage1_dir_;
}

void job_runner::stage2() {
  auto spec = schedule_of("stage2", 2);
  auto start = start_of(spec);
  if (start == stage_start::done) {
    spdlog::info("stage2: completed before this run (checkpoint {}); not trained again", resume_dir_);
    stage2_dir_ = opt_.out_dir + "/stage2/best";
    return;
  }
  cache_version();  // the step feed's lookups and results.json name it
  // Training reads each batch's rows from the shards (the step feed); only rank 0 validates, against the whole
  // cached matrix.
  auto with_matrix = [&](model::trainer& net) {
    if (!chief_) return;
    auto matrix = cache_matrix();
    net.set_item_cache(span<const float>(matrix.data(), matrix.size()));
  };
  if (start == stage_start::resume) {
    auto net = model::trainer::load(resume_dir_ + "/trainer", texts_, {}, opt_.device);
    with_matrix(net);
    auto from = resumed_progress();
    stage2_dir_ = train(net, spec, &from).best_dir;
  } else {
    model::trainer net(model_config_of("stage2", model::item_source::cache), spec.train, texts_, {}, opt_.device);
    net.load_weights_from(stage1_checkpoint());  // stage 2 continues the stage-1 User LLM
    with_matrix(net);
    stage2_dir_ = train(net, spec).best_dir;
  }
}

}  // namespace job_internal

using namespace job_internal;

namespace {

// The Item LLM's shape from the checkpoint of model.item_llm_from, checked against what the job shares with it.
model::llama_config pretrained_item_llm(const spec::job_spec& cfg, const storage::dataset& data,
                                        const std::string& data_dir) {
  const std::string& dir = cfg.model.item_llm_from;
  const std::string key = "config: model.item_llm_from = \"" + dir + "\": ";
  model::llama_config c;
  try {
    c = model::load_hf_config(dir + "/config.json");
  } catch (const error& e) {
    throw error(e.code(), key + e.what());
  }
  if (c.hidden_size != cfg.model.hidden_size) {
    throw error(errc::invalid_input,
                key + "the checkpoint's hidden_size is " + std::to_string(c.hidden_size) +
                    " but model.hidden_size is " + std::to_string(cfg.model.hidden_size) +
                    " (the Item LLM's embeddings feed the User LLM directly: " +
                    "set model.hidden_size = " + std::to_string(c.hidden_size) + ")");
  }
  const int64_t vocab = data.info().vocab_size;
  if (c.vocab_size != vocab) {
    throw error(errc::invalid_input,
                key + "the checkpoint's vocabulary has " + std::to_string(c.vocab_size) + " tokens but dataset " +
                    (data_dir.empty() ? std::string("(this job's)") : "\"" + data_dir + "\"") + " was tokenized with " +
                    std::to_string(vocab) + " (prepare it with the checkpoint's tokenizer: hllm prepare --tokenizer " +
                    dir + "/tokenizer.model)");
  }
  return c;
}

}  // namespace

model::hllm_config job_model_config(const spec::job_spec& cfg, const storage::dataset& data,
                                    model::item_source source, const std::string& data_dir) {
  const spec::model_settings& m = cfg.model;
  auto c = model::default_hllm_config(data.info().vocab_size, data.num_items(), data.info().max_text_tokens);
  c.source = source;
  for (auto* l : {&c.item_llm, &c.user_llm}) {
    l->hidden_size = m.hidden_size;
    l->intermediate_size = m.intermediate_size;
    l->num_attention_heads = m.heads;
    l->num_key_value_heads = m.kv_heads;
    l->rms_norm_eps = m.rms_norm_eps;
    l->rope_theta = m.rope_theta;
  }
  c.item_llm.num_hidden_layers = m.item_layers;
  if (source == model::item_source::text && !m.item_llm_from.empty()) {
    c.item_llm = pretrained_item_llm(cfg, data, data_dir);
  }
  c.user_llm.num_hidden_layers = m.user_layers;
  c.pooling = m.pooling == "mean" ? model::item_pooling::mean : model::item_pooling::item_token;
  c.false_negative_cosine = m.false_negative_cosine;
  c.late_fusion = m.late_fusion;
  c.early_fusion = m.early_fusion;
  c.cls_lambda = m.cls_lambda;
  c.time_buckets = m.time_buckets;
  c.seed = cfg.job.seed;
  c.validate();
  return c;
}

int run_job(const job_options& o) {
  job_runner r(o);
  return r.run();
}

}  // namespace hllm
