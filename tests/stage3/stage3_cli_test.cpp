// Stage 3 end to end with the real executables: a tiny job is trained once (hllm train), then hllm export, hllm index
// and hllm recommend run against it as separate processes, as an operator would run them.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "storage/ann_index.hpp"
#include "storage/export.hpp"
#include "../launch/run_hllm.hpp"
#include "../storage/test_util.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hllm;
using test::contains;

namespace {

test::run_result run(const std::string& args, bool with_stderr = true) { return test::run_hllm(args, with_stderr); }

std::string jobs() { return test::env_or_empty("HLLM_STAGE3_JOBS"); }

// Each user's interactions from the tiny dataset's CSV: raw user -> (raw items, newest timestamp).
struct csv_user {
  std::set<std::string> items;
  int64_t newest = INT64_MIN;
};
std::map<std::string, csv_user> read_interactions(const std::string& path) {
  std::map<std::string, csv_user> users;
  std::istringstream in(test::read_bytes(path));
  std::string line;
  std::getline(in, line);  // header item_id,user_id,timestamp
  while (std::getline(in, line)) {
    auto a = line.find(','), b = line.find(',', a + 1);
    auto& u = users[line.substr(a + 1, b - a - 1)];
    u.items.insert(line.substr(0, a));
    u.newest = std::max<int64_t>(u.newest, std::stoll(line.substr(b + 1)));
  }
  return users;
}

class stage3_cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { root_ = new test::temp_dir(); }
  static void TearDownTestSuite() {
    delete root_;
    root_ = nullptr;
  }
  void SetUp() override {
    if (jobs().empty()) GTEST_SKIP() << "HLLM_STAGE3_JOBS is not set (run through ctest: fixture stage3_jobs)";
    ASSERT_TRUE(fs::exists(job() + "/stage2/best/model.safetensors")) << "the tiny job did not train";
  }
  static std::string job() { return jobs() + "/job"; }
  static std::string other() { return jobs() + "/other"; }
  static std::string out(const std::string& name) { return *root_ / name; }
  // The CSV the job's dataset was prepared from (JOB/dataset names the prepared directory; csv/ is beside it).
  static std::string csv() {
    std::string data = test::read_bytes(job() + "/dataset");
    while (!data.empty() && data.back() == '\n') data.pop_back();
    return (fs::path(data).parent_path() / "csv/interactions.csv").string();
  }
  static test::temp_dir* root_;
};
test::temp_dir* stage3_cli::root_ = nullptr;

}  // namespace

TEST_F(stage3_cli, item_export_reads_the_cache_and_equals_a_fresh_encode) {
  auto r = run("export items --job " + job() + " --out " + out("items.npy"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "(cache;")) << r.output;
  auto e = storage::read_export(out("items.npy"));
  EXPECT_EQ(e.meta.at("kind"), "items");
  EXPECT_EQ(e.meta.at("source"), "cache");
  EXPECT_GT(e.rows, 100);
  EXPECT_EQ(e.dim, 32u);
  // The same job with its cache gone: the items are encoded again with the stage-1 Item LLM, to the same rows.
  fs::copy(job(), out("nocache"), fs::copy_options::recursive);
  fs::remove_all(out("nocache/cache"));
  r = run("export items --job " + out("nocache") + " --out " + out("items-reencoded.npy"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "re-encoding")) << r.output;
  auto f = storage::read_export(out("items-reencoded.npy"));
  EXPECT_EQ(f.meta.at("source"), "re-encoded");
  EXPECT_EQ(f.meta.at("item_version"), e.meta.at("item_version"));
  ASSERT_EQ(f.matrix.size(), e.matrix.size());
  EXPECT_EQ(f.ids, e.ids);
  double worst = 0;
  for (std::size_t i = 0; i < e.matrix.size(); ++i) worst = std::max(worst, std::fabs(double(e.matrix[i]) - f.matrix[i]));
  EXPECT_LT(worst, 1e-4);
  // A damaged cache file is named and the rows are made again, the same ones.
  fs::copy(job(), out("badcache"), fs::copy_options::recursive);
  std::string shard;
  for (const auto& entry : fs::directory_iterator(out("badcache/cache"))) {
    if (entry.path().extension() == ".emb") shard = entry.path().string();
  }
  ASSERT_FALSE(shard.empty());
  std::string bytes = test::read_bytes(shard);
  bytes[bytes.size() - 5] ^= 0x41;
  test::write_text(shard, bytes);
  r = run("export items --job " + out("badcache") + " --out " + out("items-badcache.npy"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "re-encoding")) << r.output;
  EXPECT_TRUE(contains(r.output, fs::path(shard).filename().string())) << r.output;
  EXPECT_EQ(storage::read_export(out("items-badcache.npy")).ids, e.ids);
}

TEST_F(stage3_cli, recommend_agrees_with_exact_search_over_the_exports_and_excludes_seen_items) {
  ASSERT_EQ(run("export items --job " + job() + " --out " + out("rec/items.npy")).status, 0);
  ASSERT_EQ(run("export users --job " + job() + " --out " + out("rec/users.npy")).status, 0);
  auto r = run("index build --embeddings " + out("rec/items.npy") + " --out " + out("rec/items.index"));
  ASSERT_EQ(r.status, 0) << r.output;
  auto items = storage::read_export(out("rec/items.npy"));
  auto users = storage::read_export(out("rec/users.npy"));
  storage::l2_normalize_rows(items.matrix.data(), items.rows, items.dim);
  const auto history = read_interactions(csv());
  int checked = 0;
  for (int u = 0; u < users.rows && checked < 3; u += 97, ++checked) {
    const std::string user = users.ids[u];
    r = run("recommend --job " + job() + " --index " + out("rec/items.index") + " --user " + user + " -k 5 --json",
            false);
    ASSERT_EQ(r.status, 0) << r.output;
    auto j = json::parse(r.output);
    ASSERT_EQ(j.at("recommendations").size(), 5u) << r.output;
    // The exact top 5 for the exported user embedding.
    std::vector<float> q(users.matrix.begin() + u * users.dim, users.matrix.begin() + (u + 1) * users.dim);
    storage::l2_normalize_rows(q.data(), 1, users.dim);
    auto want = storage::exact_top_k(items.matrix.data(), items.rows, items.dim, q.data(), 5);
    std::set<std::string> want_ids, got_ids;
    for (const auto& w : want) want_ids.insert(items.ids[w.row]);
    double last = 2;
    for (const auto& rec : j.at("recommendations")) {
      got_ids.insert(rec.at("item_id").get<std::string>());
      EXPECT_LE(rec.at("score").get<double>(), last + 1e-6);
      last = rec.at("score").get<double>();
      EXPECT_FALSE(rec.at("title").get<std::string>().empty()) << rec.dump();
    }
    EXPECT_EQ(got_ids, want_ids) << "user " << user;
    // --exclude-seen: none of the user's items, still 5.
    r = run("recommend --job " + job() + " --index " + out("rec/items.index") + " --user " + user +
                " -k 5 --exclude-seen --json",
            false);
    ASSERT_EQ(r.status, 0) << r.output;
    auto x = json::parse(r.output);
    ASSERT_EQ(x.at("recommendations").size(), 5u);
    for (const auto& rec : x.at("recommendations")) {
      EXPECT_EQ(history.at(user).items.count(rec.at("item_id").get<std::string>()), 0u) << rec.dump();
    }
  }
  // The text mode prints a table with the title column.
  r = run("recommend --job " + job() + " --index " + out("rec/items.index") + " --user " + users.ids[0] + " -k 3");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "rank  item_id")) << r.output;
}

TEST_F(stage3_cli, bad_input_is_a_one_line_error_naming_what) {
  ASSERT_EQ(run("export items --job " + job() + " --out " + out("bad/items.npy")).status, 0);
  ASSERT_EQ(run("index build --embeddings " + out("bad/items.npy") + " --out " + out("bad/items.index")).status, 0);
  const std::string index = " --index " + out("bad/items.index");
  // Unknown user.
  auto r = run("recommend --job " + job() + index + " --user nobody-here");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "user 'nobody-here' is not in the dataset")) << r.output;
  // An index of another job's Item LLM.
  const std::string some_user = read_interactions(csv()).begin()->first;
  r = run("recommend --job " + other() + index + " --user " + some_user);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "Item-LLM version")) << r.output;
  // A damaged index file.
  std::string bytes = test::read_bytes(out("bad/items.index/index.hnsw"));
  bytes[bytes.size() - 9] ^= 0x33;
  test::write_text(out("bad/items.index/index.hnsw"), bytes);
  r = run("recommend --job " + job() + index + " --user " + some_user);
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "index.hnsw: checksum")) << r.output;
  // Indexing a user export is refused; a job with no stage-1 checkpoint is named.
  ASSERT_EQ(run("export users --job " + job() + " --out " + out("bad/users.npy")).status, 0);
  r = run("index build --embeddings " + out("bad/users.npy") + " --out " + out("bad/users.index"));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "index an item export")) << r.output;
  fs::create_directories(out("empty-job"));
  r = run("export items --job " + out("empty-job") + " --out " + out("bad/x.npy"));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "no stage-1 checkpoint")) << r.output;
  r = run("export users --job " + job() + " --out " + out("bad/y.npy") + " --active-since yesterday");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "--active-since 'yesterday'")) << r.output;
}

TEST_F(stage3_cli, since_checkpoint_writes_only_changed_rows_and_active_since_filters_users) {
  ASSERT_EQ(run("export users --job " + job() + " --out " + out("inc/users.npy")).status, 0);
  auto all = storage::read_export(out("inc/users.npy"));
  // Nothing changed: an empty delta.
  auto r = run("export users --job " + job() + " --out " + out("inc/delta.npy") + " --since-checkpoint " +
               out("inc/users.npy"));
  ASSERT_EQ(r.status, 0) << r.output;
  auto delta = storage::read_export(out("inc/delta.npy"));
  EXPECT_EQ(delta.rows, 0);
  EXPECT_EQ(delta.meta.at("delta"), true);
  EXPECT_EQ(delta.meta.at("unchanged_rows_left_out"), all.rows);
  // Another User LLM (the stage-1 one): every row changed.
  r = run("export users --job " + job() + " --checkpoint " + job() + "/stage1/best --out " + out("inc/delta1.npy") +
          " --since-checkpoint " + out("inc/users.npy"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(storage::read_export(out("inc/delta1.npy")).rows, all.rows);
  // Items against themselves: nothing.
  ASSERT_EQ(run("export items --job " + job() + " --out " + out("inc/items.npy")).status, 0);
  r = run("export items --job " + job() + " --out " + out("inc/items-delta.npy") + " --since-checkpoint " +
          out("inc/items.npy"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(storage::read_export(out("inc/items-delta.npy")).rows, 0);

  // --active-since: exactly the users whose newest interaction is at or after the time.
  const auto history = read_interactions(csv());
  std::vector<int64_t> newest;
  for (const auto& id : all.ids) newest.push_back(history.at(id).newest);
  std::sort(newest.begin(), newest.end());
  const int64_t since = newest[newest.size() / 2];
  r = run("export users --job " + job() + " --out " + out("inc/active.npy") + " --active-since " + std::to_string(since));
  ASSERT_EQ(r.status, 0) << r.output;
  auto active = storage::read_export(out("inc/active.npy"));
  const auto expected = std::count_if(all.ids.begin(), all.ids.end(),
                                      [&](const std::string& id) { return history.at(id).newest >= since; });
  EXPECT_EQ(active.rows, expected);
  EXPECT_LT(active.rows, all.rows);
  for (const auto& id : active.ids) EXPECT_GE(history.at(id).newest, since) << id;
}

TEST_F(stage3_cli, new_items_are_tokenized_encoded_and_appended_with_the_same_version) {
  ASSERT_EQ(run("export items --job " + job() + " --out " + out("new/items.npy")).status, 0);
  auto before = storage::read_export(out("new/items.npy"));
  // Three items of the catalogue under new ids (same text: the Item LLM must give the same rows), and a bad row.
  std::string data = test::read_bytes(job() + "/dataset");
  while (!data.empty() && data.back() == '\n') data.pop_back();
  std::istringstream items(test::read_bytes((fs::path(data).parent_path() / "csv/items.csv").string()));
  std::string header, line, csv;
  std::getline(items, header);
  csv = header + "\n";
  std::vector<std::string> originals;
  while (originals.size() < 3 && std::getline(items, line)) {
    originals.push_back(line.substr(0, line.find(',')));
    csv += "fresh-" + line + "\n";
  }
  csv += "half,\"never closed\n";
  test::write_text(out("new/new.csv"), csv);
  auto r = run("encode --items " + out("new/new.csv") + " --job " + job() + " --append-to " + out("new/items.npy"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "1 rows skipped")) << r.output;
  auto after = storage::read_export(out("new/items.npy"));
  ASSERT_EQ(after.rows, before.rows + 3);
  EXPECT_EQ(after.meta.at("item_version"), before.meta.at("item_version"));
  for (std::size_t k = 0; k < originals.size(); ++k) {
    const auto at = std::find(before.ids.begin(), before.ids.end(), originals[k]) - before.ids.begin();
    ASSERT_LT(at, before.rows) << originals[k];
    const auto row = before.rows + static_cast<int64_t>(k);
    EXPECT_EQ(after.ids[row], "fresh-" + originals[k]);
    for (uint32_t d = 0; d < after.dim; ++d) {
      EXPECT_NEAR(after.matrix[row * after.dim + d], before.matrix[at * before.dim + d], 1e-5) << originals[k];
    }
  }
  // The same items again: refused, the export unchanged.
  r = run("encode --items " + out("new/new.csv") + " --job " + job() + " --append-to " + out("new/items.npy"));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "already in it")) << r.output;
  EXPECT_EQ(storage::read_export(out("new/items.npy")).rows, after.rows);
  // Another job's Item LLM: refused before any work.
  r = run("encode --items " + out("new/new.csv") + " --job " + other() + " --append-to " + out("new/items.npy"));
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.output, "Item-LLM version")) << r.output;
}
