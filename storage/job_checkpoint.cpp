#include "storage/job_checkpoint.hpp"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm::storage {
namespace fs = std::filesystem;
using nlohmann::json;

std::string checkpoint_version_hex(const std::string& checkpoint_dir) {
  return hash_hex(hash_file(checkpoint_dir + "/model.safetensors"));
}

namespace job_checkpoint {
namespace {

// state.json's serial, -1 when the file is missing, does not parse or has no integer serial.
int64_t serial_of(const std::string& dir) {
  try {
    auto s = json::parse(read_text_file(dir + "/" + state_name), nullptr, false);
    if (!s.is_discarded()) return s.value("serial", int64_t{-1});
  } catch (const std::exception&) {
  }
  return -1;
}

}  // namespace

std::string root_of(const std::string& job_dir) { return job_dir + "/checkpoints"; }

std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string rel = fs::relative(e.path(), dir).string();
    if (rel != manifest_name) out.push_back(rel);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void write_manifest(const std::string& dir) {
  json files = json::object();
  for (const auto& rel : files_under(dir)) {
    const std::string p = dir + "/" + rel;
    files[rel] = {{"bytes", fs::file_size(p)}, {"xxh3", hash_hex(hash_file(p))}};
  }
  const std::string text = json{{"files", files}}.dump(1) + "\n";
  write_file_durably(dir + "/" + manifest_name, text.data(), text.size());
}

uint64_t write(const std::string& job_dir, const std::string& name, json state,
               const std::function<void(const std::string& dir)>& write_files) {
  const std::string root = root_of(job_dir);
  const std::string tmp = root + "/" + temporary_prefix + name;
  uint64_t bytes = 0;
  try {
    fs::create_directories(root);
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp);
    write_files(tmp);
    state["format"] = state_format;
    state["version"] = state_version;
    const std::string text = state.dump(1) + "\n";
    write_file_durably(tmp + "/" + state_name, text.data(), text.size());
    for (const auto& e : fs::recursive_directory_iterator(tmp)) {
      if (e.is_directory()) fsync_directory(e.path().string());
    }
    write_manifest(tmp);
    fsync_directory(tmp);
    for (const auto& rel : files_under(tmp)) bytes += fs::file_size(tmp + "/" + rel);
    replace_directory_atomically(tmp, root + "/" + name);
    fsync_directory(root);
    const std::string pointer = name + "\n";
    write_file_durably(root + "/" + latest_name, pointer.data(), pointer.size());  // atomic replace
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw error(errc::io, "cannot write checkpoint " + name + " under '" + root + "': " + e.what() +
                              " (the job stops; earlier checkpoints are intact)");
  }
  return bytes;
}

std::vector<found> scan(const std::string& job_dir, const std::string& except) {
  std::vector<found> out;
  const std::string root = root_of(job_dir);
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    std::string name = e.path().filename().string();
    if (!e.is_directory() || name.empty() || name[0] == '.' || name == except) continue;
    found f;
    f.dir = e.path().string();
    f.serial = serial_of(f.dir);
    f.name = std::move(name);
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(), [](const found& a, const found& b) {
    return a.serial != b.serial ? a.serial > b.serial : a.name > b.name;
  });
  return out;
}

int64_t newest_serial(const std::string& job_dir) {
  const auto all = scan(job_dir);
  return all.empty() ? -1 : all.front().serial;
}

std::string latest(const std::string& job_dir) {
  const std::string p = root_of(job_dir) + "/" + latest_name;
  if (!path_exists(p)) return "";
  std::string s = read_text_file(p);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string check(const std::string& dir, json* state_out, const std::string& config_hash) {
  try {
    const std::string mpath = dir + "/" + manifest_name;
    if (!path_exists(mpath)) return "no manifest (incomplete checkpoint)";
    auto m = json::parse(read_text_file(mpath), nullptr, false);
    if (m.is_discarded() || !m.contains("files") || !m.at("files").is_object()) return "manifest is not valid JSON";
    if (!m.at("files").contains(state_name) || !m.at("files").contains("trainer/model.safetensors")) {
      return "manifest lacks state.json or the trainer's model";
    }
    for (const auto& [rel, f] : m.at("files").items()) {
      const std::string p = dir + "/" + rel;
      if (!path_exists(p)) return "missing file " + rel;
      const auto bytes = fs::file_size(p);
      if (bytes != f.at("bytes").get<uint64_t>()) {
        return "size of " + rel + " is " + std::to_string(bytes) + ", manifest says " +
               std::to_string(f.at("bytes").get<uint64_t>()) + " (truncated)";
      }
      if (hash_hex(hash_file(p)) != f.at("xxh3").get<std::string>()) return "checksum mismatch in " + rel;
    }
    auto s = json::parse(read_text_file(dir + "/" + state_name), nullptr, false);
    if (s.is_discarded() || s.value("format", "") != state_format) return "state.json is not a job checkpoint state";
    if (!config_hash.empty() && s.value("config_hash", "") != config_hash) {
      return "foreign checkpoint: config hash " + s.value("config_hash", "?") + ", this job's is " + config_hash;
    }
    if (state_out != nullptr) *state_out = s;
    return "";
  } catch (const std::exception& e) {
    return std::string("unreadable: ") + e.what();
  }
}

std::vector<entry> list(const std::string& job_dir, const std::string& config_hash) {
  std::vector<entry> out;
  for (auto& f : scan(job_dir)) {
    entry c;
    c.name = std::move(f.name);
    c.dir = std::move(f.dir);
    c.problem = check(c.dir, &c.state, config_hash);
    // A valid checkpoint's serial is its checked state's; an invalid one still sorts by its state's serial when
    // that file reads (scan's).
    c.serial = c.problem.empty() ? c.state.value("serial", int64_t{-1}) : f.serial;
    out.push_back(std::move(c));
  }
  return out;
}

json read_state(const std::string& dir) {
  const std::string p = dir + "/" + state_name;
  auto s = json::parse(read_text_file(p), nullptr, false);
  if (s.is_discarded() || !s.is_object()) throw error(errc::format, p + ": not a JSON object");
  return s;
}

void remove_interrupted(const std::string& job_dir) {
  const std::string root = root_of(job_dir);
  if (!fs::is_directory(root)) return;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.path().filename().string().rfind(temporary_prefix, 0) == 0) fs::remove_all(e.path());
  }
}

std::vector<std::pair<std::string, std::string>> retain(const std::string& job_dir, int64_t keep,
                                                        const std::string& newest) {
  std::vector<std::pair<std::string, std::string>> failed;
  const auto dirs = scan(job_dir, newest);
  for (std::size_t i = static_cast<std::size_t>(std::max<int64_t>(keep - 1, 0)); i < dirs.size(); ++i) {
    std::error_code ec;
    fs::remove_all(dirs[i].dir, ec);
    if (ec) failed.emplace_back(dirs[i].dir, ec.message());
  }
  return failed;
}

}  // namespace job_checkpoint
}  // namespace hllm::storage
