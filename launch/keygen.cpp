// `hllm keygen`: creates a ZeroMQ CURVE key pair for authenticated transport between a job's processes.
//   hllm keygen [--out PATH] [--force]
// writes PATH (public key, give it to peers) and PATH_secret (key pair, mode 0600; the router's
// curve.key_file). Copy PATH_secret to every host of a job to let them all in (see docs/protocol.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

#include "actors/curve_keys.hpp"
#include "storage/error.hpp"

int main(int argc, char** argv) {
  CLI::App app{"create a ZeroMQ CURVE key pair (zcert format) for authenticated transport"};
  std::string out = "hllm-curve.key";
  bool force = false;
  app.add_option("--out", out, "path of the public key file; the key pair goes to <out>_secret")
      ->capture_default_str();
  app.add_flag("--force", force, "overwrite existing files");
  CLI11_PARSE(app, argc, argv);
  try {
    for (const auto& path : {out, out + "_secret"}) {
      if (!force && std::filesystem::exists(path)) {
        throw hllm::error(hllm::errc::invalid_input, "hllm keygen: " + path + " exists (use --force to replace it)");
      }
    }
    auto keys = hllm::generate_curve_keypair();
    hllm::write_curve_keypair(out, keys);
    std::printf("public key  %s\nwritten     %s (public)\n            %s_secret (secret, mode 0600)\n",
                keys.public_key.c_str(), out.c_str(), out.c_str());
    return 0;
  } catch (const hllm::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
