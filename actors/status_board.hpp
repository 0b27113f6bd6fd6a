#pragma once
// A status_reply that a thread outside CAF keeps current (the coordinator's stage loop, a trainer's step loop) and
// an actor answers from, so those roles answer `status` like every other actor (the monitor's only source).
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "messages/bodies.hpp"

namespace hllm {

class status_board {
 public:
  status_board(std::string name, std::string kind);

  void set_state(msg::actor_state s);
  void set_counter(const std::string& name, std::int64_t value);
  void set_step(std::uint64_t step);
  void set_error(const std::string& message);

  msg::status_reply status() const;
  // The addressable core: answers status_request, refuses anything else.
  msg::body handle(const msg::body& request);

 private:
  mutable std::mutex mutex_;
  msg::status_reply reply_;
  std::map<std::string, std::int64_t> counters_;
  std::int64_t started_ns_;
};

}  // namespace hllm
