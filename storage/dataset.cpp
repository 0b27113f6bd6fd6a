#include "storage/dataset.hpp"

#include <unistd.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm::storage {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct file_spec {
  const char* name;
  std::size_t elem_size;
};

// Every array file, in manifest order.
constexpr file_spec array_files[] = {
    {"item_token_offsets.u64", 8}, {"item_tokens.i32", 4},    {"item_raw_offsets.u64", 8},
    {"item_raw_ids.bin", 1},       {"user_raw_offsets.u64", 8}, {"user_raw_ids.bin", 1},
    {"seq_offsets.u64", 8},        {"seq_items.i32", 4},      {"seq_times.i64", 8},
    {"item_train_count.i64", 8},
};

template <class T>
std::pair<const void*, std::size_t> bytes_of(const std::vector<T>& v) {
  return {v.data(), v.size() * sizeof(T)};
}
std::pair<const void*, std::size_t> bytes_of(const std::string& s) { return {s.data(), s.size()}; }

json info_to_json(const dataset_info& i) {
  return json{{"users", i.users},
              {"items", i.items},
              {"interactions", i.interactions},
              {"cold_items", i.cold_items},
              {"tokens", i.tokens},
              {"max_text_tokens", i.max_text_tokens},
              {"vocab_size", i.vocab_size},
              {"bos_id", i.bos_id},
              {"prompt", i.prompt},
              {"fields", i.fields},
              {"source", i.source}};
}

dataset_info info_from_json(const json& j) {
  dataset_info i;
  i.users = j.at("users").get<int64_t>();
  i.items = j.at("items").get<int64_t>();
  i.interactions = j.at("interactions").get<int64_t>();
  i.cold_items = j.at("cold_items").get<int64_t>();
  i.tokens = j.at("tokens").get<int64_t>();
  i.max_text_tokens = j.at("max_text_tokens").get<int32_t>();
  i.vocab_size = j.at("vocab_size").get<int32_t>();
  i.bos_id = j.at("bos_id").get<int32_t>();
  i.prompt = j.at("prompt").get<std::string>();
  i.fields = j.at("fields").get<std::string>();
  i.source = j.value("source", "");
  return i;
}

}  // namespace

replace_policy dataset_replace_policy(bool items_only, bool force, std::vector<std::string> protect) {
  replace_policy p;
  p.what = items_only ? "an items-only dataset" : "a prepared dataset";
  p.how = items_only ? "hllm prepare --new-items" : "hllm prepare";
  p.force = force;
  p.protect = std::move(protect);
  p.is_same_kind = [items_only](const std::string& target) {
    try {
      const json m = json::parse(read_text_file(target + "/manifest.json"));
      if (!m.is_object() || m.value("format", std::string()) != dataset_format) return false;
      // A training dataset (users > 0) is never replaced by an items-only one.
      const int64_t users = m.at("info").value("users", int64_t{0});
      return !items_only || users == 0;
    } catch (const std::exception&) {
      return false;
    }
  };
  return p;
}

void write_dataset(const std::string& dir, const dataset_info& info, const dataset_arrays& a,
                   const std::string& tokenizer_model, const std::string& report_json) {
  write_dataset(dir, info, a, tokenizer_model, report_json, dataset_replace_policy(info.users == 0, false, {}));
}

void write_dataset(const std::string& dir, const dataset_info& info, const dataset_arrays& a,
                   const std::string& tokenizer_model, const std::string& report_json, const replace_policy& policy) {
  const fs::path target = check_replaceable(dir, policy);
  const fs::path staged = make_staging_directory(target.string());
  std::error_code ec;
  try {
    const std::pair<const void*, std::size_t> contents[] = {
        bytes_of(a.item_token_offsets), bytes_of(a.item_tokens), bytes_of(a.item_raw_offsets),
        bytes_of(a.item_raw_ids),       bytes_of(a.user_raw_offsets), bytes_of(a.user_raw_ids),
        bytes_of(a.seq_offsets),        bytes_of(a.seq_items),   bytes_of(a.seq_times),
        bytes_of(a.item_train_count),
    };
    json files = json::object();
    for (std::size_t k = 0; k < std::size(array_files); ++k) {
      auto [data, size] = contents[k];
      uint64_t h = write_file_durably((staged / array_files[k].name).string(), data, size);
      files[array_files[k].name] = json{{"bytes", size}, {"xxh3_64", hash_hex(h)}};
    }
    if (!a.item_title_offsets.empty()) {
      for (const auto& [name, bytes] : {std::pair{"item_title_offsets.u64", bytes_of(a.item_title_offsets)},
                                        std::pair{"item_titles.bin", bytes_of(a.item_titles)}}) {
        uint64_t th = write_file_durably((staged / name).string(), bytes.first, bytes.second);
        files[name] = json{{"bytes", bytes.second}, {"xxh3_64", hash_hex(th)}};
      }
    }
    uint64_t h = write_file_durably((staged / "tokenizer.model").string(), tokenizer_model.data(),
                                    tokenizer_model.size());
    files["tokenizer.model"] = json{{"bytes", tokenizer_model.size()}, {"xxh3_64", hash_hex(h)}};
    json manifest{{"format", dataset_format},
                  {"version", dataset_format_version},
                  {"info", info_to_json(info)},
                  {"files", files},
                  {"report", report_json.empty() ? json::object() : json::parse(report_json)}};
    std::string text = manifest.dump(2) + "\n";
    write_file_durably((staged / "manifest.json").string(), text.data(), text.size());
    fsync_directory(staged.string());
    replace_directory_atomically(staged.string(), target.string(), policy);
  } catch (...) {
    fs::remove_all(staged, ec);
    throw;
  }
}

struct dataset::impl {
  std::string dir;
  dataset_info info;
  std::map<std::string, mapped_file> maps;

  template <class T>
  span<const T> array(const char* name) const {
    const mapped_file& m = maps.at(name);
    return {reinterpret_cast<const T*>(m.data()), m.size() / sizeof(T)};
  }
  span<const uint64_t> item_token_offsets, item_raw_offsets, user_raw_offsets, seq_offsets;
  span<const int32_t> item_tokens, seq_items;
  span<const int64_t> seq_times, item_train_count;
  span<const char> item_raw_ids, user_raw_ids;
  span<const uint64_t> item_title_offsets;  // empty: no titles
  span<const char> item_titles;
};

namespace {

[[noreturn]] void corrupt(const std::string& dir, const std::string& file, const std::string& why) {
  throw error(errc::format, "dataset '" + dir + "': " + file + ": " + why);
}

// Offsets must start at 0, never decrease and end at the size of the array they index; then no access can go
// out of bounds however the bytes were damaged.
void check_offsets(const std::string& dir, const char* name, span<const uint64_t> off, std::size_t rows,
                   std::size_t target_size) {
  if (off.size() != rows + 1) {
    corrupt(dir, name, "has " + std::to_string(off.size()) + " offsets, expected " + std::to_string(rows + 1));
  }
  if (off[0] != 0) corrupt(dir, name, "first offset is not 0");
  for (std::size_t i = 1; i < off.size(); ++i) {
    if (off[i] < off[i - 1]) corrupt(dir, name, "offsets decrease at row " + std::to_string(i));
  }
  if (off.back() != target_size) {
    corrupt(dir, name, "last offset " + std::to_string(off.back()) + " != data size " + std::to_string(target_size));
  }
}

}  // namespace

dataset dataset::open(const std::string& dir, bool verify) {
  auto p = std::make_unique<impl>();
  p->dir = dir;
  std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(manifest_path)) {
    throw error(errc::not_found, "dataset '" + dir + "': no manifest.json (not a prepared dataset; run `hllm prepare`)");
  }
  json manifest;
  try {
    manifest = json::parse(read_text_file(manifest_path));
  } catch (const json::exception& e) {
    corrupt(dir, "manifest.json", std::string("not valid JSON: ") + e.what());
  }
  try {
    if (manifest.at("format").get<std::string>() != dataset_format) corrupt(dir, "manifest.json", "wrong format tag");
    int version = manifest.at("version").get<int>();
    if (version != dataset_format_version) {
      throw error(errc::version, "dataset '" + dir + "': format version " + std::to_string(version) +
                                     ", this build reads version " + std::to_string(dataset_format_version));
    }
    p->info = info_from_json(manifest.at("info"));
    const json& files = manifest.at("files");
    for (const auto& spec : array_files) {
      const json& f = files.at(spec.name);
      mapped_file m = mapped_file::open((fs::path(dir) / spec.name).string());
      auto bytes = f.at("bytes").get<uint64_t>();
      if (m.size() != bytes) {
        corrupt(dir, spec.name, "size " + std::to_string(m.size()) + " bytes, manifest says " + std::to_string(bytes));
      }
      if (m.size() % spec.elem_size != 0) corrupt(dir, spec.name, "size is not a multiple of the element size");
      if (verify && hash_hex(hash_bytes(m.data(), m.size())) != f.at("xxh3_64").get<std::string>()) {
        throw error(errc::checksum, "dataset '" + dir + "': " + spec.name + ": checksum mismatch (file damaged)");
      }
      p->maps.emplace(spec.name, std::move(m));
    }
    // Optional files (stage 3 titles): checked like the others when the manifest lists them.
    for (const char* name : {"item_title_offsets.u64", "item_titles.bin"}) {
      if (!files.contains(name)) continue;
      const json& f = files.at(name);
      mapped_file m = mapped_file::open((fs::path(dir) / name).string());
      if (m.size() != f.at("bytes").get<uint64_t>()) corrupt(dir, name, "size differs from the manifest");
      if (verify && hash_hex(hash_bytes(m.data(), m.size())) != f.at("xxh3_64").get<std::string>()) {
        throw error(errc::checksum, "dataset '" + dir + "': " + name + ": checksum mismatch (file damaged)");
      }
      p->maps.emplace(name, std::move(m));
    }
  } catch (const json::exception& e) {
    corrupt(dir, "manifest.json", std::string("missing or mistyped field: ") + e.what());
  }
  p->item_token_offsets = p->array<uint64_t>("item_token_offsets.u64");
  p->item_tokens = p->array<int32_t>("item_tokens.i32");
  p->item_raw_offsets = p->array<uint64_t>("item_raw_offsets.u64");
  p->item_raw_ids = p->array<char>("item_raw_ids.bin");
  p->user_raw_offsets = p->array<uint64_t>("user_raw_offsets.u64");
  p->user_raw_ids = p->array<char>("user_raw_ids.bin");
  p->seq_offsets = p->array<uint64_t>("seq_offsets.u64");
  p->seq_items = p->array<int32_t>("seq_items.i32");
  p->seq_times = p->array<int64_t>("seq_times.i64");
  p->item_train_count = p->array<int64_t>("item_train_count.i64");
  if (p->maps.count("item_title_offsets.u64") && p->maps.count("item_titles.bin")) {
    p->item_title_offsets = p->array<uint64_t>("item_title_offsets.u64");
    p->item_titles = p->array<char>("item_titles.bin");
    check_offsets(dir, "item_title_offsets.u64", p->item_title_offsets, static_cast<std::size_t>(p->info.items) + 1,
                  p->item_titles.size());
  }

  const auto items = static_cast<std::size_t>(p->info.items);
  const auto users = static_cast<std::size_t>(p->info.users);
  check_offsets(dir, "item_token_offsets.u64", p->item_token_offsets, items + 1, p->item_tokens.size());
  check_offsets(dir, "item_raw_offsets.u64", p->item_raw_offsets, items + 1, p->item_raw_ids.size());
  check_offsets(dir, "user_raw_offsets.u64", p->user_raw_offsets, users, p->user_raw_ids.size());
  check_offsets(dir, "seq_offsets.u64", p->seq_offsets, users, p->seq_items.size());
  if (p->seq_times.size() != p->seq_items.size()) corrupt(dir, "seq_times.i64", "length differs from seq_items");
  if (p->item_train_count.size() != items + 1) corrupt(dir, "item_train_count.i64", "wrong length");
  for (std::size_t u = 0; u < users; ++u) {
    if (p->seq_offsets[u + 1] - p->seq_offsets[u] < 3) {
      corrupt(dir, "seq_offsets.u64", "user " + std::to_string(u) + " has fewer than 3 interactions");
    }
  }
  for (int32_t v : p->seq_items) {
    if (v < 1 || static_cast<std::size_t>(v) > items) corrupt(dir, "seq_items.i32", "item id out of range");
  }
  return dataset(std::move(p));
}

dataset::dataset(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
dataset::dataset(dataset&&) noexcept = default;
dataset& dataset::operator=(dataset&&) noexcept = default;
dataset::~dataset() = default;

const dataset_info& dataset::info() const { return impl_->info; }
const std::string& dataset::dir() const { return impl_->dir; }

span<const int32_t> dataset::item_tokens(int32_t item) const {
  const auto& off = impl_->item_token_offsets;
  return impl_->item_tokens.subspan(off[item], off[item + 1] - off[item]);
}

std::string_view dataset::raw_item_id(int32_t item) const {
  const auto& off = impl_->item_raw_offsets;
  return {impl_->item_raw_ids.data() + off[item], off[item + 1] - off[item]};
}

std::string_view dataset::item_title(int32_t item) const {
  const auto& off = impl_->item_title_offsets;
  if (off.empty() || item < 0 || static_cast<std::size_t>(item) + 1 >= off.size()) return {};
  return {impl_->item_titles.data() + off[item], off[item + 1] - off[item]};
}

bool dataset::has_titles() const { return !impl_->item_title_offsets.empty(); }

std::string_view dataset::raw_user_id(int64_t user) const {
  const auto& off = impl_->user_raw_offsets;
  return {impl_->user_raw_ids.data() + off[user], off[user + 1] - off[user]};
}

span<const int32_t> dataset::user_sequence(int64_t user) const {
  const auto& off = impl_->seq_offsets;
  return impl_->seq_items.subspan(off[user], off[user + 1] - off[user]);
}

span<const int64_t> dataset::user_times(int64_t user) const {
  const auto& off = impl_->seq_offsets;
  return impl_->seq_times.subspan(off[user], off[user + 1] - off[user]);
}

span<const int32_t> dataset::train_sequence(int64_t user) const {
  auto s = user_sequence(user);
  return s.subspan(0, s.size() - 2);
}

int32_t dataset::valid_target(int64_t user) const {
  auto s = user_sequence(user);
  return s[s.size() - 2];
}

int32_t dataset::test_target(int64_t user) const { return user_sequence(user).back(); }

int64_t dataset::train_count(int32_t item) const { return impl_->item_train_count[item]; }

span<const uint64_t> dataset::seq_offsets() const { return impl_->seq_offsets; }
span<const int32_t> dataset::seq_items() const { return impl_->seq_items; }
span<const int64_t> dataset::seq_times() const { return impl_->seq_times; }
span<const uint64_t> dataset::item_token_offsets() const { return impl_->item_token_offsets; }
span<const int32_t> dataset::item_tokens_all() const { return impl_->item_tokens; }
span<const int64_t> dataset::item_train_counts() const { return impl_->item_train_count; }

}  // namespace hllm::storage
