#pragma once
// The two CAF interfaces of hllm-actors. Every job actor (data loader, negative sampler, item encoder, cache
// shard, trainer, coordinator, monitor) is an addressable_actor: encoded envelopes in, encoded replies out, all
// through the per-process router_actor. Which requests each kind of actor accepts and the reply each gets is the
// protocol table in messages/protocol.hpp (and docs/protocol.md), not a CAF signature: the same bytes cross a
// process boundary unchanged.
#include <caf/replies_to.hpp>
#include <caf/timespan.hpp>
#include <caf/typed_actor.hpp>

#include <string>
#include <vector>

#include "actors/atoms.hpp"
#include "messages/buffer.hpp"

namespace hllm {

// What every actor reachable by address implements. The router hands it encoded envelopes (hllm::msg::buffer);
// a request is answered with the encoded reply envelope, a one-way message with nothing. The actor never learns
// whether the sender lives in this process.
using addressable_actor = caf::typed_actor<                               //
    caf::replies_to<atom::deliver, msg::buffer>::with<msg::buffer>,       // request -> reply envelope
    caf::reacts_to<atom::post, msg::buffer>>;                             // one-way envelope

// The per-process router (actors/router.hpp): owns the ZeroMQ sockets and the address book.
using router_actor = caf::typed_actor<
    // Actor code -> router.
    caf::reacts_to<atom::send, msg::buffer>,                                   // route a one-way envelope
    caf::replies_to<atom::request, msg::buffer>::with<msg::buffer>,            // route a request; get its reply
    // Address book and job epoch.
    caf::replies_to<atom::enroll, std::string, addressable_actor>::with<bool>,  // local actor under a name
    caf::replies_to<atom::route, std::string, std::string, std::string>::with<bool>,  // name, endpoint, key
    caf::reacts_to<atom::forget, std::string>,
    caf::reacts_to<atom::epoch, std::uint32_t>,
    // Introspection.
    caf::replies_to<atom::status>::with<msg::buffer>,                      // an envelope with a status_reply
    caf::replies_to<atom::endpoints>::with<std::vector<std::string>>,
    // Internal: the I/O thread and request deadlines.
    caf::reacts_to<atom::inbound, std::vector<msg::buffer>>,
    caf::reacts_to<atom::timeout, std::uint64_t>>;

}  // namespace hllm
