#pragma once
// Actor code shared by the in-process and the two-process router tests: the same batch_service and batch_client
// run either way, talking through whatever router they are given (they never know where the peer lives).
#include <caf/actor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cstdint>
#include <string>

#include "actors/actors.hpp"
#include "actors/router.hpp"
#include "messages/codec.hpp"

namespace hllm::testing {

// The batch a service answers for a request: a pure function of the request, so a client can check it.
msg::batch expected_batch(const msg::batch_request& r);

// Answers batch_request with expected_batch() and status_request with its status (counter "posts" counts
// the one-way messages it got that decode); anything else with an `rejected` error.
addressable_actor::behavior_type batch_service(addressable_actor::pointer self, std::string name);

struct client_plan {
  std::string name;        // the client's own address
  std::string service;     // the address it asks
  std::uint32_t requests = 100;
  std::uint32_t window = 8;  // requests in flight
  job_ref job;
};

// Asks `plan.requests` batches, `plan.window` at a time, and checks every reply. Answers the message
// "run" with "" when all replies were right, or with a description of the first wrong one.
caf::behavior batch_client(caf::event_based_actor* self, router_actor router, client_plan plan);

}  // namespace hllm::testing
