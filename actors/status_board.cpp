#include "actors/status_board.hpp"

#include <chrono>

namespace hllm {
namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

status_board::status_board(std::string name, std::string kind) : started_ns_(now_ns()) {
  reply_.name = std::move(name);
  reply_.kind = std::move(kind);
  reply_.state = msg::actor_state::starting;
}

void status_board::set_state(msg::actor_state s) {
  std::lock_guard<std::mutex> lock(mutex_);
  reply_.state = s;
}

void status_board::set_counter(const std::string& name, std::int64_t value) {
  std::lock_guard<std::mutex> lock(mutex_);
  counters_[name] = value;
}

void status_board::set_step(std::uint64_t step) {
  std::lock_guard<std::mutex> lock(mutex_);
  reply_.step = step;
}

void status_board::set_error(const std::string& message) {
  std::lock_guard<std::mutex> lock(mutex_);
  reply_.last_error = message;
  reply_.last_error_at_ns = now_ns();
}

msg::status_reply status_board::status() const {
  std::lock_guard<std::mutex> lock(mutex_);
  msg::status_reply r = reply_;
  for (const auto& [k, v] : counters_) r.counters.push_back({k, v});
  r.uptime_ns = now_ns() - started_ns_;
  return r;
}

msg::body status_board::handle(const msg::body& request) {
  if (std::holds_alternative<msg::status_request>(request)) return status();
  return msg::error{msg::error_code::rejected,
                    reply_.name + ": answers status only, not " + msg::to_string(msg::kind_of(request))};
}

}  // namespace hllm
