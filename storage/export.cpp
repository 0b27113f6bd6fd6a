#include "storage/export.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <xxhash.h>

#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/npy.hpp"
#include "storage/number.hpp"

namespace hllm::storage {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* export_format = "hllm-export";
constexpr int export_format_version = 1;

// The commit record of an export being replaced: once it exists, the new files (still under temporary names) are
// the export, and whoever finds it finishes the renames (roll forward). Written atomically, removed last.
std::string commit_record_path(const export_files& p) {
  const fs::path n(p.npy);
  return (n.parent_path() / ("." + n.filename().string() + ".commit.json")).string();
}

std::string directory_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// Finishes an interrupted write_export: renames every staged file its commit record names, then drops the record.
void recover_export(const export_files& p) {
  const std::string rec = commit_record_path(p);
  if (!path_exists(rec)) return;
  json r;
  try {
    r = json::parse(read_text_file(rec));
  } catch (const json::exception& e) {
    throw error(errc::format, rec + ": not valid JSON (" + e.what() + "); remove it and export again");
  }
  for (const auto& f : r.at("files")) {
    const std::string from = f.at(0).get<std::string>(), to = f.at(1).get<std::string>();
    if (path_exists(from) && std::rename(from.c_str(), to.c_str()) != 0) {
      throw error(errc::io, "cannot finish the interrupted export " + p.npy + ": rename '" + from + "' to '" + to +
                                "': " + std::strerror(errno));
    }
  }
  fsync_directory(directory_of(p.npy));
  if (std::remove(rec.c_str()) != 0 && errno != ENOENT) {
    throw error(errc::io, "cannot remove " + rec + ": " + std::strerror(errno));
  }
  fsync_directory(directory_of(p.npy));
}

// Serializes writers of one export (two exports to one path run one after the other, never interleaved).
class export_lock {
 public:
  explicit export_lock(const export_files& p) {
    const fs::path n(p.npy);
    path_ = (n.parent_path() / ("." + n.filename().string() + ".lock")).string();
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw error(errc::io, "cannot create lock file '" + path_ + "': " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      throw error(errc::io, "cannot lock '" + path_ + "': " + std::strerror(errno));
    }
  }
  ~export_lock() { ::close(fd_); }
  export_lock(const export_lock&) = delete;
  export_lock& operator=(const export_lock&) = delete;

 private:
  std::string path_;
  int fd_ = -1;
};

// Refuses to write over files that are not an hllm export (a user's own .npy, a directory) unless `force`.
void check_export_target(const export_files& p, bool force) {
  bool any = false;
  for (const std::string* f : {&p.npy, &p.ids, &p.fingerprints, &p.meta}) {
    std::error_code ec;
    const auto st = fs::symlink_status(*f, ec);
    if (!fs::exists(st)) continue;
    if (fs::is_directory(st)) {
      throw error(errc::invalid_input, "refusing to write the export " + p.npy + ": '" + *f +
                                           "' is a directory; give --out another .npy path");
    }
    any = true;
  }
  if (!any || force) return;
  try {
    const json m = json::parse(read_text_file(p.meta));
    if (m.is_object() && m.value("format", std::string()) == export_format) return;
  } catch (const std::exception&) {
  }
  throw error(errc::invalid_input, "refusing to replace " + p.npy + ": files of that name exist but " + p.meta +
                                       " does not describe an hllm export; give --out another path, or pass "
                                       "--force to replace them");
}

}  // namespace

cache_reader cache_reader::open(const std::string& cache_dir, const std::string& expected_version) {
  cache_reader c;
  c.dir_ = cache_dir;
  if (!fs::is_directory(cache_dir)) {
    throw error(errc::not_found, "embedding cache '" + cache_dir + "' does not exist (run the job's cache stage, "
                                                                   "or hllm train --resume auto with stage \"cache\")");
  }
  // shard-i-of-S.emb: find S from the files, then require every i < S.
  static const std::regex name_re(R"(shard-(\d+)-of-(\d+)\.emb)");
  std::map<uint32_t, std::set<uint32_t>> sets;
  for (const auto& e : fs::directory_iterator(cache_dir)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, name_re)) {
      const std::string where = cache_dir + "/" + name;
      const auto count = parse_int<uint32_t>(m[2].str(), "shard count in " + where, 1, 1u << 20);
      const auto index = parse_int<uint32_t>(m[1].str(), "shard index in " + where, 0, count - 1);
      sets[count].insert(index);
    }
  }
  if (sets.empty()) throw error(errc::not_found, "embedding cache '" + cache_dir + "': no shard-i-of-S.emb files");
  if (sets.size() > 1) {
    throw error(errc::mismatch, "embedding cache '" + cache_dir + "': shard files of " + std::to_string(sets.size()) +
                                    " different shard counts; remove the stale ones");
  }
  const uint32_t count = sets.begin()->first;
  for (uint32_t i = 0; i < count; ++i) {
    const std::string path = cache_dir + "/shard-" + std::to_string(i) + "-of-" + std::to_string(count) + ".emb";
    if (!sets.begin()->second.count(i)) throw error(errc::not_found, "embedding cache: " + path + " is missing");
    auto f = embedding_shard_file::open(path);
    const auto& h = f.header();
    if (h.dtype != embedding_dtype::f32) throw error(errc::format, path + ": rows are not float32");
    const std::string v = hash_hex(h.item_llm_hash);
    if (i == 0) {
      c.version_ = v;
      c.dim_ = h.dim;
    } else if (v != c.version_ || h.dim != c.dim_) {
      throw error(errc::mismatch, path + ": version " + v + " dim " + std::to_string(h.dim) + ", shard 0 has " +
                                      c.version_ + " dim " + std::to_string(c.dim_));
    }
    c.files_.push_back(std::move(f));
  }
  if (!expected_version.empty() && c.version_ != expected_version) {
    throw error(errc::mismatch, "embedding cache '" + cache_dir + "' holds rows of Item-LLM version " + c.version_ +
                                    ", expected " + expected_version + " (the cache is stale: run the cache stage)");
  }
  return c;
}

bool cache_reader::present(int64_t item) const {
  return item > 0 && files_[static_cast<uint64_t>(item) % files_.size()].present(item);
}

void cache_reader::row(int64_t item, float* out) const {
  if (item <= 0) throw error(errc::not_found, "embedding cache: item " + std::to_string(item) + " is not an item");
  const auto& f = files_[static_cast<uint64_t>(item) % files_.size()];
  if (!f.present(item)) {
    throw error(errc::not_found, "embedding cache '" + dir_ + "': no row for item " + std::to_string(item) +
                                     " (the cache is incomplete: resume the job's cache stage)");
  }
  auto r = f.row(item);
  std::memcpy(out, r.data(), r.size());
}

std::vector<float> cache_reader::matrix(int64_t num_items) const {
  std::vector<float> m(static_cast<std::size_t>(num_items + 1) * dim_, 0.0f);
  for (int64_t i = 1; i <= num_items; ++i) row(i, m.data() + static_cast<std::size_t>(i) * dim_);
  return m;
}

export_files export_paths(const std::string& npy) {
  const bool has = npy.size() > 4 && npy.compare(npy.size() - 4, 4, ".npy") == 0;
  const std::string stem = has ? npy.substr(0, npy.size() - 4) : npy;
  return {stem + ".npy", stem + ".ids.txt", stem + ".fp.u64", stem + ".meta.json"};
}

void write_export(const std::string& npy, const export_data& e, bool force) {
  const auto p = export_paths(npy);
  if (static_cast<int64_t>(e.ids.size()) != e.rows || static_cast<int64_t>(e.fingerprints.size()) != e.rows ||
      e.matrix.size() != static_cast<std::size_t>(e.rows) * e.dim) {
    throw error(errc::invalid_input, "export " + p.npy + ": rows, ids, fingerprints and matrix disagree");
  }
  std::string ids;
  for (const auto& id : e.ids) {
    if (id.find('\n') != std::string::npos) throw error(errc::invalid_input, "export: an id holds a newline: " + id);
    ids += id;
    ids += '\n';
  }
  if (auto parent = fs::path(p.npy).parent_path(); !parent.empty()) fs::create_directories(parent);
  export_lock lock(p);
  recover_export(p);
  check_export_target(p, force);
  json meta = e.meta.is_object() ? e.meta : json::object();
  meta["format"] = export_format;
  meta["version"] = export_format_version;
  meta["rows"] = e.rows;
  meta["dim"] = e.dim;
  meta["ids_xxh3_64"] = hash_hex(hash_bytes(ids.data(), ids.size()));
  meta["matrix_xxh3_64"] = hash_hex(hash_bytes(e.matrix.data(), e.matrix.size() * sizeof(float)));
  meta["fp_xxh3_64"] = hash_hex(hash_bytes(e.fingerprints.data(), e.fingerprints.size() * sizeof(uint64_t)));
  const std::string text = meta.dump(2) + "\n";
  // 1. The four new files under temporary names; 2. the commit record (the commit point); 3. the renames;
  // 4. the record removed. A crash before 2 leaves the old export (and stray temporaries); after 2, the next hllm
  // command that reads or writes this export finishes the renames (recover_export): old or new, never a mix.
  const std::string t_npy = temporary_path_beside(p.npy), t_ids = temporary_path_beside(p.ids),
                    t_fp = temporary_path_beside(p.fingerprints), t_meta = temporary_path_beside(p.meta);
  const std::vector<std::pair<std::string, std::string>> moves{
      {t_npy, p.npy}, {t_ids, p.ids}, {t_fp, p.fingerprints}, {t_meta, p.meta}};
  try {
    write_npy_f32(t_npy, e.matrix.data(), e.rows, e.dim);
    write_file_durably(t_ids, ids.data(), ids.size());
    write_file_durably(t_fp, e.fingerprints.data(), e.fingerprints.size() * sizeof(uint64_t));
    write_file_durably(t_meta, text.data(), text.size());
    json rec{{"files", json::array()}};
    for (const auto& [from, to] : moves) rec["files"].push_back({from, to});
    const std::string rtext = rec.dump() + "\n";
    write_file_durably(commit_record_path(p), rtext.data(), rtext.size());
  } catch (...) {
    for (const auto& m : moves) std::remove(m.first.c_str());
    throw;
  }
  recover_export(p);
}

json read_export_meta(const std::string& npy) {
  const auto p = export_paths(npy);
  if (path_exists(commit_record_path(p))) {
    export_lock lock(p);
    recover_export(p);
  }
  if (!path_exists(p.meta)) {
    throw error(errc::not_found, p.meta + " does not exist (" + p.npy + " is not an hllm export: make one with "
                                                                        "hllm export items|users)");
  }
  json meta;
  try {
    meta = json::parse(read_text_file(p.meta));
  } catch (const json::exception& e) {
    throw error(errc::format, p.meta + ": not valid JSON (" + e.what() + ")");
  }
  if (!meta.is_object() || meta.value("format", std::string()) != export_format) {
    throw error(errc::format, p.meta + ": not an hllm export (format is not \"" + export_format + "\")");
  }
  if (meta.value("version", 0) != export_format_version) {
    throw error(errc::version, p.meta + ": export format version " + meta.value("version", json()).dump() +
                                   ", this build reads " + std::to_string(export_format_version));
  }
  return meta;
}

export_data read_export(const std::string& npy) {
  const auto p = export_paths(npy);
  export_data e;
  e.meta = read_export_meta(npy);
  auto m = read_npy_f32(p.npy);
  e.rows = m.rows;
  e.dim = static_cast<uint32_t>(m.cols);
  e.matrix = std::move(m.data);
  const std::string ids = read_text_file(p.ids);
  if (hash_hex(hash_bytes(ids.data(), ids.size())) != e.meta.value("ids_xxh3_64", std::string())) {
    throw error(errc::checksum, p.ids + ": does not match " + p.meta + " (the export's files come from different runs)");
  }
  for (std::size_t a = 0; a < ids.size();) {
    const auto b = ids.find('\n', a);
    e.ids.push_back(ids.substr(a, b == std::string::npos ? std::string::npos : b - a));
    if (b == std::string::npos) break;
    a = b + 1;
  }
  const std::string fp = read_text_file(p.fingerprints);
  if (fp.size() % 8 != 0) throw error(errc::format, p.fingerprints + ": size is not a multiple of 8");
  // Exports written since the atomic-write change also name the matrix's and the fingerprints' hashes.
  if (e.meta.contains("matrix_xxh3_64") &&
      hash_hex(hash_bytes(e.matrix.data(), e.matrix.size() * sizeof(float))) != e.meta.value("matrix_xxh3_64", "")) {
    throw error(errc::checksum, p.npy + ": rows do not match " + p.meta + " (damaged, or from another run)");
  }
  if (e.meta.contains("fp_xxh3_64") && hash_hex(hash_bytes(fp.data(), fp.size())) != e.meta.value("fp_xxh3_64", "")) {
    throw error(errc::checksum, p.fingerprints + ": does not match " + p.meta + " (damaged, or from another run)");
  }
  e.fingerprints.resize(fp.size() / 8);
  std::memcpy(e.fingerprints.data(), fp.data(), fp.size());
  const auto want = e.meta.value("rows", int64_t{-1});
  if (e.rows != want || static_cast<int64_t>(e.ids.size()) != want ||
      static_cast<int64_t>(e.fingerprints.size()) != want || e.meta.value("dim", 0u) != e.dim) {
    throw error(errc::format, "export " + p.npy + ": " + std::to_string(e.rows) + " rows x " + std::to_string(e.dim) +
                                  ", " + std::to_string(e.ids.size()) + " ids, " + std::to_string(e.fingerprints.size()) +
                                  " fingerprints; " + p.meta + " says " + std::to_string(want) + " rows");
  }
  return e;
}

void append_export(const std::string& npy, const export_data& more) {
  auto e = read_export(npy);
  for (const char* key : {"kind", "item_version"}) {
    const auto a = e.meta.value(key, std::string()), b = more.meta.value(key, std::string());
    if (a != b) {
      throw error(errc::mismatch, "cannot append to " + npy + ": its " + key + " is '" + a + "', the new rows' '" + b +
                                      "' (encode them with the same Item-LLM checkpoint)");
    }
  }
  if (more.dim != e.dim) {
    throw error(errc::mismatch, "cannot append to " + npy + ": dim " + std::to_string(e.dim) + ", new rows " +
                                    std::to_string(more.dim));
  }
  std::set<std::string> have(e.ids.begin(), e.ids.end());
  for (const auto& id : more.ids) {
    if (have.count(id)) {
      throw error(errc::mismatch, "cannot append to " + npy + ": item '" + id + "' is already in it");
    }
  }
  e.matrix.insert(e.matrix.end(), more.matrix.begin(), more.matrix.end());
  e.ids.insert(e.ids.end(), more.ids.begin(), more.ids.end());
  e.fingerprints.insert(e.fingerprints.end(), more.fingerprints.begin(), more.fingerprints.end());
  e.rows += more.rows;
  e.meta["appended_rows"] = e.meta.value("appended_rows", int64_t{0}) + more.rows;
  write_export(npy, e, false);
}

uint64_t row_fingerprint(const std::string& model_version, const std::string& key, const void* input,
                         std::size_t bytes) {
  XXH3_state_t* s = XXH3_createState();
  XXH3_64bits_reset(s);
  XXH3_64bits_update(s, model_version.data(), model_version.size());
  XXH3_64bits_update(s, "", 1);  // the terminating zero: separates the parts
  XXH3_64bits_update(s, key.data(), key.size());
  XXH3_64bits_update(s, "", 1);
  XXH3_64bits_update(s, input, bytes);
  const uint64_t h = XXH3_64bits_digest(s);
  XXH3_freeState(s);
  return h;
}

}  // namespace hllm::storage
