# A stand-in for a FUTURE version of messages/envelope.capnp, for the schema-evolution test: the same Envelope
# layout plus a new header field, a new StatusReply field and a new body member, added the way the evolution rules
# in envelope.capnp allow. Bodies the test does not look at are typed `Opaque` (same pointer slot, nothing read).
# When envelope.capnp gains fields or members, extend this copy so that it stays one step ahead.
@0xfc8bfcfb1d56aecf;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("hllm::wire_next");

struct Opaque {}

enum ActorState {
  starting @0;
  idle @1;
  running @2;
  draining @3;
  stopped @4;
  failed @5;
}

struct Counter {
  name @0 :Text;
  value @1 :Int64;
}

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
  hostName @11 :Text;           # new in "next"
}

struct Probe {                  # new in "next"
  payload @0 :Text;
}

struct Envelope {
  version @0 :UInt16;
  sender @1 :Text;
  receiver @2 :Text;
  correlationId @3 :UInt64;
  isReply @4 :Bool;
  jobId @5 :UInt64;
  jobEpoch @6 :UInt32;
  timeoutMs @7 :UInt32;

  body :union {
    error @8 :Opaque;
    ack @9 :Opaque;
    credit @10 :Opaque;
    statusRequest @11 :Opaque;
    statusReply @12 :StatusReply;
    batchRequest @13 :Opaque;
    batch @14 :Opaque;
    negativesRequest @15 :Opaque;
    negatives @16 :Opaque;
    encodeRequest @17 :Opaque;
    encodeResult @18 :Opaque;
    cachePut @19 :Opaque;
    cacheLookup @20 :Opaque;
    cacheRows @21 :Opaque;
    coverageRequest @22 :Opaque;
    coverage @23 :Opaque;
    checkpointRequest @24 :Opaque;
    checkpointDone @25 :Opaque;
    probe @27 :Probe;           # new in "next"
  }

  traceId @26 :UInt64;          # new in "next"
}
