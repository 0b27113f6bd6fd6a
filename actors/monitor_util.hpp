#pragma once
// Small helpers the monitor's translation units share (monitor.cpp: the core and the poller; monitor_sources.cpp:
// the console's sources and documents). Internal to the monitor: include it from actors/monitor*.cpp only.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>

namespace hllm::monitor_detail {

using clock_type = std::chrono::steady_clock;

inline double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Drops the oldest elements beyond n.
template <class T>
void keep_last(std::deque<T>& d, std::size_t n) {
  while (d.size() > n) d.pop_front();
}

}  // namespace hllm::monitor_detail
