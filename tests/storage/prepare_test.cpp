#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "storage/prepare.hpp"
#include "test_util.hpp"

using namespace hllm::storage;
using hllm::test::temp_dir;
using hllm::test::write_text;

namespace {

// A deterministic test tokenizer: one id per whitespace-separated word (ids assigned on first sight, from 3).
// The real SentencePiece path is exercised end to end in tests/launch.
class word_tokenizer final : public tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text) const override {
    std::lock_guard<std::mutex> lock(mutex_);  // encode() is called from several threads
    std::vector<int32_t> ids;
    std::istringstream in{std::string(text)};
    std::string w;
    while (in >> w) {
      auto [it, fresh] = vocab_.emplace(w, static_cast<int32_t>(vocab_.size()) + 3);
      ids.push_back(it->second);
    }
    return ids;
  }
  int32_t bos_id() const override { return 1; }
  int32_t vocab_size() const override { return 1000; }
  std::string serialized_model() const override { return "words"; }

 private:
  mutable std::mutex mutex_;
  mutable std::map<std::string, int32_t> vocab_;
};

tokenizer_factory words() {
  return [](const std::vector<std::string>&) { return std::make_unique<word_tokenizer>(); };
}

struct fixture {
  temp_dir tmp;
  prepare_options opts;
  fixture(const std::string& interactions, const std::string& items) {
    write_text(tmp / "inter.csv", interactions);
    write_text(tmp / "items.csv", items);
    opts.interactions_path = tmp / "inter.csv";
    opts.items_path = tmp / "items.csv";
    opts.out_dir = tmp / "out";
    opts.prompt = "P ";
  }
  prepare_report run() { return prepare_dataset(opts, words()); }
  std::string error_of() {
    try {
      run();
    } catch (const hllm::error& e) {
      return e.what();
    }
    return "";
  }
};

const char* good_items = "item_id,title,tag,description\nA,apple pie,food,sweet\nB,bus,car,big\nC,cat,pet,\"soft, small\"\n";

}  // namespace

TEST(prepare, builds_sorted_sequences_dense_ids_and_leave_one_out_split) {
  // u1 has a timestamp tie (20): file order must be kept. u2 has only 2 interactions: dropped.
  fixture f("item_id,user_id,timestamp\nB,u1,30\nA,u1,20\nC,u1,20\nA,u1,10\nB,u2,5\nC,u2,6\nC,u3,1\nA,u3,2\nB,u3,3\n",
            good_items);
  auto rep = f.run();
  EXPECT_EQ(rep.users, 2);
  EXPECT_EQ(rep.users_too_short, 1);
  auto ds = dataset::open(f.opts.out_dir);
  ASSERT_EQ(ds.num_users(), 2);
  EXPECT_EQ(ds.raw_user_id(0), "u1");
  auto s = ds.user_sequence(0);
  std::vector<std::string> raw;
  for (int32_t id : s) raw.emplace_back(ds.raw_item_id(id));
  EXPECT_EQ(raw, (std::vector<std::string>{"A", "A", "C", "B"}));
  EXPECT_EQ(ds.raw_item_id(ds.test_target(0)), "B");
  EXPECT_EQ(ds.raw_item_id(ds.valid_target(0)), "C");
  // Dense ids follow first appearance: A = 1, C = 2, B = 3.
  EXPECT_EQ(ds.raw_item_id(1), "A");
  EXPECT_EQ(ds.raw_item_id(3), "B");
  // Train counts: u1 trains on A,A; u3 trains on C. B only ever a target: cold.
  EXPECT_EQ(ds.train_count(1), 2);
  EXPECT_EQ(ds.train_count(2), 1);
  EXPECT_TRUE(ds.is_cold(3));
  EXPECT_EQ(ds.info().cold_items, 1);
}

TEST(prepare, item_text_is_prompt_plus_nonempty_fields_with_bos_first_and_cut) {
  fixture f("item_id,user_id,timestamp\nA,u,1\nB,u,2\nC,u,3\n",
            "item_id,title,tag,description\nA,apple pie,,sweet\nB,bus,car,big\nC,cat,pet,\"soft, small and long text\"\n");
  f.opts.max_text_tokens = 6;
  auto rep = f.run();
  auto ds = dataset::open(f.opts.out_dir);
  // The empty tag is left out and fields follow each other with no separator.
  EXPECT_EQ(item_prompt_text("P ", {"title", "tag", "description"}, {"apple pie", "", "sweet"}),
            "P title: apple piedescription: sweet");
  auto a = ds.item_tokens(1);
  ASSERT_GE(a.size(), 2u);
  EXPECT_EQ(a[0], 1);  // BOS
  EXPECT_EQ(a.size(), 6u);  // BOS + 5 words, fits
  EXPECT_EQ(rep.items_truncated, 1);  // C: BOS + 9 words, cut at 6
  EXPECT_EQ(ds.item_tokens(3).size(), 6u);
}

TEST(prepare, missing_column_names_the_column_and_file) {
  fixture f("item_id,user_id,timestamp\nA,u,1\nB,u,2\nC,u,3\n", "item_id,title\nA,x\n");
  f.opts.fields = {"title", "tag"};
  std::string e = f.error_of();
  EXPECT_NE(e.find("missing column 'tag'"), std::string::npos) << e;
  EXPECT_NE(e.find("items.csv"), std::string::npos) << e;
  fixture g("item_id,user,timestamp\nA,u,1\n", good_items);
  e = g.error_of();
  EXPECT_NE(e.find("missing column 'user_id'"), std::string::npos) << e;
}

TEST(prepare, millisecond_and_pandas_float_timestamps_become_seconds_and_mixed_units_are_refused) {
  fixture ms("item_id,user_id,timestamp\nA,u,1600031572000\nB,u,1600031573999\nC,u,1600031574500\n", good_items);
  ms.run();
  auto ds = dataset::open(ms.opts.out_dir);
  ASSERT_EQ(ds.user_times(0).size(), 3u);
  EXPECT_EQ(ds.user_times(0)[0], 1600031572);
  EXPECT_EQ(ds.user_times(0)[1], 1600031573);  // rounded down, order kept
  fixture pandas("item_id,user_id,timestamp\nA,u,1600031572.0\nB,u,1600031573.0\nC,u,1.6000316e9\n", good_items);
  pandas.run();
  EXPECT_EQ(dataset::open(pandas.opts.out_dir).user_times(0)[0], 1600031572);
  fixture mixed("item_id,user_id,timestamp\nA,u,1600031572000\nB,u,1600031573\nC,u,1600031574\n", good_items);
  const std::string e = mixed.error_of();
  EXPECT_NE(e.find("mixes units"), std::string::npos) << e;
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("line 3"), std::string::npos) << e;
}

TEST(prepare, a_file_without_usable_rows_says_why) {
  fixture f("item_id,user_id,timestamp\nA,u,yesterday\nB,u,soon\n", good_items);
  const std::string e = f.error_of();
  EXPECT_NE(e.find("no usable rows (2 non-numeric timestamp"), std::string::npos) << e;
  EXPECT_NE(e.find("yesterday"), std::string::npos) << e;
}

TEST(prepare, without_fields_every_text_column_is_used_in_file_order) {
  fixture f("item_id,user_id,timestamp\nA,u,1\nB,u,2\nC,u,3\n", "Description,item_id, Title \nd,A,t\n");
  f.run();
  EXPECT_EQ(dataset::open(f.opts.out_dir).info().fields, "description,title");
  fixture g("item_id,user_id,timestamp\nA,u,1\nB,u,2\nC,u,3\n", "item_id\nA\n");
  EXPECT_NE(g.error_of().find("no text column besides item_id"), std::string::npos) << g.error_of();
}

TEST(prepare, interactions_without_header_names_are_read_by_position) {
  fixture f("iid,uid,ts\nA,u,1\nB,u,2\nC,u,3\n", good_items);
  EXPECT_EQ(f.run().interactions, 3);
}

TEST(prepare, empty_and_missing_files_are_errors) {
  fixture f("", good_items);
  EXPECT_NE(f.error_of().find("empty"), std::string::npos);
  fixture g("item_id,user_id,timestamp\nA,u,1\nB,u,2\nC,u,3\n", good_items);
  g.opts.items_path = g.tmp / "nope.csv";
  std::string e = g.error_of();
  EXPECT_NE(e.find("nope.csv"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(g.opts.out_dir));
}

TEST(prepare, lenient_mode_skips_and_counts_each_kind_of_bad_row) {
  fixture f(
      "item_id,user_id,timestamp\n"
      "A,u,1\n"
      "B,u,2\n"
      "C,u,3\n"
      "A,u\n"                  // short row
      "B,u,yesterday\n"        // non-numeric timestamp
      "C,\xFF\xFE,4\n"         // non-UTF-8
      "A,u,1\n"                // duplicate
      "\"A\"x,u,5\n"           // malformed CSV
      "D,u,6\n",               // item with no text row
      good_items);
  auto rep = f.run();
  EXPECT_EQ(rep.skipped["short row"], 1);
  EXPECT_EQ(rep.skipped["non-numeric timestamp"], 1);
  EXPECT_EQ(rep.skipped["non-UTF-8 text"], 1);
  EXPECT_EQ(rep.skipped["duplicate row"], 1);
  EXPECT_EQ(rep.skipped["malformed CSV"], 1);
  EXPECT_EQ(rep.items_without_text, 1);
  EXPECT_EQ(rep.interactions, 4);
  ASSERT_FALSE(rep.examples.empty());
  EXPECT_NE(rep.examples[0].find("inter.csv:5"), std::string::npos) << rep.examples[0];
  EXPECT_NE(rep.summary().find("duplicate row: 1"), std::string::npos);
}

TEST(prepare, iso_dates_become_unix_seconds_utc_and_bad_dates_are_counted_with_an_example) {
  // One user, each row a different spelling; the sequence order must follow the converted times, not file order.
  fixture f(
      "item_id,user_id,timestamp\n"
      "A,u,2021-03-01T00:00:00+01:00\n"  // 2021-02-28 23:00 UTC: 1614553200
      "B,u,2021-02-28\n"                 // 1614470400
      "C,u,2021-03-01 00:00:01.999\n"    // 1614556801 (fraction dropped)
      "A,v,1614470400\n"
      "B,v,2021-02-28T00:00:00Z\n"       // tie with the previous row: file order kept
      "C,v,2021-02-29\n"                 // not a leap year: malformed date
      "C,v,2021-13-01T00:00:00\n"        // malformed date
      "C,v,2021-03-01T10:00:00-05:30\n",  // 1614556800 + 36000 + 19800
      good_items);
  auto rep = f.run();
  EXPECT_EQ(rep.skipped["malformed date"], 2);
  EXPECT_EQ(rep.skipped.count("non-numeric timestamp"), 0u);
  ASSERT_FALSE(rep.examples.empty());
  EXPECT_NE(rep.examples[0].find("inter.csv:7: malformed date (2021-02-29: day out of range"), std::string::npos)
      << rep.examples[0];
  auto ds = dataset::open(f.opts.out_dir);
  ASSERT_EQ(ds.num_users(), 2);
  auto times = ds.user_times(0);
  ASSERT_EQ(times.size(), 3u);
  EXPECT_EQ(times[0], 1614470400);
  EXPECT_EQ(times[1], 1614553200);
  EXPECT_EQ(times[2], 1614556801);
  EXPECT_EQ(ds.raw_item_id(ds.user_sequence(0)[0]), "B");
  EXPECT_EQ(ds.raw_item_id(ds.user_sequence(0)[1]), "A");
  auto vt = ds.user_times(1);
  ASSERT_EQ(vt.size(), 3u);
  EXPECT_EQ(vt[0], 1614470400);
  EXPECT_EQ(vt[1], 1614470400);
  EXPECT_EQ(vt[2], 1614556800 + 36000 + 19800);
  EXPECT_EQ(ds.raw_item_id(ds.user_sequence(1)[0]), "A");
}

TEST(prepare, strict_mode_stops_at_the_first_bad_row_naming_file_and_line) {
  fixture f("item_id,user_id,timestamp\nA,u,1\nB,u,2\nC,u,x3\n", good_items);
  f.opts.strict = true;
  std::string e = f.error_of();
  EXPECT_NE(e.find("inter.csv:4: non-numeric timestamp"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(f.opts.out_dir));
}

TEST(prepare, failure_leaves_an_existing_dataset_untouched) {
  fixture f("item_id,user_id,timestamp\nA,u,1\nB,u,2\nC,u,3\n", good_items);
  f.run();
  std::string before = hllm::test::read_bytes(f.opts.out_dir + "/manifest.json");
  write_text(f.opts.interactions_path, "item_id,user_id,timestamp\nA,u,1\nB,u,bad\n");
  f.opts.strict = true;
  EXPECT_FALSE(f.error_of().empty());
  EXPECT_EQ(hllm::test::read_bytes(f.opts.out_dir + "/manifest.json"), before);
  EXPECT_NO_THROW(dataset::open(f.opts.out_dir));
}

TEST(prepare, nothing_usable_is_an_error) {
  fixture f("item_id,user_id,timestamp\nA,u,1\nB,u,2\n", good_items);
  EXPECT_NE(f.error_of().find("no user has 3 or more"), std::string::npos);
}

TEST(prepare, kcore_filter_drops_rare_items_and_users_in_one_pass) {
  // D occurs once: with k = 2 it goes; u3 has only 1 interaction overall.
  fixture f("item_id,user_id,timestamp\nA,u1,1\nB,u1,2\nC,u1,3\nD,u1,4\nA,u2,1\nB,u2,2\nC,u2,3\nA,u3,1\n",
            "item_id,title,tag,description\nA,a,a,a\nB,b,b,b\nC,c,c,c\nD,d,d,d\n");
  f.opts.kcore = 2;
  auto rep = f.run();
  EXPECT_EQ(rep.kcore_removed, 2);
  EXPECT_EQ(rep.items, 3);
  EXPECT_EQ(rep.users, 2);
}
