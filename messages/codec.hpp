#pragma once
// The thin layer between plain C++ message structs (bodies.hpp) and Cap'n Proto bytes (buffer.hpp).
// Nothing here throws on bad input: decoding returns a result holding either the value or a failure that says
// what was wrong, so a router can count it, log it and answer the sender.
#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "messages/bodies.hpp"
#include "messages/buffer.hpp"

namespace hllm::msg {

// The schema version this build writes and the oldest one it reads (envelope.capnp: schemaVersion).
std::uint16_t current_schema_version();
std::uint16_t oldest_readable_schema_version();

struct failure {
  failure() = default;
  failure(error_code c, std::string w, header h = {}) : code(c), what(std::move(w)), head(std::move(h)) {}
  error_code code = error_code::malformed;
  std::string what;
  header head;  // as much of the header as was readable (sender empty when none): where to send an error reply
};

template <class T>
class result {
 public:
  result(T value) : state_(std::move(value)) {}            // NOLINT: implicit on purpose
  result(failure f) : state_(std::move(f)) {}                // NOLINT
  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(state_); }
  const T& value() const { return std::get<0>(state_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const failure& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, failure> state_;
};

// Bounds a reader puts on untrusted bytes.
struct limits {
  std::size_t max_bytes = std::size_t{256} << 20;  // larger messages are refused before any parsing
  int nesting_limit = 16;                          // the schema nests 3 deep; more is an attack
};

// Encodes an envelope; head.version is set to current_schema_version(). Any struct encodes (only std::bad_alloc
// can escape); the result is immutable and cheap to copy.
buffer encode(const envelope& e);

// What a router needs to route a message without decoding its body.
struct routing_info {
  header head;
  body_kind kind = body_kind::error;
};

// Reads the header and checks size, segment table, schema version and the body's union member.
result<routing_info> read_header(const buffer& b, const limits& lim = {});

// read_header plus a bounds-checked walk of every pointer in the message (Cap'n Proto's totalSize): after this,
// every getter on the message stays inside the buffer.
result<routing_info> validate(const buffer& b, const limits& lim = {});

// Decodes the whole envelope into plain structs (copies lists, texts and tensor data out of the buffer).
result<envelope> decode(const buffer& b, const limits& lim = {});

// ---- building helpers ----

// A process-wide, never-repeating (within a process lifetime) correlation id; never 0.
std::uint64_t next_correlation_id();

// A reply to `request`: sender and receiver swapped, same correlation id, job id and epoch.
envelope make_reply(const header& request, body content);

// An error reply to `request`.
envelope make_error_reply(const header& request, error_code code, std::string message);

}  // namespace hllm::msg
