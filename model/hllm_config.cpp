#include "model/hllm_config.hpp"

#include <cmath>

#include <nlohmann/json.hpp>

#include "storage/error.hpp"

namespace hllm::model {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) {
    throw error(errc::invalid_input, "hllm config: " + what);
  }
}

item_source parse_source(const std::string& s) {
  for (auto v : {item_source::text, item_source::id, item_source::cache}) {
    if (s == to_string(v)) {
      return v;
    }
  }
  throw error(errc::invalid_input, "hllm config: unknown item_source '" + s + "'");
}

item_pooling parse_pooling(const std::string& s) {
  for (auto v : {item_pooling::item_token, item_pooling::mean}) {
    if (s == to_string(v)) {
      return v;
    }
  }
  throw error(errc::invalid_input, "hllm config: unknown pooling '" + s + "' (item or mean)");
}

// The fields of a train_config, each under its own name in JSON and read with the config's value as its default:
// one list for writing and reading. `f(key, field)`.
template <class Config, class F>
void train_fields(Config& c, F&& f) {
  f("lr", c.lr);
  f("weight_decay", c.weight_decay);
  f("beta1", c.beta1);
  f("beta2", c.beta2);
  f("adam_eps", c.adam_eps);
  f("warmup_share", c.warmup_share);
  f("total_steps", c.total_steps);
  f("clip_norm", c.clip_norm);
  f("bf16", c.bf16);
  f("threads", c.threads);
}

}  // namespace

const char* to_string(item_source s) {
  switch (s) {
    case item_source::text: return "text";
    case item_source::id: return "id";
    case item_source::cache: return "cache";
  }
  return "?";
}

const char* to_string(item_pooling p) { return p == item_pooling::mean ? "mean" : "item"; }

void hllm_config::validate() const {
  user_llm.validate();
  require(user_llm.vocab_size == 0, "user_llm.vocab_size must be 0 (the User LLM reads item embeddings)");
  if (source == item_source::text) {
    item_llm.validate();
    require(item_llm.vocab_size > 0, "item_llm.vocab_size must be positive");
    require(item_llm.hidden_size == user_llm.hidden_size,
            "item_llm.hidden_size must equal user_llm.hidden_size (no projection between them)");
  }
  require(max_text_tokens > 0, "max_text_tokens must be positive");
  require(num_items >= 0, "num_items must not be negative");
  require(source != item_source::id || num_items > 0, "num_items must be positive for the ID baseline");
  require(cls_negatives >= 1, "cls_negatives must be at least 1");
  require(logit_scale_max >= 0, "logit_scale_max must not be negative");
  require(position_embeddings >= 0, "position_embeddings must not be negative");
  require(input_dropout >= 0 && input_dropout < 1, "input_dropout must be in [0, 1)");
  require(block_dropout >= 0 && block_dropout < 1, "block_dropout must be in [0, 1)");
  require(!freeze_item_llm || source == item_source::text, "freeze_item_llm needs item_source text");
}

hllm_config default_hllm_config(int64_t vocab_size, int64_t num_items, int64_t max_text_tokens) {
  hllm_config c;
  c.item_llm = tiny_default_config(vocab_size);
  c.item_llm.max_position_embeddings = max_text_tokens + 1;
  c.user_llm = tiny_default_config(0);
  c.num_items = num_items;
  c.max_text_tokens = max_text_tokens;
  return c;
}

double scheduled_lr(const train_config& t, int64_t step) {
  const auto warmup = static_cast<int64_t>(std::ceil(t.warmup_share * static_cast<double>(t.total_steps)));
  if (step < warmup) {
    return t.lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  }
  const double span = static_cast<double>(std::max<int64_t>(t.total_steps - warmup, 1));
  const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  return t.lr * 0.5 * (1.0 + std::cos(M_PI * progress));
}

nlohmann::json to_json(const hllm_config& c) {
  nlohmann::json j = {{"item_source", to_string(c.source)},
          {"item_llm", llama_config_to_json(c.item_llm)},
          {"user_llm", llama_config_to_json(c.user_llm)},
          {"max_text_tokens", c.max_text_tokens},
          {"pooling", to_string(c.pooling)},
          {"num_items", c.num_items},
          {"early_fusion", c.early_fusion},
          {"late_fusion", c.late_fusion},
          {"cls_lambda", c.cls_lambda},
          {"cls_negatives", c.cls_negatives},
          {"false_negative_cosine", c.false_negative_cosine},
          {"logit_scale_init", c.logit_scale_init},
          {"logit_scale_max", c.logit_scale_max},
          {"seed", c.seed}};
  // Written only when on, so the configs of models without timestamp features stay as they were.
  if (c.time_buckets > 0) j["time_buckets"] = c.time_buckets;
  if (c.position_embeddings > 0) j["position_embeddings"] = c.position_embeddings;
  if (c.input_dropout > 0) j["input_dropout"] = c.input_dropout;
  if (c.block_dropout > 0) j["block_dropout"] = c.block_dropout;
  if (c.freeze_item_llm) j["freeze_item_llm"] = true;
  return j;
}


hllm_config hllm_config_from_json(const nlohmann::json& j) {
  try {
    hllm_config c;
    c.source = parse_source(j.at("item_source").get<std::string>());
    if (c.source == item_source::text) {
      c.item_llm = llama_config_from_json(j.at("item_llm"));
    }
    c.user_llm = llama_config_from_json(j.at("user_llm"));
    c.max_text_tokens = j.at("max_text_tokens").get<int64_t>();
    c.pooling = parse_pooling(j.value("pooling", std::string("item")));
    c.num_items = j.at("num_items").get<int64_t>();
    c.early_fusion = j.value("early_fusion", false);
    c.late_fusion = j.value("late_fusion", false);
    c.cls_lambda = j.value("cls_lambda", c.cls_lambda);
    c.cls_negatives = j.value("cls_negatives", c.cls_negatives);
    c.false_negative_cosine = j.value("false_negative_cosine", c.false_negative_cosine);
    c.logit_scale_init = j.value("logit_scale_init", c.logit_scale_init);
    c.logit_scale_max = j.value("logit_scale_max", c.logit_scale_max);
    c.seed = j.value("seed", c.seed);
    c.time_buckets = j.value("time_buckets", int64_t{0});
    c.position_embeddings = j.value("position_embeddings", int64_t{0});
    c.input_dropout = j.value("input_dropout", 0.0);
    c.block_dropout = j.value("block_dropout", 0.0);
    c.freeze_item_llm = j.value("freeze_item_llm", false);
    c.validate();
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw error(errc::invalid_input, std::string("hllm config: ") + e.what());
  }
}

nlohmann::json to_json(const train_config& c) {
  nlohmann::json j = nlohmann::json::object();
  train_fields(c, [&](const char* key, const auto& field) { j[key] = field; });
  return j;
}

train_config train_config_from_json(const nlohmann::json& j) {
  train_config c;
  train_fields(c, [&](const char* key, auto& field) { field = j.value(key, field); });
  return c;
}

}  // namespace hllm::model
