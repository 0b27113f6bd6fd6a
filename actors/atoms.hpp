#pragma once
// Atoms and the CAF type-id block of hllm-actors: every CAF message type and tag in one place. Register the
// block in every process (STACK.md pitfall 5): cfg.add_message_types<caf::id_block::hllm>(), or call
// hllm::configure_actor_system(cfg) from router.hpp.
#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include <cstdint>
#include <vector>

#include "messages/buffer.hpp"

namespace hllm::msg {

// Local delivery never serializes a buffer (it is shared); this exists because CAF requires every message type
// to be inspectable (it is also what to_string() prints).
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, buffer& x) {
  std::vector<std::uint8_t> bytes;
  if constexpr (Inspector::reads_state) {
    auto* p = reinterpret_cast<const std::uint8_t*>(x.data());
    bytes.assign(p, p + x.size());
  }
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x = buffer::copy_of(bytes.data(), bytes.size());
    return caf::none;
  });
  return f(caf::meta::type_name("hllm::msg::buffer"), bytes, load);
}

}  // namespace hllm::msg

// Actor handles (actors.hpp) need no ids: they never leave a process (ZeroMQ carries the cross-process traffic).
CAF_BEGIN_TYPE_ID_BLOCK(hllm, caf::first_custom_type_id)

  CAF_ADD_TYPE_ID(hllm, (hllm::msg::buffer))
  CAF_ADD_TYPE_ID(hllm, (std::vector<hllm::msg::buffer>))  // frames the router's I/O thread read in one wake-up

  // Router <-> local actors.
  CAF_ADD_ATOM(hllm, hllm::atom, deliver, "deliver")   // a request envelope for a local actor; reply expected
  CAF_ADD_ATOM(hllm, hllm::atom, post, "post")         // a one-way envelope for a local actor
  CAF_ADD_ATOM(hllm, hllm::atom, send, "send")         // actor -> router: route this one-way envelope
  CAF_ADD_ATOM(hllm, hllm::atom, request, "request")   // actor -> router: route this request, answer with the reply

  // Router administration.
  CAF_ADD_ATOM(hllm, hllm::atom, enroll, "enroll")     // put a local actor into the address book
  CAF_ADD_ATOM(hllm, hllm::atom, route, "route")       // put a remote actor (its router's endpoint) into the book
  CAF_ADD_ATOM(hllm, hllm::atom, forget, "forget")     // remove an address
  CAF_ADD_ATOM(hllm, hllm::atom, epoch, "epoch")       // move to a new job epoch (fences the old one out)
  CAF_ADD_ATOM(hllm, hllm::atom, status, "status")     // the router's own status, as an encoded envelope
  CAF_ADD_ATOM(hllm, hllm::atom, endpoints, "endpoints")  // the endpoints the router is bound to

  // Router internals.
  CAF_ADD_ATOM(hllm, hllm::atom, inbound, "inbound")   // I/O thread -> router: frames from the network
  CAF_ADD_ATOM(hllm, hllm::atom, timeout, "timeout")   // a remote request's deadline passed

CAF_END_TYPE_ID_BLOCK(hllm)
