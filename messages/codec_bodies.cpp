// The body half of the codec: put() writes one body struct of bodies.hpp into its Cap'n Proto builder, get() reads
// one back with every check a reader owes untrusted bytes (enum ranges, tensor shape against data), and the size
// estimate that lets encode() build most messages in one segment. codec.cpp holds the framing around it.
#include "messages/codec_bodies.hpp"

#include <capnp/orphan.h>

#include <limits>

namespace hllm::msg::codec_detail {

static_assert(static_cast<std::size_t>(w::Envelope::Body::CHECKPOINT_DONE) + 1 == body_kind_count,
              "bodies.hpp `body` must list every member of Envelope.body, in order");

namespace {

// ---------------------------------------------------------------------------------------------------------------
// Lists and enums.

template <class ListBuilder, class Vector>
void fill(ListBuilder list, const Vector& v) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    list.set(static_cast<unsigned>(i), v[i]);
  }
}

template <class T, class ListReader>
std::vector<T> vec(ListReader list) {
  std::vector<T> out;
  out.reserve(list.size());
  for (auto x : list) {
    out.push_back(x);
  }
  return out;
}

template <class Out, class WireEnum>
Out enum_in(WireEnum raw, std::uint16_t count, const char* what) {
  auto v = static_cast<std::uint16_t>(raw);
  if (v >= count) {
    fail(error_code::malformed, std::string("unknown ") + what + " value " + std::to_string(v));
  }
  return static_cast<Out>(v);
}

template <class WireEnum, class In>
WireEnum enum_out(In v) {
  return static_cast<WireEnum>(static_cast<std::uint16_t>(v));
}

// ---------------------------------------------------------------------------------------------------------------
// Shared pieces.

// Large tensor data is not copied into the builder: the message references it as an external segment and
// encode() copies it once, straight into the final buffer (setData would zero the space, then copy into it, and a
// message outgrowing its first segment would be copied a second time by flattening).
constexpr std::size_t by_reference_above = 4096;
bool by_reference(const tensor& t) {
  return t.data.size() >= by_reference_above && is_word_aligned(t.data.data());
}

void put(w::Tensor::Builder b, const tensor& t) {
  b.setDtype(enum_out<w::DType>(t.type));
  fill(b.initShape(static_cast<unsigned>(t.shape.size())), t.shape);
  capnp::Data::Reader data(reinterpret_cast<const capnp::byte*>(t.data.data()), t.data.size());
  if (by_reference(t)) {
    b.adoptData(capnp::Orphanage::getForMessageContaining(b).referenceExternalData(data));
  } else {
    b.setData(data);
  }
}

tensor get(w::Tensor::Reader r) {
  tensor t;
  t.type = enum_in<dtype>(r.getDtype(), 7, "dtype");
  t.shape = vec<std::int64_t>(r.getShape());
  auto data = r.getData();
  // The product of the shape must describe the data exactly: a reader views it as numbers.
  unsigned __int128 expected = element_size(t.type);
  for (auto d : t.shape) {
    if (d < 0) {
      fail(error_code::malformed, "tensor has a negative dimension");
    }
    expected *= static_cast<std::uint64_t>(d);
    if (expected > std::numeric_limits<std::uint64_t>::max()) {
      fail(error_code::malformed, "tensor shape overflows");
    }
  }
  // An empty shape means "no tensor" (the default): it carries no data.
  std::uint64_t need = t.shape.empty() ? 0 : static_cast<std::uint64_t>(expected);
  if (need != data.size()) {
    fail(error_code::malformed, "tensor data holds " + std::to_string(data.size()) + " bytes, shape needs " +
                                    std::to_string(need));
  }
  auto* bytes = reinterpret_cast<const std::byte*>(data.begin());
  t.data.assign(bytes, bytes + data.size());  // one pass (resize + memcpy would zero the bytes first)
  return t;
}

void put(w::StepKey::Builder b, const step_key& k) {
  b.setStage(k.stage);
  b.setEpoch(k.epoch);
  b.setStep(k.step);
  b.setRank(k.rank);
}

step_key get(w::StepKey::Reader r) { return {r.getStage(), r.getEpoch(), r.getStep(), r.getRank()}; }

// ---------------------------------------------------------------------------------------------------------------
// Bodies: put() writes one, get() reads one. Same order as the schema.

void put(w::Error::Builder b, const error& x) {
  b.setCode(enum_out<w::ErrorCode>(x.code));
  b.setMessage(text(x.message));
}
error get(w::Error::Reader r) {
  // An error code from a newer writer still means "it failed": keep it readable as `unknown`.
  auto raw = static_cast<std::uint16_t>(r.getCode());
  auto code = raw <= static_cast<std::uint16_t>(error_code::internal) ? static_cast<error_code>(raw)
                                                                       : error_code::unknown;
  return {code, str(r.getMessage())};
}

void put(w::Ack::Builder b, const ack& x) { b.setNote(text(x.note)); }
ack get(w::Ack::Reader r) { return {str(r.getNote())}; }

void put(w::Credit::Builder b, const credit& x) { b.setWindow(x.window); }
credit get(w::Credit::Reader r) { return {r.getWindow()}; }

void put(w::StatusRequest::Builder b, const status_request& x) { b.setVerbose(x.verbose); }
status_request get(w::StatusRequest::Reader r) { return {r.getVerbose()}; }

void put(w::StatusReply::Builder b, const status_reply& x) {
  b.setName(text(x.name));
  b.setKind(text(x.kind));
  b.setState(enum_out<w::ActorState>(x.state));
  auto counters = b.initCounters(static_cast<unsigned>(x.counters.size()));
  for (unsigned i = 0; i < counters.size(); ++i) {
    counters[i].setName(text(x.counters[i].name));
    counters[i].setValue(x.counters[i].value);
  }
  b.setQueueDepth(x.queue_depth);
  b.setInFlight(x.in_flight);
  b.setLastError(text(x.last_error));
  b.setLastErrorAtNs(x.last_error_at_ns);
  b.setRestarts(x.restarts);
  b.setUptimeNs(x.uptime_ns);
  b.setStep(x.step);
}
status_reply get(w::StatusReply::Reader r) {
  status_reply x;
  x.name = str(r.getName());
  x.kind = str(r.getKind());
  x.state = enum_in<actor_state>(r.getState(), 6, "actor state");
  for (auto c : r.getCounters()) {
    x.counters.push_back({str(c.getName()), c.getValue()});
  }
  x.queue_depth = r.getQueueDepth();
  x.in_flight = r.getInFlight();
  x.last_error = str(r.getLastError());
  x.last_error_at_ns = r.getLastErrorAtNs();
  x.restarts = r.getRestarts();
  x.uptime_ns = r.getUptimeNs();
  x.step = r.getStep();
  return x;
}

void put(w::BatchRequest::Builder b, const batch_request& x) {
  put(b.initAt(), x.at);
  b.setWorldSize(x.world_size);
  b.setBatchSize(x.batch_size);
  b.setMaxLength(x.max_length);
}
batch_request get(w::BatchRequest::Reader r) {
  return {get(r.getAt()), r.getWorldSize(), r.getBatchSize(), r.getMaxLength()};
}

void put(w::Batch::Builder b, const batch& x) {
  put(b.initAt(), x.at);
  fill(b.initUserIds(static_cast<unsigned>(x.user_ids.size())), x.user_ids);
  fill(b.initItemIds(static_cast<unsigned>(x.item_ids.size())), x.item_ids);
}
batch get(w::Batch::Reader r) {
  return {get(r.getAt()), vec<std::int64_t>(r.getUserIds()), vec<std::int32_t>(r.getItemIds())};
}

void put(w::NegativesRequest::Builder b, const negatives_request& x) {
  put(b.initAt(), x.at);
  b.setCount(x.count);
  fill(b.initExcludeIds(static_cast<unsigned>(x.exclude_ids.size())), x.exclude_ids);
}
negatives_request get(w::NegativesRequest::Reader r) {
  return {get(r.getAt()), r.getCount(), vec<std::int32_t>(r.getExcludeIds())};
}

void put(w::Negatives::Builder b, const negatives& x) {
  put(b.initAt(), x.at);
  fill(b.initItemIds(static_cast<unsigned>(x.item_ids.size())), x.item_ids);
}
negatives get(w::Negatives::Reader r) { return {get(r.getAt()), vec<std::int32_t>(r.getItemIds())}; }

void put(w::EncodeRequest::Builder b, const encode_request& x) {
  fill(b.initItemIds(static_cast<unsigned>(x.item_ids.size())), x.item_ids);
  b.setModelVersion(text(x.model_version));
  b.setWriteToCache(x.write_to_cache);
}
encode_request get(w::EncodeRequest::Reader r) {
  return {vec<std::int32_t>(r.getItemIds()), str(r.getModelVersion()), r.getWriteToCache()};
}

void put(w::EncodeResult::Builder b, const encode_result& x) {
  fill(b.initItemIds(static_cast<unsigned>(x.item_ids.size())), x.item_ids);
  b.setModelVersion(text(x.model_version));
  put(b.initEmbeddings(), x.embeddings);
}
encode_result get(w::EncodeResult::Reader r) {
  return {vec<std::int32_t>(r.getItemIds()), str(r.getModelVersion()), get(r.getEmbeddings())};
}

void put(w::CachePut::Builder b, const cache_put& x) {
  b.setShard(x.shard);
  b.setModelVersion(text(x.model_version));
  fill(b.initItemIds(static_cast<unsigned>(x.item_ids.size())), x.item_ids);
  put(b.initRows(), x.rows);
}
cache_put get(w::CachePut::Reader r) {
  return {r.getShard(), str(r.getModelVersion()), vec<std::int32_t>(r.getItemIds()), get(r.getRows())};
}

void put(w::CacheLookup::Builder b, const cache_lookup& x) {
  b.setShard(x.shard);
  b.setModelVersion(text(x.model_version));
  fill(b.initItemIds(static_cast<unsigned>(x.item_ids.size())), x.item_ids);
}
cache_lookup get(w::CacheLookup::Reader r) {
  return {r.getShard(), str(r.getModelVersion()), vec<std::int32_t>(r.getItemIds())};
}

void put(w::CacheRows::Builder b, const cache_rows& x) {
  b.setShard(x.shard);
  b.setModelVersion(text(x.model_version));
  fill(b.initItemIds(static_cast<unsigned>(x.item_ids.size())), x.item_ids);
  put(b.initRows(), x.rows);
  fill(b.initMissingIds(static_cast<unsigned>(x.missing_ids.size())), x.missing_ids);
}
cache_rows get(w::CacheRows::Reader r) {
  return {r.getShard(), str(r.getModelVersion()), vec<std::int32_t>(r.getItemIds()), get(r.getRows()),
          vec<std::int32_t>(r.getMissingIds())};
}

void put(w::CoverageRequest::Builder b, const coverage_request& x) { b.setModelVersion(text(x.model_version)); }
coverage_request get(w::CoverageRequest::Reader r) { return {str(r.getModelVersion())}; }

void put(w::Coverage::Builder b, const coverage& x) {
  b.setShard(x.shard);
  b.setShardCount(x.shard_count);
  b.setModelVersion(text(x.model_version));
  b.setRowsPresent(x.rows_present);
  b.setRowsExpected(x.rows_expected);
  b.setDim(x.dim);
}
coverage get(w::Coverage::Reader r) {
  return {r.getShard(),       r.getShardCount(),   str(r.getModelVersion()),
          r.getRowsPresent(), r.getRowsExpected(), r.getDim()};
}

void put(w::CheckpointRequest::Builder b, const checkpoint_request& x) {
  b.setStep(x.step);
  b.setDirectory(text(x.directory));
  b.setReason(text(x.reason));
}
checkpoint_request get(w::CheckpointRequest::Reader r) {
  return {r.getStep(), str(r.getDirectory()), str(r.getReason())};
}

void put(w::CheckpointDone::Builder b, const checkpoint_done& x) {
  b.setStep(x.step);
  b.setDirectory(text(x.directory));
  b.setOk(x.ok);
  b.setContentHash(text(x.content_hash));
  b.setBytes(x.bytes);
  b.setError(text(x.error));
}
checkpoint_done get(w::CheckpointDone::Reader r) {
  return {r.getStep(), str(r.getDirectory()), r.getOk(), str(r.getContentHash()), r.getBytes(), str(r.getError())};
}

template <class T>
std::size_t list_words(const std::vector<T>& v) {
  return (v.size() * sizeof(T)) / 8 + 2;
}
// Data passed by reference lives in its own segment; the pointer to it may need a two-word landing pad here.
std::size_t tensor_words(const tensor& t) {
  return (by_reference(t) ? 2 : t.data.size() / 8) + list_words(t.shape) + 4;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// The body union.

void put_body(w::Envelope::Body::Builder b, const body& content) {
  switch (kind_of(content)) {
    case body_kind::error: return put(b.initError(), std::get<error>(content));
    case body_kind::ack: return put(b.initAck(), std::get<ack>(content));
    case body_kind::credit: return put(b.initCredit(), std::get<credit>(content));
    case body_kind::status_request: return put(b.initStatusRequest(), std::get<status_request>(content));
    case body_kind::status_reply: return put(b.initStatusReply(), std::get<status_reply>(content));
    case body_kind::batch_request: return put(b.initBatchRequest(), std::get<batch_request>(content));
    case body_kind::batch: return put(b.initBatch(), std::get<batch>(content));
    case body_kind::negatives_request: return put(b.initNegativesRequest(), std::get<negatives_request>(content));
    case body_kind::negatives: return put(b.initNegatives(), std::get<negatives>(content));
    case body_kind::encode_request: return put(b.initEncodeRequest(), std::get<encode_request>(content));
    case body_kind::encode_result: return put(b.initEncodeResult(), std::get<encode_result>(content));
    case body_kind::cache_put: return put(b.initCachePut(), std::get<cache_put>(content));
    case body_kind::cache_lookup: return put(b.initCacheLookup(), std::get<cache_lookup>(content));
    case body_kind::cache_rows: return put(b.initCacheRows(), std::get<cache_rows>(content));
    case body_kind::coverage_request: return put(b.initCoverageRequest(), std::get<coverage_request>(content));
    case body_kind::coverage: return put(b.initCoverage(), std::get<coverage>(content));
    case body_kind::checkpoint_request:
      return put(b.initCheckpointRequest(), std::get<checkpoint_request>(content));
    case body_kind::checkpoint_done: return put(b.initCheckpointDone(), std::get<checkpoint_done>(content));
  }
}

body get_body(w::Envelope::Body::Reader r) {
  using B = w::Envelope::Body;
  switch (r.which()) {
    case B::ERROR: return get(r.getError());
    case B::ACK: return get(r.getAck());
    case B::CREDIT: return get(r.getCredit());
    case B::STATUS_REQUEST: return get(r.getStatusRequest());
    case B::STATUS_REPLY: return get(r.getStatusReply());
    case B::BATCH_REQUEST: return get(r.getBatchRequest());
    case B::BATCH: return get(r.getBatch());
    case B::NEGATIVES_REQUEST: return get(r.getNegativesRequest());
    case B::NEGATIVES: return get(r.getNegatives());
    case B::ENCODE_REQUEST: return get(r.getEncodeRequest());
    case B::ENCODE_RESULT: return get(r.getEncodeResult());
    case B::CACHE_PUT: return get(r.getCachePut());
    case B::CACHE_LOOKUP: return get(r.getCacheLookup());
    case B::CACHE_ROWS: return get(r.getCacheRows());
    case B::COVERAGE_REQUEST: return get(r.getCoverageRequest());
    case B::COVERAGE: return get(r.getCoverage());
    case B::CHECKPOINT_REQUEST: return get(r.getCheckpointRequest());
    case B::CHECKPOINT_DONE: return get(r.getCheckpointDone());
  }
  fail(error_code::unknown_body, "unknown body member " + std::to_string(static_cast<unsigned>(r.which())));
}

// ---------------------------------------------------------------------------------------------------------------
// Size estimate: enough words that a typical message fits the first segment, so encode() needs no flattening copy.

std::size_t text_words(const std::string& s) { return s.size() / 8 + 2; }

// The one tensor a body may carry (null for the others).
const tensor* tensor_of(const body& content) {
  switch (kind_of(content)) {
    case body_kind::encode_result: return &std::get<encode_result>(content).embeddings;
    case body_kind::cache_put: return &std::get<cache_put>(content).rows;
    case body_kind::cache_rows: return &std::get<cache_rows>(content).rows;
    default: return nullptr;
  }
}

std::size_t body_words(const body& content) {
  constexpr std::size_t base = 32;
  switch (kind_of(content)) {
    case body_kind::error: return base + text_words(std::get<error>(content).message);
    case body_kind::status_reply: {
      const auto& s = std::get<status_reply>(content);
      std::size_t n = base + text_words(s.last_error) + text_words(s.name) + text_words(s.kind);
      for (const auto& c : s.counters) {
        n += 3 + text_words(c.name);
      }
      return n;
    }
    case body_kind::batch: {
      const auto& b = std::get<batch>(content);
      return base + list_words(b.user_ids) + list_words(b.item_ids);
    }
    case body_kind::negatives_request: return base + list_words(std::get<negatives_request>(content).exclude_ids);
    case body_kind::negatives: return base + list_words(std::get<negatives>(content).item_ids);
    case body_kind::encode_request: {
      const auto& e = std::get<encode_request>(content);
      return base + list_words(e.item_ids) + text_words(e.model_version);
    }
    case body_kind::encode_result: {
      const auto& e = std::get<encode_result>(content);
      return base + list_words(e.item_ids) + text_words(e.model_version) + tensor_words(e.embeddings);
    }
    case body_kind::cache_put: {
      const auto& c = std::get<cache_put>(content);
      return base + list_words(c.item_ids) + text_words(c.model_version) + tensor_words(c.rows);
    }
    case body_kind::cache_lookup: {
      const auto& c = std::get<cache_lookup>(content);
      return base + list_words(c.item_ids) + text_words(c.model_version);
    }
    case body_kind::cache_rows: {
      const auto& c = std::get<cache_rows>(content);
      return base + list_words(c.item_ids) + list_words(c.missing_ids) + text_words(c.model_version) +
             tensor_words(c.rows);
    }
    case body_kind::checkpoint_done: {
      const auto& c = std::get<checkpoint_done>(content);
      return base + text_words(c.directory) + text_words(c.error) + text_words(c.content_hash);
    }
    default: return 4 * base;  // small fixed bodies with a few short texts
  }
}

}  // namespace hllm::msg::codec_detail
