#pragma once
// Plain C++ mirrors of the message bodies in envelope.capnp. Actor code builds and reads these; only
// messages/codec.cpp touches Cap'n Proto builders and readers. Field meanings are documented in the schema and
// in docs/protocol.md.
#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

namespace hllm::msg {

enum class dtype : std::uint8_t { f32, f16, bf16, f64, i32, i64, u8 };
enum class actor_state : std::uint8_t { starting, idle, running, draining, stopped, failed };
enum class error_code : std::uint8_t {
  unknown,
  malformed,
  version_mismatch,
  unknown_body,
  too_large,
  unknown_receiver,
  stale_epoch,
  timeout,
  overloaded,
  rejected,
  internal,
};

const char* to_string(dtype t);
const char* to_string(actor_state s);
const char* to_string(error_code c);
std::size_t element_size(dtype t);

// Raw little-endian rows, row-major; `data.size()` equals the product of `shape` times element_size(type).
struct tensor {
  dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::byte> data;
};

struct step_key {
  std::uint8_t stage = 0;
  std::uint32_t epoch = 0;
  std::uint64_t step = 0;
  std::uint32_t rank = 0;
};

struct counter {
  std::string name;
  std::int64_t value = 0;
};

// ---- bodies (one per member of Envelope.body, same order) ----

struct error {
  error_code code = error_code::unknown;
  std::string message;
};

struct ack {
  std::string note;
};

struct credit {
  std::uint32_t window = 0;
};

struct status_request {
  bool verbose = false;
};

struct status_reply {
  std::string name;
  std::string kind;
  actor_state state = actor_state::starting;
  std::vector<counter> counters;
  std::uint32_t queue_depth = 0;
  std::uint32_t in_flight = 0;
  std::string last_error;
  std::int64_t last_error_at_ns = 0;
  std::uint32_t restarts = 0;
  std::int64_t uptime_ns = 0;
  std::uint64_t step = 0;
};

struct batch_request {
  step_key at;
  std::uint32_t world_size = 0;
  std::uint32_t batch_size = 0;
  std::uint32_t max_length = 0;
};

// The users of one step and their item windows: user u's window is item_ids[u * (max_length + 1) ..
// (u + 1) * (max_length + 1)), oldest first, left-padded with 0 (max_length from the batch_request).
struct batch {
  step_key at;
  std::vector<std::int64_t> user_ids;
  std::vector<std::int32_t> item_ids;
};

struct negatives_request {
  step_key at;
  std::uint32_t count = 0;
  std::vector<std::int32_t> exclude_ids;
};

struct negatives {
  step_key at;
  std::vector<std::int32_t> item_ids;
};

struct encode_request {
  std::vector<std::int32_t> item_ids;
  std::string model_version;
  bool write_to_cache = false;
};

struct encode_result {
  std::vector<std::int32_t> item_ids;
  std::string model_version;
  tensor embeddings;
};

struct cache_put {
  std::uint32_t shard = 0;
  std::string model_version;
  std::vector<std::int32_t> item_ids;
  tensor rows;
};

struct cache_lookup {
  std::uint32_t shard = 0;
  std::string model_version;
  std::vector<std::int32_t> item_ids;
};

struct cache_rows {
  std::uint32_t shard = 0;
  std::string model_version;
  std::vector<std::int32_t> item_ids;
  tensor rows;
  std::vector<std::int32_t> missing_ids;
};

struct coverage_request {
  std::string model_version;
};

struct coverage {
  std::uint32_t shard = 0;
  std::uint32_t shard_count = 0;
  std::string model_version;
  std::uint64_t rows_present = 0;
  std::uint64_t rows_expected = 0;
  std::uint32_t dim = 0;
};

struct checkpoint_request {
  std::uint64_t step = 0;
  std::string directory;
  std::string reason;
};

struct checkpoint_done {
  std::uint64_t step = 0;
  std::string directory;
  bool ok = false;
  std::string content_hash;
  std::uint64_t bytes = 0;
  std::string error;
};

// Alternatives in the order of Envelope.body in envelope.capnp (the index is the wire discriminant).
using body = std::variant<error, ack, credit, status_request, status_reply, batch_request, batch, negatives_request,
                          negatives, encode_request, encode_result, cache_put, cache_lookup, cache_rows,
                          coverage_request, coverage, checkpoint_request, checkpoint_done>;

enum class body_kind : std::uint16_t {
  error,
  ack,
  credit,
  status_request,
  status_reply,
  batch_request,
  batch,
  negatives_request,
  negatives,
  encode_request,
  encode_result,
  cache_put,
  cache_lookup,
  cache_rows,
  coverage_request,
  coverage,
  checkpoint_request,
  checkpoint_done,
};
constexpr std::size_t body_kind_count = std::variant_size_v<body>;

inline body_kind kind_of(const body& b) { return static_cast<body_kind>(b.index()); }
const char* to_string(body_kind k);

// Everything in an Envelope except the body.
struct header {
  std::uint16_t version = 0;       // filled by encode() with the current schema version
  std::string sender;
  std::string receiver;
  std::uint64_t correlation_id = 0;
  bool is_reply = false;
  std::uint64_t job_id = 0;
  std::uint32_t job_epoch = 0;
  std::uint32_t timeout_ms = 0;
};

struct envelope {
  header head;
  body content;
};

// Equality, for tests and for idempotence checks.
#define HLLM_MSG_EQUALITY(type, ...)                                                                   \
  inline auto tie_fields(const type& x) { return std::tie(__VA_ARGS__); }                            \
  inline bool operator==(const type& a, const type& b) { return tie_fields(a) == tie_fields(b); }    \
  inline bool operator!=(const type& a, const type& b) { return !(a == b); }

HLLM_MSG_EQUALITY(tensor, x.type, x.shape, x.data)
HLLM_MSG_EQUALITY(step_key, x.stage, x.epoch, x.step, x.rank)
HLLM_MSG_EQUALITY(counter, x.name, x.value)
HLLM_MSG_EQUALITY(error, x.code, x.message)
HLLM_MSG_EQUALITY(ack, x.note)
HLLM_MSG_EQUALITY(credit, x.window)
HLLM_MSG_EQUALITY(status_request, x.verbose)
HLLM_MSG_EQUALITY(status_reply, x.name, x.kind, x.state, x.counters, x.queue_depth, x.in_flight, x.last_error,
                  x.last_error_at_ns, x.restarts, x.uptime_ns, x.step)
HLLM_MSG_EQUALITY(batch_request, x.at, x.world_size, x.batch_size, x.max_length)
HLLM_MSG_EQUALITY(batch, x.at, x.user_ids, x.item_ids)
HLLM_MSG_EQUALITY(negatives_request, x.at, x.count, x.exclude_ids)
HLLM_MSG_EQUALITY(negatives, x.at, x.item_ids)
HLLM_MSG_EQUALITY(encode_request, x.item_ids, x.model_version, x.write_to_cache)
HLLM_MSG_EQUALITY(encode_result, x.item_ids, x.model_version, x.embeddings)
HLLM_MSG_EQUALITY(cache_put, x.shard, x.model_version, x.item_ids, x.rows)
HLLM_MSG_EQUALITY(cache_lookup, x.shard, x.model_version, x.item_ids)
HLLM_MSG_EQUALITY(cache_rows, x.shard, x.model_version, x.item_ids, x.rows, x.missing_ids)
HLLM_MSG_EQUALITY(coverage_request, x.model_version)
HLLM_MSG_EQUALITY(coverage, x.shard, x.shard_count, x.model_version, x.rows_present, x.rows_expected, x.dim)
HLLM_MSG_EQUALITY(checkpoint_request, x.step, x.directory, x.reason)
HLLM_MSG_EQUALITY(checkpoint_done, x.step, x.directory, x.ok, x.content_hash, x.bytes, x.error)
HLLM_MSG_EQUALITY(header, x.version, x.sender, x.receiver, x.correlation_id, x.is_reply, x.job_id, x.job_epoch,
                  x.timeout_ms)
HLLM_MSG_EQUALITY(envelope, x.head, x.content)

#undef HLLM_MSG_EQUALITY

}  // namespace hllm::msg
