#pragma once
// One fully populated envelope per body kind: every field differs from its default, so a field lost by encode or
// decode shows up as an inequality.
#include <cstring>
#include <vector>

#include "messages/bodies.hpp"

namespace hllm::msg::testing {

inline tensor sample_tensor(std::int64_t rows, std::int64_t dim) {
  tensor t;
  t.type = dtype::f32;
  t.shape = {rows, dim};
  std::vector<float> values(static_cast<std::size_t>(rows * dim));
  for (std::size_t i = 0; i < values.size(); ++i) {
    values[i] = 0.5f * static_cast<float>(i) - 3.25f;
  }
  t.data.resize(values.size() * sizeof(float));
  std::memcpy(t.data.data(), values.data(), t.data.size());
  return t;
}

inline step_key sample_key() { return {2, 7, 123456789012ULL, 3}; }

inline body sample_body(body_kind k) {
  switch (k) {
    case body_kind::error: return error{error_code::stale_epoch, "epoch 3 is gone"};
    case body_kind::ack: return ack{"stored"};
    case body_kind::credit: return credit{17};
    case body_kind::status_request: return status_request{true};
    case body_kind::status_reply:
      return status_reply{"router", "router", actor_state::draining, {{"delivered", 12}, {"dropped", -1}},
                          5, 3, "bad frame", 17, 1, 123456, 77};
    case body_kind::batch_request: return batch_request{sample_key(), 4, 64, 150};
    case body_kind::batch: return batch{sample_key(), {10, 11}, {0, 1, 2, 3, 4, 5}};
    case body_kind::negatives_request: return negatives_request{sample_key(), 256, {1, 2, 3}};
    case body_kind::negatives: return negatives{sample_key(), {9, 8, 7, 6}};
    case body_kind::encode_request: return encode_request{{4, 5, 6}, "ckpt-abc", true};
    case body_kind::encode_result: return encode_result{{4, 5, 6}, "ckpt-abc", sample_tensor(3, 4)};
    case body_kind::cache_put: return cache_put{2, "ckpt-abc", {4, 5}, sample_tensor(2, 4)};
    case body_kind::cache_lookup: return cache_lookup{1, "ckpt-abc", {1, 5, 9}};
    case body_kind::cache_rows: return cache_rows{1, "ckpt-abc", {1, 9}, sample_tensor(2, 4), {5}};
    case body_kind::coverage_request: return coverage_request{"ckpt-abc"};
    case body_kind::coverage: return coverage{1, 4, "ckpt-abc", 500, 512, 64};
    case body_kind::checkpoint_request: return checkpoint_request{1000, "/ckpt/step-1000", "schedule"};
    case body_kind::checkpoint_done: return checkpoint_done{1000, "/ckpt/step-1000", true, "xxh64:1234", 4096, "-"};
  }
  return ack{};
}

inline envelope sample_envelope(body_kind k) {
  envelope e;
  e.head.sender = "trainer/0";
  e.head.receiver = "loader/1";
  e.head.correlation_id = 0x1234567890abcdefULL;
  e.head.is_reply = true;
  e.head.job_id = 0xfeedULL;
  e.head.job_epoch = 3;
  e.head.timeout_ms = 2500;
  e.content = sample_body(k);
  return e;
}

}  // namespace hllm::msg::testing
