#pragma once
// ZeroMQ CURVE key pairs in files, in the zcert text format (czmq's, readable by its tools):
//   <base>         public key only: hand it to peers that must accept this one
//   <base>_secret  public + secret key, mode 0600: stays with the process that owns the identity
// `hllm keygen` writes them; the router reads them (router_config::curve).
#include <string>

namespace hllm {

struct curve_keypair {
  std::string public_key;  // 40 Z85 characters
  std::string secret_key;  // 40 Z85 characters; empty when read from a public-only file
};

// A fresh key pair from libzmq's CSPRNG. Throws hllm::error when libzmq lacks CURVE.
curve_keypair generate_curve_keypair();

// Writes <base> and <base>_secret. Throws hllm::error (errc::io) naming the file on failure.
void write_curve_keypair(const std::string& base, const curve_keypair& keys);

// Reads a file written by write_curve_keypair (either of the two). Throws hllm::error (errc::io / errc::format).
curve_keypair read_curve_key_file(const std::string& path);

}  // namespace hllm
