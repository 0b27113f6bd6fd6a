#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "storage/csv.hpp"
#include "storage/error.hpp"
#include "storage/synth.hpp"
#include "test_util.hpp"

using namespace hllm::storage;
using hllm::test::read_bytes;
using hllm::test::temp_dir;

namespace {

synth_options small() {
  synth_options o;
  o.users = 300;
  o.items = 150;
  o.topics = 6;
  return o;
}

}  // namespace

TEST(synth, same_seed_same_bytes_other_seed_other_bytes) {
  temp_dir tmp;
  auto o = small();
  write_synthetic_dataset(tmp / "a", o);
  write_synthetic_dataset(tmp / "b", o);
  o.seed = 7;
  write_synthetic_dataset(tmp / "c", o);
  for (const char* f : {"interactions.csv", "items.csv", "cold_items.txt"}) {
    EXPECT_EQ(read_bytes(tmp / ("a/" + std::string(f))), read_bytes(tmp / ("b/" + std::string(f)))) << f;
  }
  EXPECT_NE(read_bytes(tmp / "a/interactions.csv"), read_bytes(tmp / "c/interactions.csv"));
}

TEST(synth, cold_items_only_ever_appear_as_the_last_two_items_of_a_user) {
  temp_dir tmp;
  auto o = small();
  auto sum = write_synthetic_dataset(tmp / "d", o);
  std::set<std::string> cold;
  {
    std::string list = read_bytes(tmp / "d/cold_items.txt");
    std::size_t start = 0;
    for (std::size_t nl; (nl = list.find('\n', start)) != std::string::npos; start = nl + 1) {
      cold.insert(list.substr(start, nl - start));
    }
  }
  ASSERT_EQ(static_cast<int64_t>(cold.size()), sum.cold_items);
  ASSERT_GT(sum.cold_items, 0);
  std::map<std::string, std::vector<std::pair<int64_t, std::string>>> by_user;
  csv_reader r(tmp / "d/interactions.csv");
  ASSERT_EQ(r.next(), csv_reader::result::record);  // header
  int64_t rows = 0;
  for (auto res = r.next(); res != csv_reader::result::end; res = r.next()) {
    ASSERT_EQ(res, csv_reader::result::record);
    const auto& f = r.fields();
    by_user[std::string(f[1])].emplace_back(std::stoll(std::string(f[2])), std::string(f[0]));
    ++rows;
  }
  EXPECT_EQ(rows, sum.interactions);
  int64_t cold_targets = 0;
  for (auto& [user, seq] : by_user) {
    std::sort(seq.begin(), seq.end());
    for (std::size_t i = 0; i < seq.size(); ++i) {
      // Timestamps strictly increase per user.
      if (i > 0) {
        EXPECT_LT(seq[i - 1].first, seq[i].first);
      }
      if (cold.count(seq[i].second) != 0) {
        EXPECT_GE(i + 2, seq.size()) << "cold item " << seq[i].second << " in a training position of " << user;
        ++cold_targets;
      }
    }
  }
  EXPECT_EQ(cold_targets, sum.cold_targets);
  EXPECT_GT(cold_targets, 0);
}

TEST(synth, item_text_carries_topic_words_shared_by_its_topic) {
  temp_dir tmp;
  auto o = small();
  write_synthetic_dataset(tmp / "e", o);
  csv_reader r(tmp / "e/items.csv");
  ASSERT_EQ(r.next(), csv_reader::result::record);
  ASSERT_EQ(r.fields().size(), 4u);
  EXPECT_EQ(r.fields()[3], "description");
  std::set<std::string> titles, tags;
  int n = 0;
  for (auto res = r.next(); res != csv_reader::result::end; res = r.next(), ++n) {
    titles.insert(std::string(r.fields()[1]));
    tags.insert(std::string(r.fields()[2]));
  }
  EXPECT_EQ(n, o.items);
  EXPECT_EQ(static_cast<int>(titles.size()), n);  // the unique name makes every title unique
  EXPECT_LE(static_cast<int>(tags.size()), o.topics * 6);  // tags come from the topic vocabularies only
}

TEST(synth, rejects_nonsense_options) {
  temp_dir tmp;
  auto o = small();
  o.min_length = 2;
  EXPECT_THROW(write_synthetic_dataset(tmp / "f", o), hllm::error);
  o = small();
  o.cold_item_share = 1.5;
  EXPECT_THROW(write_synthetic_dataset(tmp / "f", o), hllm::error);
}
