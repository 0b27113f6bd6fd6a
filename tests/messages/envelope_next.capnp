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
    registration @11 :Opaque;
    registrationAck @12 :Opaque;
    heartbeat @13 :Opaque;
    statusRequest @14 :Opaque;
    statusReply @15 :StatusReply;
    batchRequest @16 :Opaque;
    batch @17 :Opaque;
    negativesRequest @18 :Opaque;
    negatives @19 :Opaque;
    encodeRequest @20 :Opaque;
    encodeResult @21 :Opaque;
    cachePut @22 :Opaque;
    cacheLookup @23 :Opaque;
    cacheRows @24 :Opaque;
    coverageRequest @25 :Opaque;
    coverage @26 :Opaque;
    metrics @27 :Opaque;
    checkpointRequest @28 :Opaque;
    checkpointDone @29 :Opaque;
    shutdown @30 :Opaque;
    probe @32 :Probe;           # new in "next"
  }

  traceId @31 :UInt64;          # new in "next"
}
