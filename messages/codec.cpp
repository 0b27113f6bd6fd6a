// The framing half of the codec: encode() builds an envelope in one scratch segment (or flattens several), the
// readers check size, alignment, version and union member before any body is read, and every failure becomes a
// value. The bodies themselves are translated in codec_bodies.cpp.
#include "messages/codec.hpp"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <random>

#include "messages/codec_bodies.hpp"

namespace hllm::msg {

using namespace codec_detail;

namespace {

// A MessageBuilder whose first segment is a zeroed block with one spare word in front (for the segment table),
// so a message that fits needs no flattening copy. Unlike MallocMessageBuilder it does not re-zero the block on
// destruction (it is freed, not reused).
class scratch_builder : public capnp::MessageBuilder {
 public:
  explicit scratch_builder(std::size_t first_words) : first_words_(first_words) {}
  ~scratch_builder() noexcept(false) override {
    for (auto* p : blocks_) {
      std::free(p);
    }
  }

  kj::ArrayPtr<capnp::word> allocateSegment(unsigned minimum) override {
    bool first = blocks_.empty();
    std::size_t words = first ? std::max<std::size_t>(first_words_, minimum) : std::max<std::size_t>(minimum, 1024);
    std::size_t spare = first ? 1 : 0;
    auto* block = static_cast<capnp::word*>(std::calloc(words + spare, sizeof(capnp::word)));
    if (block == nullptr) {
      throw std::bad_alloc();
    }
    blocks_.push_back(block);
    return kj::arrayPtr(block + spare, words);
  }

  // The first segment with the spare word in front, when the message fits in it.
  capnp::word* front() const { return blocks_.empty() ? nullptr : blocks_.front(); }

 private:
  std::size_t first_words_;
  std::vector<capnp::word*> blocks_;
};

// Owns the memory of an encoded message that fits its first segment.
struct encoded {
  explicit encoded(std::size_t words) : builder(words) {}
  scratch_builder builder;
};

// The standard stream framing (segment table, then the segments) in one fresh buffer, every byte written once:
// no zeroing first. `external` is tensor data referenced by the builder, whose segment is rounded up to whole
// words: only its real bytes are read, the padding is written as zeros.
buffer flatten(kj::ArrayPtr<const kj::ArrayPtr<const capnp::word>> segments, const tensor* external) {
  std::size_t table_words = segments.size() / 2 + 1;
  std::size_t words = table_words;
  for (const auto& s : segments) {
    words += s.size();
  }
  std::shared_ptr<std::uint64_t[]> storage(new std::uint64_t[words]);  // uninitialised on purpose
  auto* table = reinterpret_cast<std::uint32_t*>(storage.get());
  table[0] = static_cast<std::uint32_t>(segments.size() - 1);
  for (std::size_t i = 0; i < segments.size(); ++i) {
    table[i + 1] = static_cast<std::uint32_t>(segments[i].size());
  }
  if (segments.size() % 2 == 0) {
    table[segments.size() + 1] = 0;  // the table's padding
  }
  auto* out = reinterpret_cast<std::byte*>(storage.get() + table_words);
  for (const auto& s : segments) {
    std::size_t bytes = s.size() * sizeof(capnp::word);
    std::size_t real = bytes;
    if (external != nullptr && static_cast<const void*>(s.begin()) == external->data.data()) {
      real = external->data.size();
    }
    std::memcpy(out, s.begin(), real);
    std::memset(out + real, 0, bytes - real);
    out += bytes;
  }
  return buffer::adopt(std::shared_ptr<const void>(storage, storage.get()), storage.get(),
                        words * sizeof(capnp::word));
}

// Checks size and shape of the bytes before Cap'n Proto sees them.
std::optional<failure> check_frame(const buffer& b, const limits& lim) {
  if (b.size() > lim.max_bytes) {
    return failure{error_code::too_large,
                   "message of " + std::to_string(b.size()) + " bytes exceeds the maximum " +
                       std::to_string(lim.max_bytes)};
  }
  if (b.size() < 16 || b.size() % 8 != 0) {
    return failure{error_code::malformed,
                   "message size " + std::to_string(b.size()) + " is not a whole number of 8-byte words (>= 2)"};
  }
  if (!is_word_aligned(b.data())) {
    return failure{error_code::malformed, "message buffer is not 8-byte aligned"};
  }
  return std::nullopt;
}

capnp::ReaderOptions reader_options(const buffer& b, const limits& lim) {
  capnp::ReaderOptions opts;
  // Legitimate reads touch each word about once; a message that points many times at the same words
  // (an amplification attack) runs out of budget instead.
  opts.traversalLimitInWords = 4 * (b.size() / 8) + 1024;
  opts.nestingLimit = lim.nesting_limit;
  return opts;
}

routing_info read_routing(w::Envelope::Reader root) {
  routing_info info;
  info.head.version = root.getVersion();
  info.head.sender = str(root.getSender());
  info.head.receiver = str(root.getReceiver());
  info.head.correlation_id = root.getCorrelationId();
  info.head.is_reply = root.getIsReply();
  info.head.job_id = root.getJobId();
  info.head.job_epoch = root.getJobEpoch();
  info.head.timeout_ms = root.getTimeoutMs();
  if (info.head.version < oldest_readable_schema_version() || info.head.version > current_schema_version()) {
    throw decode_failure{{error_code::version_mismatch,
                          "schema version " + std::to_string(info.head.version) + " from '" + info.head.sender +
                              "' (this build reads " + std::to_string(oldest_readable_schema_version()) + ".." +
                              std::to_string(current_schema_version()) + ")",
                          info.head}};
  }
  auto which = static_cast<std::uint16_t>(root.getBody().which());
  if (which >= body_kind_count) {
    throw decode_failure{{error_code::unknown_body,
                          "unknown body member " + std::to_string(which) + " from '" + info.head.sender + "'",
                          info.head}};
  }
  info.kind = static_cast<body_kind>(which);
  return info;
}

// Runs `f`, attaching the already-read header to any failure so the caller can answer the sender.
template <class F>
auto with_head(const header& head, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (decode_failure& d) {
    d.f.head = head;
    throw;
  } catch (const kj::Exception& e) {
    throw decode_failure{
        {error_code::malformed, std::string("invalid Cap'n Proto message: ") + e.getDescription().cStr(), head}};
  }
}

// Runs `f(root)` over the message with limits set, turning every failure into a value.
template <class T, class F>
result<T> with_reader(const buffer& b, const limits& lim, F&& f) {
  if (auto bad = check_frame(b, lim)) {
    return *bad;
  }
  try {
    kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(b.data()), b.size() / 8);
    capnp::FlatArrayMessageReader reader(words, reader_options(b, lim));
    if (reader.getEnd() != words.end()) {
      return failure{error_code::malformed, "trailing bytes after the message"};
    }
    return f(reader.getRoot<w::Envelope>());
  } catch (const decode_failure& d) {
    return d.f;
  } catch (const kj::Exception& e) {
    return failure{error_code::malformed, std::string("invalid Cap'n Proto message: ") + e.getDescription().cStr()};
  } catch (const std::bad_alloc&) {
    return failure{error_code::too_large, "out of memory while decoding"};
  }
}

}  // namespace

std::uint16_t current_schema_version() { return w::SCHEMA_VERSION; }
// Version 2 removed bodies and fields and renumbered the rest (envelope.capnp): version 1 is not readable.
std::uint16_t oldest_readable_schema_version() { return 2; }

buffer encode(const envelope& e) {
  std::size_t words = 16 + text_words(e.head.sender) + text_words(e.head.receiver) + body_words(e.content);
  auto storage = std::make_shared<encoded>(words);
  auto root = storage->builder.initRoot<w::Envelope>();
  root.setVersion(current_schema_version());
  root.setSender(text(e.head.sender));
  root.setReceiver(text(e.head.receiver));
  root.setCorrelationId(e.head.correlation_id);
  root.setIsReply(e.head.is_reply);
  root.setJobId(e.head.job_id);
  root.setJobEpoch(e.head.job_epoch);
  root.setTimeoutMs(e.head.timeout_ms);
  put_body(root.getBody(), e.content);

  auto segments = storage->builder.getSegmentsForOutput();
  capnp::word* front = storage->builder.front();
  if (segments.size() == 1 && segments[0].begin() == front + 1) {
    // The whole message sits in the first segment: write the one-segment table in the spare word, no copy.
    auto* table = reinterpret_cast<std::uint32_t*>(front);
    table[0] = 0;  // segment count - 1
    table[1] = static_cast<std::uint32_t>(segments[0].size());
    std::size_t size = (segments[0].size() + 1) * sizeof(capnp::word);
    return buffer::adopt(std::shared_ptr<const void>(storage, front), front, size);
  }
  // More than one segment (referenced tensor data, or the estimate was short): one copy into the final buffer;
  // the builder and the scratch segments go away with `storage`.
  return flatten(segments, tensor_of(e.content));
}

result<routing_info> read_header(const buffer& b, const limits& lim) {
  return with_reader<routing_info>(b, lim, [](w::Envelope::Reader root) { return read_routing(root); });
}

result<routing_info> validate(const buffer& b, const limits& lim) {
  return with_reader<routing_info>(b, lim, [](w::Envelope::Reader root) {
    auto info = read_routing(root);
    with_head(info.head, [&] { root.totalSize(); });  // follows every pointer with bounds checks
    return info;
  });
}

result<envelope> decode(const buffer& b, const limits& lim) {
  return with_reader<envelope>(b, lim, [](w::Envelope::Reader root) {
    auto info = read_routing(root);
    body content = with_head(info.head, [&] { return get_body(root.getBody()); });
    return envelope{std::move(info.head), std::move(content)};
  });
}

std::uint64_t next_correlation_id() {
  // Random high bits: ids of a restarted process do not collide with late replies meant for its predecessor.
  static std::atomic<std::uint64_t> next{(std::uint64_t{std::random_device{}()} << 32) | 1};
  std::uint64_t id = next.fetch_add(1, std::memory_order_relaxed);
  return id == 0 ? next.fetch_add(1, std::memory_order_relaxed) : id;
}

envelope make_reply(const header& request, body content) {
  header h;
  h.sender = request.receiver;
  h.receiver = request.sender;
  h.correlation_id = request.correlation_id;
  h.is_reply = true;
  h.job_id = request.job_id;
  h.job_epoch = request.job_epoch;
  return {std::move(h), std::move(content)};
}

envelope make_error_reply(const header& request, error_code code, std::string message) {
  return make_reply(request, error{code, std::move(message)});
}

// ---------------------------------------------------------------------------------------------------------------

const char* to_string(dtype t) {
  static const char* names[] = {"f32", "f16", "bf16", "f64", "i32", "i64", "u8"};
  return names[static_cast<int>(t)];
}

std::size_t element_size(dtype t) {
  static const std::size_t sizes[] = {4, 2, 2, 8, 4, 8, 1};
  return sizes[static_cast<int>(t)];
}

const char* to_string(actor_state s) {
  static const char* names[] = {"starting", "idle", "running", "draining", "stopped", "failed"};
  return names[static_cast<int>(s)];
}

const char* to_string(error_code c) {
  static const char* names[] = {"unknown",          "malformed",   "version_mismatch", "unknown_body",
                                "too_large",        "unknown_receiver", "stale_epoch", "timeout",
                                "overloaded",       "rejected",    "internal"};
  return names[static_cast<int>(c)];
}

const char* to_string(body_kind k) {
  static const char* names[] = {"error",          "ack",           "credit",       "status_request",
                                "status_reply",   "batch_request", "batch",        "negatives_request",
                                "negatives",      "encode_request", "encode_result", "cache_put",
                                "cache_lookup",   "cache_rows",    "coverage_request", "coverage",
                                "checkpoint_request", "checkpoint_done"};
  static_assert(sizeof(names) / sizeof(names[0]) == body_kind_count);
  return names[static_cast<int>(k)];
}

}  // namespace hllm::msg
