// `hllm synth`: writes the embedded default dataset (docs/data.md).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "storage/error.hpp"
#include "storage/synth.hpp"

int main(int argc, char** argv) {
  hllm::storage::synth_options o;
  std::string out;
  CLI::App app{"hllm synth: write a deterministic synthetic dataset (interactions.csv, items.csv, cold_items.txt)",
               "hllm synth"};
  app.add_option("--out", out, "output directory")->required();
  app.add_option("--users", o.users, "number of users")->capture_default_str();
  app.add_option("--items", o.items, "number of items")->capture_default_str();
  app.add_option("--seed", o.seed, "random seed (same seed, same bytes)")->capture_default_str();
  app.add_option("--topics", o.topics, "topics, each with its own vocabulary")->capture_default_str();
  app.add_option("--classes-per-topic", o.classes_per_topic, "item classes per topic (Markov states)")
      ->capture_default_str();
  app.add_option("--attributes", o.attributes, "item attributes users act on (<= 16)")->capture_default_str();
  app.add_option("--user-attributes", o.user_attributes, "attributes each user prefers")->capture_default_str();
  app.add_option("--user-topics", o.user_topics, "topics each user prefers")->capture_default_str();
  app.add_option("--min-length", o.min_length, "shortest user sequence")->capture_default_str();
  app.add_option("--max-length", o.max_length, "longest user sequence")->capture_default_str();
  app.add_option("--follow-probability", o.follow_probability, "chance the next class is a successor class")
      ->capture_default_str();
  app.add_option("--zipf", o.zipf_exponent, "Zipf exponent of item popularity within a topic")->capture_default_str();
  app.add_option("--cold-items", o.cold_item_share, "share of items never in a training sequence")
      ->capture_default_str();
  app.add_option("--cold-targets", o.cold_target_share, "share of validation/test targets drawn from cold items")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    auto s = hllm::storage::write_synthetic_dataset(out, o);
    std::printf("hllm synth: wrote %s/interactions.csv (%lld interactions, %lld users) and %s/items.csv "
                "(%lld items, %lld cold; %lld cold validation/test targets)\n",
                out.c_str(), static_cast<long long>(s.interactions), static_cast<long long>(s.users), out.c_str(),
                static_cast<long long>(s.items), static_cast<long long>(s.cold_items),
                static_cast<long long>(s.cold_targets));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm synth: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
