#pragma once
// Views of the monitor's documents that need neither CAF nor torch, so that `hllm top` (launch/top_main.cpp) links
// only them, nlohmann-json and an HTTP client:
// - render_status_table: the actors of a status document as a fixed-width text table;
// - prometheus_text: the console document (monitor::console_json, served as /api/status) in the Prometheus text
//   exposition format (served as /metrics; docs/operations.md "Monitor the job");
// - render_top: the whole console document as one terminal screen (`hllm top`).
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace hllm {

// Formats a status_file document as a fixed-width text table, one line per actor after a header
// (NAME KIND STATE AGE RESTARTS STEP COUNTERS LAST_ERROR), long cells cut with "~". Throws hllm::error when the
// document is not a JSON object.
std::string render_status_table(const nlohmann::json& status);

// The console document as Prometheus text (format 0.0.4): every metric named hllm_*, with HELP and TYPE lines,
// labels actor/kind/process (actors), rank (trainers), stage, shard, checkpoint. Passes `promtool check metrics`.
std::string prometheus_text(const nlohmann::json& console);

// One screen for `hllm top`: the job panel, the actors table, cache coverage, a loss sparkline of the current stage,
// the newest checkpoints and dead actors. WIDTH cuts long lines (0: no limit). Throws hllm::error like
// render_status_table.
std::string render_top(const nlohmann::json& console, std::size_t width = 0);

// "1h02m", "3m07s", "12s"; "-" for a negative or non-finite value.
std::string format_duration(double seconds);

}  // namespace hllm
