#include "storage/synth.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <vector>

#include "storage/csv.hpp"
#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/random.hpp"

namespace hllm::storage {
namespace {

// Purposes of the random streams, so each part of the generator has its own independent stream.
enum purpose : uint64_t { p_catalogue = 1, p_words = 2, p_user = 3, p_item_text = 4 };

constexpr const char* consonants = "bdfgklmnprstvzch";  // 16
constexpr const char* vowels = "aeiou";
constexpr const char* attribute_words[] = {"red",   "blue",  "green", "amber", "violet", "silver", "black",
                                           "white", "ochre", "teal",  "coral", "ivory",  "jade",   "rust",
                                           "slate", "gold"};
constexpr const char* filler_words[] = {"new",   "great", "best",  "classic", "daily",  "fresh",  "simple",
                                        "prime", "smart", "plus",  "deluxe",  "basic",  "modern", "urban",
                                        "light", "super", "ultra", "pro",     "select", "core"};

std::string syllable(uint64_t k) {
  std::string s;
  s.push_back(consonants[k % 16]);
  s.push_back(vowels[(k / 16) % 5]);
  return s;
}

// A pronounceable word of `n` syllables from a random stream.
std::string random_word(rng& r, int n) {
  std::string w;
  for (int i = 0; i < n; ++i) w += syllable(r.below(80));
  return w;
}

// A unique name per item: its index written in base-80 syllables, prefixed so it never equals a vocabulary word.
std::string item_name(int64_t item) {
  std::string w = "x";
  uint64_t k = static_cast<uint64_t>(item) * 7919 + 13;
  for (int i = 0; i < 4; ++i) {
    w += syllable(k % 80);
    k /= 80;
  }
  return w;
}

struct catalogue {
  int n_classes = 0;
  std::vector<int> item_class;                      // per item
  std::vector<std::array<int, 2>> item_attrs;       // per item
  std::vector<double> item_weight;                  // Zipf weight from the item's popularity rank in its topic
  std::vector<char> item_cold;                      // per item
  std::vector<std::array<int, 2>> successors;       // per class
  // Per (class, attribute, cold?): items and cumulative weights.
  std::vector<std::vector<int64_t>> pool_items;
  std::vector<std::vector<double>> pool_cum;
  std::vector<std::string> topic_words;             // topics x 6
  std::vector<std::string> class_words;             // classes x 3

  std::size_t pool(int cls, int attr, bool cold, int attributes) const {
    return (static_cast<std::size_t>(cls) * attributes + attr) * 2 + (cold ? 1 : 0);
  }
};

catalogue build_catalogue(const synth_options& o) {
  catalogue c;
  c.n_classes = o.topics * o.classes_per_topic;
  rng r({o.seed, p_catalogue});
  std::vector<int64_t> order(o.items);
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = o.items - 1; i > 0; --i) std::swap(order[i], order[r.below(i + 1)]);
  c.item_class.resize(o.items);
  c.item_attrs.resize(o.items);
  c.item_cold.assign(o.items, 0);
  c.item_weight.resize(o.items);
  for (int64_t k = 0; k < o.items; ++k) c.item_class[order[k]] = static_cast<int>(k % c.n_classes);
  auto n_cold = static_cast<int64_t>(std::llround(o.cold_item_share * o.items));
  for (int64_t k = 0; k < n_cold; ++k) c.item_cold[order[(k * 7 + 3) % o.items]] = 1;
  for (int64_t i = 0; i < o.items; ++i) {
    int a = static_cast<int>(r.below(o.attributes));
    int b = static_cast<int>(r.below(o.attributes - 1));
    if (b >= a) ++b;
    c.item_attrs[i] = {a, b};
  }
  // Popularity rank within each topic: items of a topic in shuffled order get weights 1/rank^s.
  std::vector<int64_t> rank_in_topic(o.topics, 0);
  for (int64_t k = 0; k < o.items; ++k) {
    int64_t item = order[(k * 31 + 17) % o.items];
    int topic = c.item_class[item] / o.classes_per_topic;
    c.item_weight[item] = 1.0 / std::pow(static_cast<double>(++rank_in_topic[topic]), o.zipf_exponent);
  }
  c.successors.resize(c.n_classes);
  for (int k = 0; k < c.n_classes; ++k) {
    for (int s = 0; s < 2; ++s) {
      int n = static_cast<int>(r.below(c.n_classes - 1));
      c.successors[k][s] = n >= k ? n + 1 : n;
    }
  }
  c.pool_items.resize(static_cast<std::size_t>(c.n_classes) * o.attributes * 2);
  c.pool_cum.resize(c.pool_items.size());
  for (int64_t i = 0; i < o.items; ++i) {
    for (int a : c.item_attrs[i]) {
      std::size_t p = c.pool(c.item_class[i], a, c.item_cold[i] != 0, o.attributes);
      c.pool_items[p].push_back(i);
      double prev = c.pool_cum[p].empty() ? 0.0 : c.pool_cum[p].back();
      c.pool_cum[p].push_back(prev + c.item_weight[i]);
    }
  }
  rng w({o.seed, p_words});
  for (int t = 0; t < o.topics * 6; ++t) c.topic_words.push_back(random_word(w, 3));
  for (int k = 0; k < c.n_classes * 3; ++k) c.class_words.push_back(random_word(w, 2) + "o");
  return c;
}

// Draws a Zipf-weighted item of class `cls` carrying attribute `attr` (warm or cold pool); -1 when the pool is empty.
int64_t draw_from_pool(const catalogue& c, rng& r, int cls, int attr, bool cold, int attributes) {
  std::size_t p = c.pool(cls, attr, cold, attributes);
  const auto& cum = c.pool_cum[p];
  if (cum.empty()) return -1;
  double x = r.uniform() * cum.back();
  auto it = std::upper_bound(cum.begin(), cum.end(), x);
  std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(it - cum.begin()), cum.size() - 1);
  return c.pool_items[p][k];
}

struct row {
  int64_t time;
  int64_t user;
  int64_t item;
};

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

void validate(const synth_options& o) {
  auto bad = [](const std::string& what) { throw error(errc::invalid_input, "synth: " + what); };
  if (o.users < 1 || o.items < 2) bad("need at least 1 user and 2 items");
  if (o.topics < 1 || o.classes_per_topic < 1) bad("need at least 1 topic and 1 class per topic");
  if (o.topics * o.classes_per_topic < 2) bad("need at least 2 classes in all");
  if (o.attributes < 2 || o.user_attributes < 1 || o.user_attributes > o.attributes) bad("bad attribute counts");
  if (o.attributes > static_cast<int>(std::size(attribute_words))) bad("at most 16 attributes");
  if (o.user_topics < 1 || o.user_topics > o.topics) bad("user_topics must be in [1, topics]");
  if (o.min_length < 3 || o.max_length < o.min_length) bad("need 3 <= min_length <= max_length");
  for (double p : {o.follow_probability, o.cold_item_share, o.cold_target_share}) {
    if (!(p >= 0.0 && p <= 1.0)) bad("probabilities and shares must be in [0, 1]");
  }
}

}  // namespace

synth_summary write_synthetic_dataset(const std::string& dir, const synth_options& o) {
  validate(o);
  std::filesystem::create_directories(dir);
  catalogue c = build_catalogue(o);
  synth_summary sum;
  sum.users = o.users;
  sum.items = o.items;
  sum.cold_items = std::count(c.item_cold.begin(), c.item_cold.end(), 1);

  std::vector<row> rows;
  rows.reserve(static_cast<std::size_t>(o.users) * (o.min_length + o.max_length) / 2);
  std::vector<int> topics(o.topics), attrs(o.attributes);
  std::vector<int64_t> seq;
  for (int64_t u = 0; u < o.users; ++u) {
    rng r({o.seed, p_user, static_cast<uint64_t>(u)});
    std::iota(topics.begin(), topics.end(), 0);
    std::iota(attrs.begin(), attrs.end(), 0);
    for (int k = 0; k < o.user_topics; ++k) std::swap(topics[k], topics[k + r.below(o.topics - k)]);
    for (int k = 0; k < o.user_attributes; ++k) std::swap(attrs[k], attrs[k + r.below(o.attributes - k)]);
    auto preferred_class = [&] {
      int t = topics[r.below(o.user_topics)];
      return t * o.classes_per_topic + static_cast<int>(r.below(o.classes_per_topic));
    };
    int length = o.min_length + static_cast<int>(r.below(o.max_length - o.min_length + 1));
    int cls = preferred_class();
    int64_t time = 1600000000 + static_cast<int64_t>(r.below(30 * 86400));
    seq.clear();
    int failures = 0;
    for (int t = 0; t < length; ++t) {
      bool target = t >= length - 2;
      bool want_cold = target && r.uniform() < o.cold_target_share;
      int64_t item = -1;
      for (int attempt = 0; attempt < 12 && item < 0; ++attempt) {
        int attr = attrs[r.below(o.user_attributes)];
        bool cold = want_cold && attempt < 6;  // fall back to warm items when the class has no cold one
        int64_t cand = draw_from_pool(c, r, cls, attr, cold, o.attributes);
        if (cand >= 0 && std::find(seq.begin(), seq.end(), cand) == seq.end()) item = cand;
      }
      if (item < 0) {
        cls = preferred_class();  // this class is exhausted for the user: jump, and try the next position
        --t;
        if (++failures > 64) break;  // the user has exhausted every reachable item: a shorter sequence
        continue;
      }
      if (c.item_cold[item] != 0) ++sum.cold_targets;
      seq.push_back(item);
      rows.push_back({time, u, item});
      time += 60 + static_cast<int64_t>(r.below(86400));
      cls = r.uniform() < o.follow_probability ? c.successors[cls][r.below(2)] : preferred_class();
    }
  }
  // Real logs are ordered by time, users interleaved.
  std::stable_sort(rows.begin(), rows.end(), [](const row& a, const row& b) { return a.time < b.time; });
  sum.interactions = static_cast<int64_t>(rows.size());

  std::string out = "item_id,user_id,timestamp\n";
  out.reserve(rows.size() * 26);
  for (const row& rw : rows) {
    out += 'i';
    append_int(out, rw.item + 1);
    out += ",u";
    append_int(out, rw.user + 1);
    out += ',';
    append_int(out, rw.time);
    out += '\n';
  }
  write_file_durably(dir + "/interactions.csv", out.data(), out.size());

  out = "item_id,title,tag,description\n";
  std::string cold_list;
  for (int64_t i = 0; i < o.items; ++i) {
    rng r({o.seed, p_item_text, static_cast<uint64_t>(i)});
    int cls = c.item_class[i];
    int topic = cls / o.classes_per_topic;
    auto topic_word = [&] { return c.topic_words[topic * 6 + r.below(6)]; };
    auto class_word = [&](int k) { return c.class_words[cls * 3 + k]; };
    auto filler = [&] { return std::string(filler_words[r.below(std::size(filler_words))]); };
    std::string title = item_name(i) + " " + attribute_words[c.item_attrs[i][0]] + " " + class_word(0);
    std::string tag = topic_word();
    std::string description = std::string(attribute_words[c.item_attrs[i][1]]) + " " + class_word(1) + " " +
                              topic_word() + ", " + class_word(2) + " for " + filler() + " " + filler();
    out += 'i';
    append_int(out, i + 1);
    out += ',' + csv_escape(title) + ',' + csv_escape(tag) + ',' + csv_escape(description) + '\n';
    if (c.item_cold[i] != 0) {
      cold_list += 'i';
      append_int(cold_list, i + 1);
      cold_list += '\n';
    }
  }
  write_file_durably(dir + "/items.csv", out.data(), out.size());
  write_file_durably(dir + "/cold_items.txt", cold_list.data(), cold_list.size());
  return sum;
}

std::vector<float> clustered_rows(int64_t n, uint32_t dim, int64_t clusters, double noise, uint64_t seed) {
  hllm::rng r(seed);
  auto uniform = [&] { return static_cast<double>(r.next() >> 11) / 9007199254740992.0 * 2.0 - 1.0; };
  std::vector<float> centres(static_cast<std::size_t>(clusters) * dim);
  for (auto& c : centres) c = static_cast<float>(uniform());
  std::vector<float> out(static_cast<std::size_t>(n) * dim);
  for (int64_t i = 0; i < n; ++i) {
    const auto c = r.below(static_cast<uint64_t>(clusters));
    for (uint32_t d = 0; d < dim; ++d) out[i * dim + d] = centres[c * dim + d] + static_cast<float>(noise * uniform());
  }
  return out;
}

}  // namespace hllm::storage
