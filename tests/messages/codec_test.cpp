// The message layer: every body round-trips, bad bytes become failures (never crashes), and the schema evolves
// the Cap'n Proto way (an old reader skips new fields; unknown members and versions are refused).
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "messages/codec.hpp"
#include "messages/envelope.capnp.h"
#include "tests/messages/envelope_next.capnp.h"
#include "tests/messages/samples.hpp"

namespace hllm::msg {
namespace {

using testing::sample_envelope;

buffer flatten(capnp::MessageBuilder& builder) {
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return buffer::copy_of(bytes.begin(), bytes.size());
}

TEST(messages, every_body_kind_round_trips) {
  for (std::size_t k = 0; k < body_kind_count; ++k) {
    auto kind = static_cast<body_kind>(k);
    envelope original = sample_envelope(kind);
    buffer bytes = encode(original);
    auto decoded = decode(bytes);
    ASSERT_TRUE(decoded.ok()) << to_string(kind) << ": " << decoded.error().what;
    original.head.version = current_schema_version();
    EXPECT_EQ(kind_of(decoded->content), kind);
    EXPECT_TRUE(decoded.value() == original) << to_string(kind);
  }
}

TEST(messages, sample_bodies_differ_from_defaults_so_round_trip_can_fail) {
  // A field left at its default would round-trip even if encode() forgot it: samples must set every body.
  for (std::size_t k = 0; k < body_kind_count; ++k) {
    auto kind = static_cast<body_kind>(k);
    body sample = testing::sample_body(kind);
    body empty = std::visit([](const auto& x) -> body { return std::decay_t<decltype(x)>{}; }, sample);
    EXPECT_FALSE(sample == empty) << to_string(kind);
  }
}

TEST(messages, encode_stamps_current_schema_version_and_header) {
  auto e = sample_envelope(body_kind::batch);
  auto info = read_header(encode(e));
  ASSERT_TRUE(info.ok()) << info.error().what;
  EXPECT_EQ(info->head.version, current_schema_version());
  EXPECT_EQ(info->head.sender, "trainer/0");
  EXPECT_EQ(info->head.receiver, "loader/1");
  EXPECT_EQ(info->head.correlation_id, 0x1234567890abcdefULL);
  EXPECT_EQ(info->head.job_epoch, 3u);
  EXPECT_EQ(info->kind, body_kind::batch);
}

TEST(messages, encoded_buffer_is_aligned_and_immutable_when_shared) {
  auto e = sample_envelope(body_kind::cache_put);
  buffer a = encode(e);
  buffer b = a;  // copies share the bytes: local delivery never re-encodes
  EXPECT_EQ(a.data(), b.data());
  EXPECT_TRUE(is_word_aligned(a.data()));
  EXPECT_EQ(a.size() % 8, 0u);
}

TEST(messages, large_tensor_round_trips) {
  envelope e = sample_envelope(body_kind::encode_result);
  auto& result = std::get<encode_result>(e.content);
  result.embeddings = testing::sample_tensor(1024, 256);  // 1 MiB of f32
  auto decoded = decode(encode(e));
  ASSERT_TRUE(decoded.ok()) << decoded.error().what;
  EXPECT_TRUE(std::get<encode_result>(decoded->content).embeddings == result.embeddings);
}

// The tensor a body carries (null for bodies without one).
tensor* tensor_in(body& content) {
  if (auto* r = std::get_if<encode_result>(&content)) return &r->embeddings;
  if (auto* p = std::get_if<cache_put>(&content)) return &p->rows;
  if (auto* c = std::get_if<cache_rows>(&content)) return &c->rows;
  return nullptr;
}

// Large tensor data is referenced by the builder and copied once into the final buffer (codec.cpp, flatten):
// the result must be a self-contained, standard message whose padding is zeros, whatever the data size.
TEST(messages, large_tensor_of_any_size_is_copied_once_into_a_standard_message) {
  [[maybe_unused]] static std::uint8_t* volatile escape = nullptr;
  for (std::size_t size : {std::size_t{4096}, std::size_t{4099}, std::size_t{65541}, std::size_t{1} << 20}) {
    for (body_kind kind : {body_kind::encode_result, body_kind::cache_put, body_kind::cache_rows}) {
      envelope e = sample_envelope(kind);
      tensor original;
      original.type = dtype::u8;
      original.shape = {static_cast<std::int64_t>(size)};
      for (std::size_t i = 0; i < size; ++i) {
        original.data.push_back(static_cast<std::byte>(i * 7 + 1));
      }
      *tensor_in(e.content) = original;
      {
        // Dirty freed memory of about that size, so uninitialised bytes in the buffer would not read as zeros.
        std::vector<std::uint8_t> dirt(size + 4096, 0xaa);
        escape = dirt.data();
      }
      buffer bytes = encode(e);
      // The buffer owns its bytes: scribbling over the source tensor changes nothing.
      auto& source = tensor_in(e.content)->data;
      std::fill(source.begin(), source.end(), std::byte{0});
      ASSERT_TRUE(validate(bytes).ok()) << size;
      auto decoded = decode(bytes);
      ASSERT_TRUE(decoded.ok()) << size << ": " << decoded.error().what;
      EXPECT_TRUE(*tensor_in(decoded->content) == original) << to_string(kind) << " " << size;

      // Plain Cap'n Proto framing; the bytes after the data up to the next word are zero, as is the segment
      // table's padding (it has one when the segment count is even).
      kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / 8);
      capnp::FlatArrayMessageReader reader(words);
      EXPECT_EQ(reader.getEnd(), words.end());
      auto body = reader.getRoot<wire::Envelope>().getBody();
      capnp::Data::Reader data = kind == body_kind::encode_result ? body.getEncodeResult().getEmbeddings().getData()
                                 : kind == body_kind::cache_put   ? body.getCachePut().getRows().getData()
                                                                  : body.getCacheRows().getRows().getData();
      ASSERT_EQ(data.size(), size);
      const auto* end = reinterpret_cast<const std::uint8_t*>(data.end());
      for (std::size_t i = 0; i < (8 - size % 8) % 8; ++i) {
        EXPECT_EQ(end[i], 0) << "padding byte " << i << " after " << size << " bytes";
      }
      const auto* table = reinterpret_cast<const std::uint32_t*>(bytes.data());
      if ((table[0] + 1) % 2 == 0) {
        EXPECT_EQ(table[table[0] + 2], 0u);
      }
      // The same envelope encodes to the same bytes.
      *tensor_in(e.content) = original;
      buffer again = encode(e);
      ASSERT_EQ(again.size(), bytes.size());
      EXPECT_EQ(std::memcmp(again.data(), bytes.data(), bytes.size()), 0) << to_string(kind) << " " << size;
    }
  }
}

TEST(messages, message_larger_than_the_size_estimate_still_encodes) {
  envelope e = sample_envelope(body_kind::ack);
  std::get<ack>(e.content).note.assign(100000, 'h');  // far beyond the fixed estimate of small bodies
  auto decoded = decode(encode(e));
  ASSERT_TRUE(decoded.ok()) << decoded.error().what;
  EXPECT_EQ(std::get<ack>(decoded->content).note.size(), 100000u);
}

TEST(messages, unaligned_bytes_are_copied_into_aligned_memory) {
  buffer good = encode(sample_envelope(body_kind::coverage));
  std::vector<std::byte> shifted(good.size() + 1);
  std::memcpy(shifted.data() + 1, good.data(), good.size());
  buffer copy = buffer::copy_of(shifted.data() + 1, good.size());
  EXPECT_TRUE(is_word_aligned(copy.data()));
  auto decoded = decode(copy);
  ASSERT_TRUE(decoded.ok()) << decoded.error().what;
  EXPECT_EQ(kind_of(decoded->content), body_kind::coverage);
  EXPECT_THROW(buffer::adopt(nullptr, shifted.data() + 1, 8), std::invalid_argument);
}

TEST(messages, every_truncation_is_rejected) {
  buffer good = encode(sample_envelope(body_kind::status_reply));
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto r = decode(buffer::copy_of(good.data(), n));
    EXPECT_FALSE(r.ok()) << "truncated to " << n;
    EXPECT_FALSE(validate(buffer::copy_of(good.data(), n)).ok()) << "truncated to " << n;
  }
}

TEST(messages, trailing_bytes_are_rejected) {
  buffer good = encode(sample_envelope(body_kind::ack));
  std::vector<std::byte> longer(good.data(), good.data() + good.size());
  longer.resize(good.size() + 8);
  auto r = decode(buffer::copy_of(longer.data(), longer.size()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, error_code::malformed);
}

TEST(messages, random_garbage_never_crashes_and_is_rejected) {
  std::mt19937_64 rng(7);
  int accepted = 0;
  for (int i = 0; i < 2000; ++i) {
    std::vector<std::uint64_t> words(1 + rng() % 64);
    for (auto& w : words) {
      w = rng();
    }
    auto r = validate(buffer::copy_of(words.data(), words.size() * 8));
    accepted += r.ok() ? 1 : 0;
  }
  EXPECT_EQ(accepted, 0);
}

// Every single-bit flip (of every third bit) gives a clear failure or a value, never a crash (the sanitizer builds
// catch what a plain build would not): a failure carries a known code and a message; a header validate() refuses
// (schema version, body member) decode() refuses with the same code (validate may refuse more: it walks every
// pointer, decode only the fields it reads); a flip in the segment table (the first word) is always rejected; a value
// decoded from flipped bytes is a well-formed envelope (it encodes and decodes to itself); and flips in the payload
// do reach the values, so the loop exercises both outcomes.
TEST(messages, bit_flips_give_a_clear_failure_or_a_well_formed_value) {
  envelope original = sample_envelope(body_kind::cache_rows);
  buffer good = encode(original);
  original.head.version = current_schema_version();
  const std::set<error_code> expected_codes = {error_code::malformed, error_code::version_mismatch,
                                               error_code::unknown_body, error_code::too_large};
  std::vector<std::byte> bytes(good.data(), good.data() + good.size());
  int failures = 0, values = 0, changed_values = 0;
  for (std::size_t i = 0; i < bytes.size() * 8; i += 3) {
    auto copy = bytes;
    copy[i / 8] ^= std::byte(1u << (i % 8));
    const buffer flipped = buffer::copy_of(copy.data(), copy.size());
    auto r = decode(flipped);
    auto v = validate(flipped);
    if (r.ok()) {
      ++values;
      if (!v.ok()) {
        EXPECT_EQ(v.error().code, error_code::malformed) << "bit " << i << ": " << v.error().what;
      }
      changed_values += r.value() == original ? 0 : 1;
      envelope normalized = r.value();
      normalized.head.version = current_schema_version();
      auto again = decode(encode(r.value()));
      ASSERT_TRUE(again.ok()) << "bit " << i << ": " << again.error().what;
      EXPECT_TRUE(again.value() == normalized) << "bit " << i << ": the decoded value does not round-trip";
    } else {
      ++failures;
      EXPECT_EQ(expected_codes.count(r.error().code), 1u) << "bit " << i << ": code " << to_string(r.error().code);
      EXPECT_FALSE(r.error().what.empty()) << "bit " << i;
      if (!v.ok() && v.error().code != error_code::malformed) {
        EXPECT_EQ(r.error().code, v.error().code) << "bit " << i << ": " << r.error().what;
      }
    }
    if (i < 64) {
      EXPECT_FALSE(r.ok()) << "bit " << i << " of the segment table was accepted";
    }
  }
  EXPECT_GT(failures, 0);
  EXPECT_GT(values, 0);
  EXPECT_GT(changed_values, 0) << "no flip changed a decoded value: the flips never reached the payload";
}

TEST(messages, oversized_message_is_refused_before_parsing) {
  buffer good = encode(sample_envelope(body_kind::batch));
  limits lim;
  lim.max_bytes = good.size() - 8;
  auto r = decode(good, lim);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, error_code::too_large);
  EXPECT_TRUE(decode(good).ok());
}

TEST(messages, tensor_whose_data_does_not_match_its_shape_is_rejected) {
  envelope e = sample_envelope(body_kind::cache_put);
  std::get<cache_put>(e.content).rows.shape = {3, 4};  // data holds 2 x 4 floats
  auto r = decode(encode(e));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, error_code::malformed);
  EXPECT_NE(r.error().what.find("tensor"), std::string::npos);
}

TEST(messages, wrong_schema_version_is_rejected) {
  // Version 1 still had the bodies and Batch fields that version 2 removed (envelope.capnp): refused both ways.
  EXPECT_EQ(current_schema_version(), 2u);
  EXPECT_EQ(oldest_readable_schema_version(), 2u);
  for (std::uint16_t version : {std::uint16_t{0}, std::uint16_t{1}, std::uint16_t(current_schema_version() + 1)}) {
    capnp::MallocMessageBuilder builder;
    auto root = builder.initRoot<wire::Envelope>();
    root.setVersion(version);
    root.getBody().initAck();
    auto r = decode(flatten(builder));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, error_code::version_mismatch) << r.error().what;
  }
}

// ---- schema evolution against tests/messages/envelope_next.capnp (a future version of the schema) ----

TEST(messages, old_reader_skips_fields_added_by_a_newer_writer) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<wire_next::Envelope>();
  root.setVersion(current_schema_version());
  root.setSender("monitor");
  root.setReceiver("router");
  root.setCorrelationId(77);
  root.setTraceId(0xabcdef);  // unknown to this build
  auto reply = root.getBody().initStatusReply();
  reply.setName("loader/0");
  reply.setState(wire_next::ActorState::RUNNING);
  reply.setQueueDepth(4);
  reply.setStep(12);
  reply.setHostName("host-b");  // unknown to this build
  auto r = decode(flatten(builder));
  ASSERT_TRUE(r.ok()) << r.error().what;
  EXPECT_EQ(r->head.correlation_id, 77u);
  const auto& s = std::get<status_reply>(r->content);
  EXPECT_EQ(s.name, "loader/0");
  EXPECT_EQ(s.state, actor_state::running);
  EXPECT_EQ(s.queue_depth, 4u);
  EXPECT_EQ(s.step, 12u);
}

TEST(messages, new_reader_reads_an_old_message_with_defaults_for_new_fields) {
  buffer bytes = encode(sample_envelope(body_kind::status_reply));
  kj::ArrayPtr<const capnp::word> words(reinterpret_cast<const capnp::word*>(bytes.data()), bytes.size() / 8);
  capnp::FlatArrayMessageReader reader(words);
  auto root = reader.getRoot<wire_next::Envelope>();
  ASSERT_EQ(root.getBody().which(), wire_next::Envelope::Body::STATUS_REPLY);
  auto s = root.getBody().getStatusReply();
  EXPECT_EQ(std::string(s.getName().cStr()), "router");
  EXPECT_EQ(s.getQueueDepth(), 5u);
  EXPECT_EQ(s.getCounters().size(), 2u);
  EXPECT_EQ(s.getHostName().size(), 0u);
  EXPECT_EQ(root.getTraceId(), 0u);
}

TEST(messages, unknown_body_member_from_a_newer_writer_is_rejected) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<wire_next::Envelope>();
  root.setVersion(current_schema_version());
  root.setSender("future/0");
  root.getBody().initProbe().setPayload("hello");
  buffer bytes = flatten(builder);
  for (auto r : {read_header(bytes), validate(bytes)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, error_code::unknown_body) << r.error().what;
    EXPECT_NE(r.error().what.find("future/0"), std::string::npos) << "the failure names the sender";
  }
  auto d = decode(bytes);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, error_code::unknown_body);
}

// ---- helpers ----

TEST(messages, correlation_ids_are_unique_and_never_zero) {
  std::set<std::uint64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    auto id = next_correlation_id();
    EXPECT_NE(id, 0u);
    EXPECT_TRUE(seen.insert(id).second);
  }
}

TEST(messages, reply_swaps_addresses_and_keeps_correlation_and_epoch) {
  header request;
  request.sender = "trainer/0";
  request.receiver = "loader/0";
  request.correlation_id = 99;
  request.job_id = 5;
  request.job_epoch = 2;
  envelope reply = make_error_reply(request, error_code::rejected, "no such step");
  EXPECT_EQ(reply.head.sender, "loader/0");
  EXPECT_EQ(reply.head.receiver, "trainer/0");
  EXPECT_EQ(reply.head.correlation_id, 99u);
  EXPECT_TRUE(reply.head.is_reply);
  EXPECT_EQ(reply.head.job_id, 5u);
  EXPECT_EQ(reply.head.job_epoch, 2u);
  EXPECT_EQ(std::get<error>(reply.content).code, error_code::rejected);
}

}  // namespace
}  // namespace hllm::msg
