# Every message that crosses an actor boundary in hllm-actors. docs/protocol.md describes each one and the
# delivery rules; messages/protocol.hpp says which actor accepts which request and what it answers.
# Evolution rules (Cap'n Proto): never renumber, retype or remove a field; add new fields and new union members
# only at the end, with the next ordinal. Bump `schemaVersion` only for a change an old reader must refuse (a
# changed meaning), never for an added field: old readers skip fields they do not know.
#
# Versions (a reader accepts only [oldest readable, current], messages/codec.cpp):
#   1  the first schema.
#   2  removed what production never sent or read: the bodies registration, registrationAck, heartbeat, metrics
#      and shutdown (with Peer and Metric), and Batch.lengths, Batch.targets, Batch.endOfEpoch. Fields and union
#      members after them were renumbered, so versions 1 and 2 refuse each other (every process of a job runs
#      the same build).
@0xabcb598a23acd744;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("hllm::wire");

const schemaVersion :UInt16 = 2;

# ---- shared pieces -----------------------------------------------------------------------------------------------

enum DType {
  f32 @0;
  f16 @1;
  bf16 @2;
  f64 @3;
  i32 @4;
  i64 @5;
  u8 @6;
}

# A dense tensor: raw little-endian rows in `data`, row-major, `shape` beside it. Readers copy `data` into
# aligned memory before viewing it as numbers.
struct Tensor {
  dtype @0 :DType;
  shape @1 :List(Int64);
  data @2 :Data;
}

enum ActorState {
  starting @0;
  idle @1;
  running @2;
  draining @3;
  stopped @4;
  failed @5;
}

enum ErrorCode {
  unknown @0;
  malformed @1;         # bytes that are not a valid Envelope
  versionMismatch @2;   # schemaVersion this reader does not accept
  unknownBody @3;       # a union member this reader does not know
  tooLarge @4;          # over the configured maximum message size
  unknownReceiver @5;   # no route to the receiver address
  staleEpoch @6;        # job id or job epoch differs from the receiver's
  timeout @7;           # no reply within the request's timeout
  overloaded @8;        # no credit left / queue bound reached: retry later
  rejected @9;          # the receiver refused the request (bad arguments, wrong state)
  internal @10;         # the receiver failed while handling the request
}

# Where a batch or a set of negatives belongs: every random draw is a pure function of this key (and the job seed).
struct StepKey {
  stage @0 :UInt8;
  epoch @1 :UInt32;
  step @2 :UInt64;
  rank @3 :UInt32;
}

struct Counter {
  name @0 :Text;
  value @1 :Int64;
}

# ---- bodies ------------------------------------------------------------------------------------------------------

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;
}

struct Ack {
  note @0 :Text;
}

# A flow-control grant: the sender allows the receiver to have up to `window` requests in flight to it.
struct Credit {
  window @0 :UInt32;
}

struct StatusRequest {
  verbose @0 :Bool;
}

# The console's only source: every actor answers a StatusRequest with this.
struct StatusReply {
  name @0 :Text;
  kind @1 :Text;
  state @2 :ActorState;
  counters @3 :List(Counter);
  queueDepth @4 :UInt32;
  inFlight @5 :UInt32;
  lastError @6 :Text;
  lastErrorAtNs @7 :Int64;
  restarts @8 :UInt32;
  uptimeNs @9 :Int64;
  step @10 :UInt64;
}

struct BatchRequest {
  at @0 :StepKey;
  worldSize @1 :UInt32;
  batchSize @2 :UInt32;   # users per batch
  maxLength @3 :UInt32;   # longest sequence kept (the most recent items)
}

# The users of one step and their item windows: user u's window is itemIds[u * (maxLength + 1) ..
# (u + 1) * (maxLength + 1)), the most recent training items, oldest first, left-padded with 0; the model predicts
# each item from the ones before it.
struct Batch {
  at @0 :StepKey;
  userIds @1 :List(Int64);
  itemIds @2 :List(Int32);
}

struct NegativesRequest {
  at @0 :StepKey;
  count @1 :UInt32;
  excludeIds @2 :List(Int32);   # e.g. the items of the batch's users
}

struct Negatives {
  at @0 :StepKey;
  itemIds @1 :List(Int32);
}

struct EncodeRequest {
  itemIds @0 :List(Int32);
  modelVersion @1 :Text;        # Item-LLM checkpoint hash the encoder must hold
  writeToCache @2 :Bool;        # also put the rows into their owning cache shards
}

struct EncodeResult {
  itemIds @0 :List(Int32);
  modelVersion @1 :Text;
  embeddings @2 :Tensor;        # [itemIds.size, dim]
}

struct CachePut {
  shard @0 :UInt32;
  modelVersion @1 :Text;        # rows are tagged with the Item-LLM checkpoint hash that produced them
  itemIds @2 :List(Int32);
  rows @3 :Tensor;
}

struct CacheLookup {
  shard @0 :UInt32;
  modelVersion @1 :Text;
  itemIds @2 :List(Int32);
}

struct CacheRows {
  shard @0 :UInt32;
  modelVersion @1 :Text;
  itemIds @2 :List(Int32);      # the ids found, in the order of `rows`
  rows @3 :Tensor;
  missingIds @4 :List(Int32);   # asked for but absent (or of another modelVersion)
}

struct CoverageRequest {
  modelVersion @0 :Text;
}

struct Coverage {
  shard @0 :UInt32;
  shardCount @1 :UInt32;
  modelVersion @2 :Text;
  rowsPresent @3 :UInt64;
  rowsExpected @4 :UInt64;
  dim @5 :UInt32;
}

struct CheckpointRequest {
  step @0 :UInt64;
  directory @1 :Text;
  reason @2 :Text;
}

struct CheckpointDone {
  step @0 :UInt64;
  directory @1 :Text;
  ok @2 :Bool;
  contentHash @3 :Text;
  bytes @4 :UInt64;
  error @5 :Text;
}

# ---- the envelope ------------------------------------------------------------------------------------------------

struct Envelope {
  version @0 :UInt16;           # schemaVersion of the writer
  sender @1 :Text;              # actor address of the sender
  receiver @2 :Text;            # actor address of the receiver
  correlationId @3 :UInt64;     # non-zero on requests; a reply carries its request's id; 0 on one-way messages
  isReply @4 :Bool;
  jobId @5 :UInt64;
  jobEpoch @6 :UInt32;          # incarnation of the job: messages from another epoch are fenced out
  timeoutMs @7 :UInt32;         # how long the requester waits for the reply (0: one-way / no deadline)

  body :union {
    error @8 :Error;
    ack @9 :Ack;
    credit @10 :Credit;
    statusRequest @11 :StatusRequest;
    statusReply @12 :StatusReply;
    batchRequest @13 :BatchRequest;
    batch @14 :Batch;
    negativesRequest @15 :NegativesRequest;
    negatives @16 :Negatives;
    encodeRequest @17 :EncodeRequest;
    encodeResult @18 :EncodeResult;
    cachePut @19 :CachePut;
    cacheLookup @20 :CacheLookup;
    cacheRows @21 :CacheRows;
    coverageRequest @22 :CoverageRequest;
    coverage @23 :Coverage;
    checkpointRequest @24 :CheckpointRequest;
    checkpointDone @25 :CheckpointDone;
  }
}
