#include "actors/curve_keys.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "storage/error.hpp"
#include "storage/file_io.hpp"

namespace hllm {
namespace {

bool is_z85_key(const std::string& k) {
  if (k.size() != 40) {
    return false;
  }
  std::uint8_t raw[32];
  return zmq_z85_decode(raw, k.c_str()) != nullptr;
}

// Atomically, with `mode` from the file's creation on: the secret key is never readable by others, not even between
// a write and a chmod (it used to be created 0644 and narrowed afterwards).
void write_file(const std::string& path, const std::string& text, mode_t mode) {
  const std::string tmp = storage::temporary_path_beside(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw error(errc::io, "cannot create CURVE key file " + tmp + ": " + std::strerror(errno));
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!written) {
    ::unlink(tmp.c_str());
    throw error(errc::io, "cannot write CURVE key file " + tmp);
  }
  storage::publish_file(tmp, path);  // fsync, rename over `path`, fsync of the directory
  if (::chmod(path.c_str(), mode) != 0) {  // the umask may have narrowed a public key's 0644; make it exact
    throw error(errc::io, "cannot set permissions of CURVE key file " + path);
  }
}

std::string zcert_text(const curve_keypair& keys, bool with_secret) {
  std::ostringstream s;
  s << "#   ZeroMQ CURVE " << (with_secret ? "**Secret** " : "Public ") << "Certificate (written by hllm keygen)\n"
    << "metadata\n"
    << "curve\n"
    << "    public-key = \"" << keys.public_key << "\"\n";
  if (with_secret) {
    s << "    secret-key = \"" << keys.secret_key << "\"\n";
  }
  return s.str();
}

// The quoted value after `name = ` in zcert text, or "" when absent.
std::string zcert_value(const std::string& text, const std::string& name) {
  auto at = text.find(name);
  if (at == std::string::npos) {
    return {};
  }
  auto open = text.find('"', at);
  auto close = open == std::string::npos ? open : text.find('"', open + 1);
  if (close == std::string::npos) {
    return {};
  }
  return text.substr(open + 1, close - open - 1);
}

}  // namespace

curve_keypair generate_curve_keypair() {
  char pub[41];
  char sec[41];
  if (!zmq_has("curve") || zmq_curve_keypair(pub, sec) != 0) {
    throw error(errc::not_found, "this libzmq has no CURVE support (zmq_curve_keypair failed)");
  }
  return {pub, sec};
}

void write_curve_keypair(const std::string& base, const curve_keypair& keys) {
  write_file(base, zcert_text(keys, false), 0644);
  write_file(base + "_secret", zcert_text(keys, true), 0600);
}

curve_keypair read_curve_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw error(errc::io, "cannot read CURVE key file " + path);
  }
  std::stringstream text;
  text << in.rdbuf();
  curve_keypair keys{zcert_value(text.str(), "public-key"), zcert_value(text.str(), "secret-key")};
  if (!is_z85_key(keys.public_key)) {
    throw error(errc::format, "CURVE key file " + path + " has no valid public-key (40 Z85 characters)");
  }
  if (!keys.secret_key.empty() && !is_z85_key(keys.secret_key)) {
    throw error(errc::format, "CURVE key file " + path + " has an invalid secret-key");
  }
  return keys;
}

}  // namespace hllm
