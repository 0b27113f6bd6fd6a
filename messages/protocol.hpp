#pragma once
// The protocol of hllm-actors in one place: every request each kind of actor accepts and the reply it gets.
//
// Every job actor has the same CAF interface (actors/actors.hpp: addressable_actor, an encoded envelope in, the
// encoded reply out); what travels inside is decided here. Read it as a table:
//
//   actor kind (status_reply.kind)  request body        -> reply body      sent by
//   ------------------------------  ------------------     --------------  -------------------------------------
//   any actor, and every router     status_request      -> status_reply    monitor, worker pool (liveness)
//   data_loader                     batch_request       -> batch           step feed (trainer)
//   negative_sampler                negatives_request   -> negatives       step feed (trainer)
//   item_encoder                    encode_request      -> encode_result   cache fill
//   embedding_cache_shard           cache_put           -> ack             item encoder (write_to_cache)
//                                   cache_lookup        -> cache_rows      step feed (stage 2), cache fill, export
//                                   coverage_request    -> coverage        cache fill
//                                   checkpoint_request  -> checkpoint_done cache fill (persist before the ledger)
//   router (one-way, consumed)      credit              (no reply)         a receiver granting a window
//
// Any request may be answered by an `error` body instead (docs/protocol.md, "Error codes"): by the router
// (timeout, unknown receiver, no credit, stale epoch) or by the receiver (`rejected` for a body it does not accept,
// `internal` when it failed). The code below is that table, checked by the compiler and by tests/messages:
// `reply_t<Request>` is the reply type of a request; `protocol::<kind>::accepts<Request>` says whether an actor
// kind takes it; `exchanges()` lists every row for tests, docs and tools.
//
// Adding a message: add the body to envelope.capnp (at the end of the union, next ordinal), its mirror to
// bodies.hpp and its put/get to the codec, then a reply_to<> line and the actor kind's `requests` list below.
#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "messages/bodies.hpp"
#include "messages/shard.hpp"  // the cache's ownership rule and shard addresses belong to the protocol too

namespace hllm::msg {

// ---- request -> reply ----

// The body of a successful reply to `Request`. Not defined for bodies that are not requests.
template <class Request>
struct reply_to;
template <> struct reply_to<status_request> { using type = status_reply; };
template <> struct reply_to<batch_request> { using type = batch; };
template <> struct reply_to<negatives_request> { using type = negatives; };
template <> struct reply_to<encode_request> { using type = encode_result; };
template <> struct reply_to<cache_put> { using type = ack; };
template <> struct reply_to<cache_lookup> { using type = cache_rows; };
template <> struct reply_to<coverage_request> { using type = coverage; };
template <> struct reply_to<checkpoint_request> { using type = checkpoint_done; };

template <class Request>
using reply_t = typename reply_to<Request>::type;

// The body_kind of a body type (its index in msg::body).
template <class T, std::size_t I = 0>
constexpr body_kind kind_of_type() {
  static_assert(I < body_kind_count, "not a message body");
  if constexpr (std::is_same_v<T, std::variant_alternative_t<I, body>>) {
    return static_cast<body_kind>(I);
  } else {
    return kind_of_type<T, I + 1>();
  }
}

// ---- actor kind -> the requests it accepts ----

// The list of requests one kind of actor answers; every one must have a reply_to<> above.
template <class... Requests>
struct requests {
  template <class Request>
  static constexpr bool contains = (std::is_same_v<Request, Requests> || ...);
  static constexpr std::array<body_kind, sizeof...(Requests)> kinds = {kind_of_type<Requests>()...};
  static constexpr std::array<body_kind, sizeof...(Requests)> reply_kinds = {kind_of_type<reply_t<Requests>>()...};
};

namespace protocol {

// Each struct is one kind of actor: `name` is what its status_reply says in `kind`, `accepts` what it answers.
struct data_loader {
  static constexpr std::string_view name = "data_loader";
  using accepts = requests<batch_request, status_request>;
};
struct negative_sampler {
  static constexpr std::string_view name = "negative_sampler";
  using accepts = requests<negatives_request, status_request>;
};
struct item_encoder {
  static constexpr std::string_view name = "item_encoder";
  using accepts = requests<encode_request, status_request>;
};
struct embedding_cache_shard {
  static constexpr std::string_view name = "embedding_cache_shard";
  using accepts = requests<cache_put, cache_lookup, coverage_request, checkpoint_request, status_request>;
};
// The kinds below answer status only. The trainer and the coordinator answer it from a status board
// (actors/status_board.hpp).
struct status_only {
  using accepts = requests<status_request>;
};
struct user_trainer : status_only {
  static constexpr std::string_view name = "user_trainer";
};
struct coordinator : status_only {
  static constexpr std::string_view name = "coordinator";
};
struct monitor : status_only {
  static constexpr std::string_view name = "monitor";
};
// A router answers status_request addressed to its own name (router_config::name) and consumes `credit`.
struct router : status_only {
  static constexpr std::string_view name = "router";
};

// The status_reply of a running actor of kind `Kind` named `name`, before its counters.
template <class Kind>
status_reply running_status(std::string name) {
  status_reply s;
  s.name = std::move(name);
  s.kind = std::string(Kind::name);
  s.state = actor_state::running;
  return s;
}

template <class... Kinds>
struct kind_list {};
using all_kinds = kind_list<data_loader, negative_sampler, item_encoder, embedding_cache_shard, user_trainer,
                            coordinator, monitor, router>;

// One row of the table: `actor_kind` answers `request` with `reply`.
struct exchange {
  std::string_view actor_kind;
  body_kind request;
  body_kind reply;
};

template <class Kind>
constexpr std::size_t rows_of() {
  return Kind::accepts::kinds.size();
}

template <class... Kinds>
constexpr auto exchanges_of(kind_list<Kinds...>) {
  std::array<exchange, (rows_of<Kinds>() + ...)> out{};
  std::size_t n = 0;
  auto add = [&](auto kind) {
    using K = decltype(kind);
    for (std::size_t i = 0; i < K::accepts::kinds.size(); ++i) {
      out[n++] = {K::name, K::accepts::kinds[i], K::accepts::reply_kinds[i]};
    }
  };
  (add(Kinds{}), ...);
  return out;
}

// Every row, in the order of all_kinds.
constexpr auto exchanges() { return exchanges_of(all_kinds{}); }

}  // namespace protocol

// The reply kind of a request kind; nullopt when `request` is not a request.
constexpr std::optional<body_kind> reply_kind_of(body_kind request) {
  for (const auto& e : protocol::exchanges()) {
    if (e.request == request) return e.reply;
  }
  return std::nullopt;
}

// Whether the actor kind `actor_kind` (a status_reply.kind) accepts requests of `request`.
constexpr bool accepts(std::string_view actor_kind, body_kind request) {
  for (const auto& e : protocol::exchanges()) {
    if (e.actor_kind == actor_kind && e.request == request) return true;
  }
  return false;
}

}  // namespace hllm::msg
