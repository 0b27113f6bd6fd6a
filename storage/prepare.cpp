#include "storage/prepare.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "storage/csv.hpp"
#include "storage/dataset.hpp"
#include "storage/error.hpp"
#include "storage/timestamp.hpp"

namespace hllm::storage {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// A progress bar on stderr, drawn only on a terminal and at most ~10 times a second.
class progress_bar {
 public:
  progress_bar(bool enabled, std::string label)
      : enabled_(enabled && ::isatty(STDERR_FILENO) != 0), label_(std::move(label)) {}
  void update(std::size_t done, std::size_t total) {
    if (!enabled_ || total == 0) return;
    auto now = clock_type::now();
    if (now - last_ < std::chrono::milliseconds(100) && done < total) return;
    last_ = now;
    int pct = static_cast<int>(100.0 * static_cast<double>(done) / static_cast<double>(total));
    int bar = pct * 30 / 100;
    std::fprintf(stderr, "\r    %-22s [%.*s%*s] %3d%%", label_.c_str(), bar, "##############################",
                 30 - bar, "", pct);
    drawn_ = true;
  }
  ~progress_bar() {
    if (drawn_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  std::string label_;
  clock_type::time_point last_{};
  bool drawn_ = false;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Collects bad rows: in strict mode the first one is an error, otherwise it is counted.
class bad_rows {
 public:
  bad_rows(bool strict, prepare_report& report) : strict_(strict), report_(report) {}
  void add(const std::string& file, int64_t line, const std::string& reason, const std::string& detail = "") {
    std::string msg = file + ":" + std::to_string(line) + ": " + reason + (detail.empty() ? "" : " (" + detail + ")");
    if (strict_) throw error(errc::invalid_input, msg + " [--strict]");
    ++report_.skipped[reason];
    if (report_.examples.size() < 10) report_.examples.push_back(msg);
  }

 private:
  bool strict_;
  prepare_report& report_;
};

struct interaction {
  int32_t user;
  int32_t item;
  int64_t time;
  int64_t line;
};

// Interns raw ids as dense indices in order of first appearance. Views into the mapped file are kept as they are;
// fields that were unescaped into the reader's scratch space are copied, since that space is reused.
class interner {
 public:
  explicit interner(std::string_view file_bytes) : file_(file_bytes) {}
  int32_t intern(std::string_view id) {
    auto it = map_.find(id);
    if (it != map_.end()) return it->second;
    std::string_view key = id;
    if (id.data() < file_.data() || id.data() + id.size() > file_.data() + file_.size()) {
      owned_.emplace_back(id);
      key = owned_.back();
    }
    auto index = static_cast<int32_t>(names_.size());
    map_.emplace(key, index);
    names_.push_back(key);
    return index;
  }
  int32_t find(std::string_view id) const {
    auto it = map_.find(id);
    return it == map_.end() ? -1 : it->second;
  }
  std::string_view name(int32_t index) const { return names_[index]; }
  std::size_t size() const { return names_.size(); }

 private:
  std::string_view file_;
  std::unordered_map<std::string_view, int32_t> map_;
  std::vector<std::string_view> names_;
  std::deque<std::string> owned_;
};

std::vector<std::size_t> find_columns(csv_reader& reader, const std::vector<std::string>& wanted,
                                      bool positional_fallback, const char* what) {
  if (reader.next() != csv_reader::result::record) {
    throw error(errc::invalid_input, std::string(what) + " file '" + reader.name() + "' is empty or its header row is malformed");
  }
  std::vector<std::string> header;
  for (auto f : reader.fields()) header.push_back(lower(trim(f)));
  std::vector<std::size_t> cols;
  std::size_t found = 0;
  for (const auto& w : wanted) {
    auto it = std::find(header.begin(), header.end(), lower(w));
    cols.push_back(it == header.end() ? SIZE_MAX : static_cast<std::size_t>(it - header.begin()));
    if (it != header.end()) ++found;
  }
  if (found == wanted.size()) return cols;
  // The reference reads interactions by position: accept an unnamed header when no expected name occurs at all.
  if (positional_fallback && found == 0 && header.size() >= wanted.size()) {
    for (std::size_t k = 0; k < wanted.size(); ++k) cols[k] = k;
    return cols;
  }
  std::string have;
  for (const auto& h : header) have += (have.empty() ? "" : ",") + h;
  for (std::size_t k = 0; k < wanted.size(); ++k) {
    if (cols[k] == SIZE_MAX) {
      throw error(errc::invalid_input, std::string(what) + " file '" + reader.name() + "': missing column '" +
                                           wanted[k] + "' (header: " + have + ")");
    }
  }
  return cols;
}

}  // namespace

std::string item_prompt_text(const std::string& prompt, const std::vector<std::string>& field_names,
                             const std::vector<std::string_view>& values) {
  std::string text = prompt;
  for (std::size_t k = 0; k < field_names.size() && k < values.size(); ++k) {
    std::string_view v = trim(values[k]);
    if (v.empty()) continue;
    text += field_names[k];
    text += ": ";
    text += v;
  }
  return text;
}

std::vector<std::string> item_text_columns(const std::string& items_path) {
  csv_reader reader(items_path);
  if (reader.next() != csv_reader::result::record) {
    throw error(errc::invalid_input, "items file '" + items_path + "' is empty or its header row is malformed");
  }
  std::vector<std::string> out;
  for (auto f : reader.fields()) {
    std::string name = lower(trim(f));
    if (!name.empty() && name != "item_id") out.push_back(name);
  }
  return out;
}

prepare_report prepare_dataset(const prepare_options& o, const tokenizer_factory& make_tokenizer) {
  // Refuse a --out that holds something else before any work (checked again when the dataset is swapped in).
  const replace_policy out_policy = dataset_replace_policy(false, o.force, {o.interactions_path, o.items_path});
  check_replaceable(o.out_dir, out_policy);
  prepare_report report;
  bad_rows bad(o.strict, report);
  if (o.max_text_tokens < 2) throw error(errc::invalid_input, "--max-text-tokens must be at least 2 (BOS + one token)");
  // No --fields: every column of the items file but item_id, in the file's order (what hllm synth and every
  // converter write: title first).
  const std::vector<std::string> fields = o.fields.empty() ? item_text_columns(o.items_path) : o.fields;
  if (fields.empty()) {
    throw error(errc::invalid_input, "items file '" + o.items_path + "' has no text column besides item_id (give "
                                     "--fields or add a title/description column)");
  }
  auto t0 = clock_type::now();

  // 1. Interactions.
  csv_reader inter(o.interactions_path);
  auto cols = find_columns(inter, {"item_id", "user_id", "timestamp"}, true, "interactions");
  std::size_t need = *std::max_element(cols.begin(), cols.end()) + 1;
  std::vector<interaction> rows;
  // Views of unquoted fields point into the mapped file; the interners keep those without copying.
  interner users(inter.bytes()), items(inter.bytes());
  // Tells the column's unit by magnitude: a column plainly in milliseconds (or finer) is converted to seconds below.
  timestamp_column tcol(o.interactions_path);
  {
    progress_bar bar(o.progress, "parsing interactions");
    for (auto r = inter.next(); r != csv_reader::result::end; r = inter.next()) {
      bar.update(inter.position(), inter.size());
      ++report.rows_read;
      if (r == csv_reader::result::malformed) {
        bad.add(inter.name(), inter.line(), "malformed CSV", inter.error());
        continue;
      }
      const auto& f = inter.fields();
      if (f.size() < need) {
        bad.add(inter.name(), inter.line(), "short row",
                std::to_string(f.size()) + " fields, need " + std::to_string(need));
        continue;
      }
      std::string_view item = trim(f[cols[0]]), user = trim(f[cols[1]]);
      if (item.empty() || user.empty()) {
        bad.add(inter.name(), inter.line(), "empty id");
        continue;
      }
      if (!is_valid_utf8(item) || !is_valid_utf8(user)) {
        bad.add(inter.name(), inter.line(), "non-UTF-8 text");
        continue;
      }
      int64_t ts = 0;
      std::string why;
      auto te = tcol.parse(f[cols[2]], inter.line(), ts, &why);
      if (te == timestamp_error::not_numeric) {
        bad.add(inter.name(), inter.line(), "non-numeric timestamp",
                std::string(f[cols[2]].substr(0, 40)) + (why.empty() ? "" : ": " + why));
        continue;
      }
      if (te == timestamp_error::bad_date) {
        bad.add(inter.name(), inter.line(), "malformed date", std::string(f[cols[2]].substr(0, 40)) + ": " + why);
        continue;
      }
      rows.push_back({users.intern(user), items.intern(item), ts, inter.line()});
    }
  }
  if (rows.empty()) {
    std::string why_none;
    for (const auto& [reason, n] : report.skipped) {
      why_none += (why_none.empty() ? "" : ", ") + std::to_string(n) + " " + reason;
    }
    throw error(errc::invalid_input, "interactions file '" + o.interactions_path + "' has no usable rows (" +
                                         (why_none.empty() ? std::string("it has no data rows") : why_none) +
                                         (report.examples.empty() ? "" : "; first: " + report.examples.front()) +
                                         ")");
  }
  const time_unit ts_unit = tcol.unit();  // throws, naming a line of each, when the column mixes units
  if (ts_unit != time_unit::seconds) std::fprintf(stderr, "hllm prepare: %s\n", tcol.note().c_str());
  report.parse_seconds = seconds_since(t0);

  // 2. Group by user (counting sort keeps file order), then sort each user stably by time; drop duplicates.
  const std::size_t n_users_raw = users.size();
  std::vector<uint64_t> uoff(n_users_raw + 1, 0);
  for (const auto& r : rows) ++uoff[r.user + 1];
  for (std::size_t u = 0; u < n_users_raw; ++u) uoff[u + 1] += uoff[u];
  std::vector<interaction> by_user(rows.size());
  {
    std::vector<uint64_t> fill(uoff.begin(), uoff.end() - 1);
    for (const auto& r : rows) by_user[fill[r.user]++] = r;
  }
  rows.clear();
  rows.shrink_to_fit();
  std::vector<char> keep(by_user.size(), 1);
  for (std::size_t u = 0; u < n_users_raw; ++u) {
    auto first = by_user.begin() + static_cast<std::ptrdiff_t>(uoff[u]);
    auto last = by_user.begin() + static_cast<std::ptrdiff_t>(uoff[u + 1]);
    std::stable_sort(first, last, [](const interaction& a, const interaction& b) { return a.time < b.time; });
    for (uint64_t i = uoff[u]; i < uoff[u + 1]; ++i) {
      for (uint64_t j = i; j-- > uoff[u] && by_user[j].time == by_user[i].time;) {
        if (keep[j] && by_user[j].item == by_user[i].item) {
          bad.add(o.interactions_path, by_user[i].line, "duplicate row",
                  "same as line " + std::to_string(by_user[j].line));
          keep[i] = 0;
          break;
        }
      }
    }
  }

  // 3. Optional k-core filter (one pass, as the reference does for Books).
  if (o.kcore > 0) {
    std::vector<int64_t> item_n(items.size(), 0), user_n(n_users_raw, 0);
    for (std::size_t i = 0; i < by_user.size(); ++i) {
      if (keep[i]) {
        ++item_n[by_user[i].item];
        ++user_n[by_user[i].user];
      }
    }
    for (std::size_t i = 0; i < by_user.size(); ++i) {
      if (keep[i] && (item_n[by_user[i].item] < o.kcore || user_n[by_user[i].user] < o.kcore)) {
        keep[i] = 0;
        ++report.kcore_removed;
      }
    }
  }

  // 4. Users with fewer than 3 interactions cannot be split leave-one-out; dense ids in order of appearance.
  dataset_arrays a;
  std::vector<int32_t> dense_item(items.size(), 0);
  std::vector<int32_t> raw_of_dense{-1};
  for (std::size_t u = 0; u < n_users_raw; ++u) {
    int64_t n = 0;
    for (uint64_t i = uoff[u]; i < uoff[u + 1]; ++i) n += keep[i];
    if (n == 0) continue;
    if (n < 3) {
      ++report.users_too_short;
      continue;
    }
    for (uint64_t i = uoff[u]; i < uoff[u + 1]; ++i) {
      if (!keep[i]) continue;
      int32_t& d = dense_item[by_user[i].item];
      if (d == 0) {
        d = static_cast<int32_t>(raw_of_dense.size());
        raw_of_dense.push_back(by_user[i].item);
      }
      a.seq_items.push_back(d);
      a.seq_times.push_back(to_seconds(by_user[i].time, ts_unit));
    }
    a.seq_offsets.push_back(a.seq_items.size());
    a.user_raw_ids += users.name(static_cast<int32_t>(u));
    a.user_raw_offsets.push_back(a.user_raw_ids.size());
  }
  by_user.clear();
  by_user.shrink_to_fit();
  const int64_t n_users = static_cast<int64_t>(a.seq_offsets.size()) - 1;
  const int64_t n_items = static_cast<int64_t>(raw_of_dense.size()) - 1;
  if (n_users == 0) {
    throw error(errc::invalid_input, "interactions file '" + o.interactions_path +
                                         "': no user has 3 or more interactions after filtering");
  }

  // 5. Item texts.
  csv_reader item_csv(o.items_path);
  std::vector<std::string> wanted{"item_id"};
  wanted.insert(wanted.end(), fields.begin(), fields.end());
  auto icols = find_columns(item_csv, wanted, false, "items");
  std::size_t ineed = *std::max_element(icols.begin(), icols.end()) + 1;
  std::vector<std::string> texts(static_cast<std::size_t>(n_items) + 1);
  std::vector<char> has_text(static_cast<std::size_t>(n_items) + 1, 0);
  std::vector<std::string> titles(static_cast<std::size_t>(n_items) + 1);  // first text field, for people
  {
    progress_bar bar(o.progress, "reading item texts");
    std::vector<std::string_view> values(fields.size());
    for (auto r = item_csv.next(); r != csv_reader::result::end; r = item_csv.next()) {
      bar.update(item_csv.position(), item_csv.size());
      if (r == csv_reader::result::malformed) {
        bad.add(item_csv.name(), item_csv.line(), "malformed CSV", item_csv.error());
        continue;
      }
      const auto& f = item_csv.fields();
      if (f.size() < ineed) {
        bad.add(item_csv.name(), item_csv.line(), "short row",
                std::to_string(f.size()) + " fields, need " + std::to_string(ineed));
        continue;
      }
      bool utf8 = true;
      for (std::size_t k = 0; k < icols.size(); ++k) utf8 = utf8 && is_valid_utf8(f[icols[k]]);
      if (!utf8) {
        bad.add(item_csv.name(), item_csv.line(), "non-UTF-8 text");
        continue;
      }
      int32_t raw = items.find(trim(f[icols[0]]));
      int32_t d = raw < 0 ? 0 : dense_item[raw];
      if (d == 0) {
        ++report.item_rows_unused;
        continue;
      }
      if (has_text[d]) {
        bad.add(item_csv.name(), item_csv.line(), "duplicate item row");
        continue;
      }
      for (std::size_t k = 0; k < fields.size(); ++k) values[k] = f[icols[k + 1]];
      texts[d] = item_prompt_text(o.prompt, fields, values);
      titles[d] = std::string(values[0]);
      has_text[d] = 1;
    }
  }
  for (int64_t d = 1; d <= n_items; ++d) {
    if (!has_text[d]) {
      ++report.items_without_text;
      texts[d] = o.prompt;  // no text fields: the prompt alone (counted in the report)
    }
    a.item_raw_ids += items.name(raw_of_dense[d]);
    a.item_raw_offsets.push_back(a.item_raw_ids.size());
  }
  a.item_title_offsets = {0, 0};  // row 0 = padding item
  for (int64_t d = 1; d <= n_items; ++d) {
    a.item_titles += titles[d];
    a.item_title_offsets.push_back(a.item_titles.size());
  }

  // 6. Tokenize once (BOS first, cut at max_text_tokens), on every core.
  auto t1 = clock_type::now();
  std::vector<std::string> item_texts(texts.begin() + 1, texts.end());
  std::unique_ptr<tokenizer> tok = make_tokenizer(item_texts);
  std::vector<std::vector<int32_t>> tokens(static_cast<std::size_t>(n_items) + 1);
  {
    progress_bar bar(o.progress, "tokenizing items");
    unsigned n_threads = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
    std::vector<std::thread> pool;
    std::atomic<int64_t> done{0};
    std::vector<std::exception_ptr> failures(n_threads);
    for (unsigned t = 0; t < n_threads; ++t) {
      pool.emplace_back([&, t] {
        try {
          for (int64_t d = 1 + t; d <= n_items; d += n_threads) {
            std::vector<int32_t> ids{tok->bos_id()};
            auto body = tok->encode(texts[d]);
            ids.insert(ids.end(), body.begin(), body.end());
            tokens[d] = std::move(ids);
            ++done;
          }
        } catch (...) {
          failures[t] = std::current_exception();
          done += n_items;  // release the progress loop
        }
      });
    }
    while (done.load() < n_items) {
      bar.update(static_cast<std::size_t>(done.load()), static_cast<std::size_t>(n_items));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (auto& th : pool) th.join();
    for (auto& f : failures) {
      if (f) std::rethrow_exception(f);
    }
    bar.update(1, 1);
  }
  std::vector<int64_t> lengths;
  lengths.reserve(static_cast<std::size_t>(n_items));
  for (int64_t d = 1; d <= n_items; ++d) {
    auto& t = tokens[d];
    if (static_cast<int>(t.size()) > o.max_text_tokens) {
      t.resize(static_cast<std::size_t>(o.max_text_tokens));
      ++report.items_truncated;
    }
    a.item_tokens.insert(a.item_tokens.end(), t.begin(), t.end());
    a.item_token_offsets.push_back(a.item_tokens.size());
    lengths.push_back(static_cast<int64_t>(t.size()));
  }
  std::sort(lengths.begin(), lengths.end());
  for (double q : {0.0, 0.5, 0.9, 0.99, 1.0}) {
    auto k = static_cast<std::size_t>(q * static_cast<double>(lengths.size() - 1) + 0.5);
    report.tokens_per_item_percentiles.push_back(lengths[k]);
  }
  report.tokenize_seconds = seconds_since(t1);

  // 7. Popularity in the training parts; cold = never in one.
  a.item_train_count.assign(static_cast<std::size_t>(n_items) + 1, 0);
  for (int64_t u = 0; u < n_users; ++u) {
    for (uint64_t i = a.seq_offsets[u]; i + 2 < a.seq_offsets[u + 1]; ++i) ++a.item_train_count[a.seq_items[i]];
  }
  report.users = n_users;
  report.items = n_items;
  report.interactions = static_cast<int64_t>(a.seq_items.size());
  report.cold_items = std::count(a.item_train_count.begin() + 1, a.item_train_count.end(), 0);

  dataset_info info;
  info.users = n_users;
  info.items = n_items;
  info.interactions = report.interactions;
  info.cold_items = report.cold_items;
  info.tokens = static_cast<int64_t>(a.item_tokens.size());
  info.max_text_tokens = o.max_text_tokens;
  info.vocab_size = tok->vocab_size();
  info.bos_id = tok->bos_id();
  info.prompt = o.prompt;
  for (const auto& f : fields) info.fields += (info.fields.empty() ? "" : ",") + f;
  info.source = o.source;
  auto t2 = clock_type::now();
  write_dataset(o.out_dir, info, a, tok->serialized_model(), report.to_json(), out_policy);
  report.write_seconds = seconds_since(t2);
  return report;
}

std::string prepare_report::to_json() const {
  nlohmann::json j{{"rows_read", rows_read},
                   {"users", users},
                   {"items", items},
                   {"interactions", interactions},
                   {"cold_items", cold_items},
                   {"items_without_text", items_without_text},
                   {"items_truncated", items_truncated},
                   {"users_too_short", users_too_short},
                   {"kcore_removed", kcore_removed},
                   {"item_rows_unused", item_rows_unused},
                   {"skipped", skipped},
                   {"examples", examples},
                   {"tokens_per_item_p0_p50_p90_p99_p100", tokens_per_item_percentiles},
                   {"parse_seconds", parse_seconds},
                   {"tokenize_seconds", tokenize_seconds}};
  return j.dump();
}

std::string prepare_report::summary() const {
  std::ostringstream s;
  s << "  users            " << users << "\n"
    << "  items            " << items << " (" << cold_items << " cold: never in a training sequence)\n"
    << "  interactions     " << interactions << " (of " << rows_read << " rows read)\n";
  if (tokens_per_item_percentiles.size() == 5) {
    const auto& p = tokens_per_item_percentiles;
    s << "  tokens per item  min " << p[0] << ", p50 " << p[1] << ", p90 " << p[2] << ", p99 " << p[3] << ", max "
      << p[4] << " (" << items_truncated << " items cut)\n";
  }
  s << "  items w/o text   " << items_without_text << "\n"
    << "  users dropped    " << users_too_short << " (fewer than 3 interactions)\n";
  if (kcore_removed > 0) s << "  k-core removed   " << kcore_removed << " interactions\n";
  if (item_rows_unused > 0) s << "  item rows unused " << item_rows_unused << " (no kept interaction)\n";
  int64_t total = 0;
  for (const auto& [reason, n] : skipped) total += n;
  s << "  rows skipped     " << total << "\n";
  for (const auto& [reason, n] : skipped) s << "    " << reason << ": " << n << "\n";
  for (const auto& e : examples) s << "    e.g. " << e << "\n";
  char buf[160];
  std::snprintf(buf, sizeof buf, "  time             parse %.1fs, tokenize %.1fs, write %.1fs\n", parse_seconds,
                tokenize_seconds, write_seconds);
  s << buf;
  return s.str();
}

}  // namespace hllm::storage
