#include "storage/ann_index.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <set>
#include <thread>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <hnswlib/hnswlib.h>

#include "storage/error.hpp"
#include "storage/file_io.hpp"
#include "storage/hnsw_check.hpp"

namespace hllm::storage {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* index_format = "hllm-ann-index";
constexpr int index_format_version = 1;

float dot(const float* a, const float* b, uint32_t dim) {
  float s = 0;
  for (uint32_t i = 0; i < dim; ++i) s += a[i] * b[i];
  return s;
}

std::vector<float> normalized(const float* v, uint32_t dim) {
  std::vector<float> out(v, v + dim);
  l2_normalize_rows(out.data(), 1, dim);
  return out;
}

// Size and XXH3-64 of a whole file, read through a memory map.
std::pair<uint64_t, std::string> file_digest(const std::string& path) {
  auto f = mapped_file::open(path);
  return {f.size(), hash_hex(hash_bytes(f.data(), f.size()))};
}

}  // namespace

void l2_normalize_rows(float* rows, int64_t n, uint32_t dim) {
  for (int64_t r = 0; r < n; ++r) {
    float* v = rows + r * dim;
    const double norm = std::sqrt(static_cast<double>(dot(v, v, dim)));
    if (norm > 0) {
      const float inv = static_cast<float>(1.0 / norm);
      for (uint32_t i = 0; i < dim; ++i) v[i] *= inv;
    }
  }
}

std::vector<ann_hit> exact_top_k(const float* rows, int64_t n, uint32_t dim, const float* query, std::size_t k) {
  k = std::min<std::size_t>(k, static_cast<std::size_t>(std::max<int64_t>(n, 0)));
  std::vector<ann_hit> all(static_cast<std::size_t>(n));
  for (int64_t r = 0; r < n; ++r) all[r] = {r, dot(rows + r * dim, query, dim)};
  auto better = [](const ann_hit& a, const ann_hit& b) {
    return a.score > b.score || (a.score == b.score && a.row < b.row);
  };
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(), better);
  all.resize(k);
  return all;
}

std::size_t shared_rows(const std::vector<ann_hit>& got, const std::vector<ann_hit>& want) {
  std::set<int64_t> g;
  for (const auto& h : got) g.insert(h.row);
  std::size_t hits = 0;
  for (const auto& w : want) hits += g.count(w.row);
  return hits;
}

struct ann_index::impl {
  std::unique_ptr<hnswlib::InnerProductSpace> space;
  std::unique_ptr<hnswlib::HierarchicalNSW<float>> graph;
  ann_params params;
  uint32_t dim = 0;
  int64_t rows = 0;
  std::vector<std::string> ids;
  json meta;
};

ann_index::ann_index(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
ann_index::ann_index(ann_index&&) noexcept = default;
ann_index& ann_index::operator=(ann_index&&) noexcept = default;
ann_index::~ann_index() = default;

ann_index ann_index::build(const float* rows, int64_t n, uint32_t dim, const ann_params& p) {
  if (n < 1 || dim < 1) throw error(errc::invalid_input, "ann index: nothing to index (rows " + std::to_string(n) +
                                                             ", dim " + std::to_string(dim) + ")");
  if (p.m < 2 || p.ef_construction < 1 || p.ef_search < 1) {
    throw error(errc::invalid_input, "ann index: M must be >= 2, ef_construction and ef_search >= 1");
  }
  auto x = std::make_unique<impl>();
  x->params = p;
  x->dim = dim;
  x->rows = n;
  x->space = std::make_unique<hnswlib::InnerProductSpace>(dim);
  x->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(x->space.get(), static_cast<std::size_t>(n), p.m,
                                                               p.ef_construction, p.seed);
  auto insert = [&](int64_t r, std::vector<float>& v) {
    std::copy(rows + r * dim, rows + (r + 1) * dim, v.begin());
    l2_normalize_rows(v.data(), 1, dim);
    x->graph->addPoint(v.data(), static_cast<hnswlib::labeltype>(r));
  };
  const unsigned threads = std::max(1u, std::min<unsigned>(p.threads, static_cast<unsigned>(n)));
  if (threads == 1) {
    std::vector<float> v(dim);
    for (int64_t r = 0; r < n; ++r) insert(r, v);
  } else {
    std::atomic<int64_t> next{0};
    std::vector<std::thread> pool;
    std::exception_ptr failure;
    std::mutex failure_mu;
    for (unsigned t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        std::vector<float> v(dim);
        try {
          for (int64_t r; (r = next.fetch_add(1)) < n;) insert(r, v);
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mu);
          failure = std::current_exception();
          next = n;
        }
      });
    }
    for (auto& t : pool) t.join();
    if (failure) std::rethrow_exception(failure);
  }
  x->graph->setEf(p.ef_search);
  return ann_index(std::move(x));
}

replace_policy ann_index_replace_policy(bool force) {
  replace_policy p;
  p.what = "an ANN index";
  p.how = "hllm index build";
  p.force = force;
  p.is_same_kind = [](const std::string& target) {
    try {
      const json m = json::parse(read_text_file(target + "/meta.json"));
      return m.is_object() && m.value("format", std::string()) == index_format;
    } catch (const std::exception&) {
      return false;
    }
  };
  return p;
}

void ann_index::save(const std::string& dir, const std::vector<std::string>& ids, const json& extra,
                     bool force) const {
  const replace_policy policy = ann_index_replace_policy(force);
  if (static_cast<int64_t>(ids.size()) != impl_->rows) {
    throw error(errc::mismatch, "ann index '" + dir + "': " + std::to_string(ids.size()) + " ids for " +
                                    std::to_string(impl_->rows) + " rows");
  }
  const fs::path target = check_replaceable(dir, policy);
  const fs::path staged = make_staging_directory(target.string());
  try {
    const std::string graph_path = (staged / "index.hnsw").string();
    impl_->graph->saveIndex(graph_path);
    {
      // hnswlib wrote through an ofstream: sync it before the rename publishes it.
      int fd = ::open(graph_path.c_str(), O_RDONLY | O_CLOEXEC);
      const bool synced = fd >= 0 && ::fsync(fd) == 0;
      if (fd >= 0) ::close(fd);
      if (!synced) throw error(errc::io, "ann index: cannot write " + graph_path + " (sync failed)");
    }
    std::string id_text;
    for (const auto& id : ids) {
      if (id.find('\n') != std::string::npos) throw error(errc::invalid_input, "ann index: an item id holds a newline");
      id_text += id;
      id_text += '\n';
    }
    // write_file_durably returns the hash of what it wrote: ids.txt is not read back.
    const std::string ihash =
        hash_hex(write_file_durably((staged / "ids.txt").string(), id_text.data(), id_text.size()));
    const auto ibytes = static_cast<uint64_t>(id_text.size());
    auto [gbytes, ghash] = file_digest(graph_path);
    json meta = extra.is_object() ? extra : json::object();
    meta["format"] = index_format;
    meta["version"] = index_format_version;
    meta["metric"] = "cosine";
    meta["dim"] = impl_->dim;
    meta["rows"] = impl_->rows;
    meta["hnsw"] = {{"M", impl_->params.m},
                    {"ef_construction", impl_->params.ef_construction},
                    {"ef_search", impl_->params.ef_search},
                    {"seed", impl_->params.seed}};
    meta["files"] = {{"index.hnsw", {{"bytes", gbytes}, {"xxh3_64", ghash}}},
                     {"ids.txt", {{"bytes", ibytes}, {"xxh3_64", ihash}}}};
    const std::string text = meta.dump(2) + "\n";
    write_file_durably((staged / "meta.json").string(), text.data(), text.size());
    fsync_directory(staged.string());
    replace_directory_atomically(staged.string(), target.string(), policy);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staged, ec);
    throw;
  }
}

ann_index ann_index::load(const std::string& dir) {
  const std::string meta_path = dir + "/meta.json";
  if (!path_exists(meta_path)) {
    throw error(errc::not_found, "ann index '" + dir + "': no meta.json (not an index directory; build one with "
                                                       "hllm index build)");
  }
  json meta;
  try {
    meta = json::parse(read_text_file(meta_path));
  } catch (const json::exception& e) {
    throw error(errc::format, meta_path + ": not valid JSON (" + e.what() + ")");
  }
  if (!meta.is_object() || meta.value("format", std::string()) != index_format) {
    throw error(errc::format, meta_path + ": not an hllm ANN index (format is not \"" + index_format + "\")");
  }
  if (meta.value("version", 0) != index_format_version) {
    throw error(errc::version, meta_path + ": index format version " + meta.value("version", json()).dump() +
                                   ", this build reads " + std::to_string(index_format_version));
  }
  auto x = std::make_unique<impl>();
  // Sizes must be integers in range: nlohmann converts -1 or 1.5 to an unsigned silently.
  auto count = [&](const json& j, const char* name, uint64_t min, uint64_t max) {
    const json& v = j.at(name);
    if (!v.is_number_unsigned() || v.get<uint64_t>() < min || v.get<uint64_t>() > max) {
      throw error(errc::format, meta_path + ": " + name + " = " + v.dump() + " is not an integer in " +
                                    std::to_string(min) + ".." + std::to_string(max));
    }
    return v.get<uint64_t>();
  };
  try {
    x->dim = static_cast<uint32_t>(count(meta, "dim", 1, 1u << 20));
    x->rows = static_cast<int64_t>(count(meta, "rows", 0, uint64_t{1} << 40));
    const auto& h = meta.at("hnsw");
    x->params.m = static_cast<std::size_t>(count(h, "M", 2, 256));
    x->params.ef_construction = h.at("ef_construction").get<std::size_t>();
    x->params.ef_search = h.at("ef_search").get<std::size_t>();
    x->params.seed = h.at("seed").get<std::size_t>();
    for (const char* name : {"index.hnsw", "ids.txt"}) {
      const std::string path = dir + "/" + name;
      if (!path_exists(path)) throw error(errc::not_found, "ann index '" + dir + "': " + name + " is missing");
      const auto& want = meta.at("files").at(name);
      auto [bytes, hash] = file_digest(path);
      if (bytes != want.at("bytes").get<uint64_t>()) {
        throw error(errc::format, path + ": " + std::to_string(bytes) + " bytes, meta.json says " +
                                      want.at("bytes").dump() + " (truncated or replaced)");
      }
      if (hash != want.at("xxh3_64").get<std::string>()) {
        throw error(errc::checksum, path + ": checksum " + hash + " does not match meta.json (" +
                                        want.at("xxh3_64").get<std::string>() + "): the index is damaged");
      }
    }
  } catch (const json::exception& e) {
    throw error(errc::format, meta_path + ": missing or malformed field (" + e.what() + ")");
  }
  {
    std::ifstream in(dir + "/ids.txt");
    std::string line;
    while (std::getline(in, line)) x->ids.push_back(line);
  }
  if (static_cast<int64_t>(x->ids.size()) != x->rows) {
    throw error(errc::format, dir + "/ids.txt: " + std::to_string(x->ids.size()) + " ids, meta.json says " +
                                  std::to_string(x->rows) + " rows");
  }
  const std::string graph_path = dir + "/index.hnsw";
  {
    // A file whose checksum matches but whose content is not this index (a bug, another hnswlib version, a crafted
    // file, a meta.json naming another dim) would crash hnswlib: check its header against meta.json first.
    const auto m = mapped_file::open(graph_path);
    check_hnsw_header(std::string_view(reinterpret_cast<const char*>(m.data()), m.size()), x->dim, x->rows,
                      x->params.m, graph_path);
  }
  x->space = std::make_unique<hnswlib::InnerProductSpace>(x->dim);
  try {
    x->graph = std::make_unique<hnswlib::HierarchicalNSW<float>>(x->space.get(), graph_path, false,
                                                                 static_cast<std::size_t>(x->rows));
  } catch (const std::exception& e) {
    throw error(errc::format, graph_path + ": hnswlib cannot read it (" + e.what() + ")");
  }
  check_hnsw_graph(*x->graph, x->rows, graph_path);
  if (static_cast<int64_t>(x->graph->cur_element_count) != x->rows) {
    throw error(errc::format, dir + "/index.hnsw: holds " + std::to_string(x->graph->cur_element_count) +
                                  " rows, meta.json says " + std::to_string(x->rows));
  }
  x->graph->setEf(x->params.ef_search);
  x->meta = std::move(meta);
  return ann_index(std::move(x));
}

std::vector<ann_hit> ann_index::search(const float* query, std::size_t k) const {
  k = std::min<std::size_t>(k, static_cast<std::size_t>(impl_->rows));
  if (k == 0) return {};
  const auto q = normalized(query, impl_->dim);
  auto pq = impl_->graph->searchKnn(q.data(), k);
  std::vector<ann_hit> out(pq.size());
  for (std::size_t i = pq.size(); i-- > 0;) {  // the queue pops the farthest first
    out[i] = {static_cast<int64_t>(pq.top().second), 1.0f - pq.top().first};
    pq.pop();
  }
  return out;
}

void ann_index::set_ef_search(std::size_t ef) {
  impl_->params.ef_search = std::max<std::size_t>(ef, 1);
  impl_->graph->setEf(impl_->params.ef_search);
}

int64_t ann_index::rows() const { return impl_->rows; }
uint32_t ann_index::dim() const { return impl_->dim; }
const ann_params& ann_index::params() const { return impl_->params; }
const std::vector<std::string>& ann_index::ids() const { return impl_->ids; }
const json& ann_index::meta() const { return impl_->meta; }

}  // namespace hllm::storage
