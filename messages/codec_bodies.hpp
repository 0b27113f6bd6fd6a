#pragma once
// Internal to the codec (codec.cpp and codec_bodies.cpp): the translation between the plain structs of bodies.hpp
// and the Cap'n Proto builders and readers of envelope.capnp. Actor code includes messages/codec.hpp, never this.
#include <cstddef>
#include <string>

#include "messages/codec.hpp"
#include "messages/envelope.capnp.h"

namespace hllm::msg::codec_detail {

namespace w = hllm::wire;

// Thrown inside the codec only: the readers turn it into a failure value.
struct decode_failure {
  failure f;
};

[[noreturn]] inline void fail(error_code code, std::string what) { throw decode_failure{{code, std::move(what)}}; }

inline kj::StringPtr text(const std::string& s) { return kj::StringPtr(s.c_str(), s.size()); }
inline std::string str(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

// Writes `content` into the body union.
void put_body(w::Envelope::Body::Builder b, const body& content);

// Reads the body union; throws decode_failure (bad enum value, tensor shape against data, unknown member) or
// kj::Exception (a pointer out of bounds).
body get_body(w::Envelope::Body::Reader r);

// Size estimate in words: enough that a typical message fits the first segment, so encode() needs no
// flattening copy.
std::size_t text_words(const std::string& s);
std::size_t body_words(const body& content);

// The one tensor a body may carry (null for the others): its data may sit in a segment of its own.
const tensor* tensor_of(const body& content);

}  // namespace hllm::msg::codec_detail
