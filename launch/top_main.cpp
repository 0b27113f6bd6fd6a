// `hllm top`: the job's console in a terminal (for SSH sessions). Reads /api/status of the monitor's console
// (actors/monitor_console.hpp) and redraws every --interval seconds; `q` quits. Links only the torch- and CAF-free
// views (actors/monitor_view.hpp), nlohmann-json and cpp-httplib's client.
#include <httplib.h>

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "actors/monitor_view.hpp"

namespace {

using json = nlohmann::json;

struct endpoint {
  std::string host;
  int port = 0;
};

endpoint parse_endpoint(const std::string& s) {
  std::string v = s;
  if (v.rfind("http://", 0) == 0) v = v.substr(7);
  while (!v.empty() && v.back() == '/') v.pop_back();
  auto colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == v.size()) {
    throw std::runtime_error("--connect wants HOST:PORT (e.g. 127.0.0.1:8080), not '" + s + "'");
  }
  endpoint e;
  e.host = v.substr(0, colon);
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']') e.host = e.host.substr(1, e.host.size() - 2);
  try {
    std::size_t used = 0;
    e.port = std::stoi(v.substr(colon + 1), &used);
    if (used != v.size() - colon - 1) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    throw std::runtime_error("--connect: '" + v.substr(colon + 1) + "' is not a port number");
  }
  if (e.port < 1 || e.port > 65535) throw std::runtime_error("--connect: port " + std::to_string(e.port) + " is not in 1..65535");
  return e;
}

// JOB/console.json, which the job writes when its console is up.
endpoint endpoint_of_job(const std::string& job) {
  std::ifstream in(job + "/console.json");
  if (!in) {
    throw std::runtime_error("no console at '" + job + "/console.json' (is the job running with its console on? "
                             "monitor.port = -1 turns it off)");
  }
  std::stringstream text;
  text << in.rdbuf();
  auto j = json::parse(text.str(), nullptr, false);
  if (j.is_discarded() || !j.contains("connect") || !j["connect"].is_string()) {
    throw std::runtime_error("'" + job + "/console.json' is not the console file of a job");
  }
  return parse_endpoint(j["connect"].get<std::string>());
}

// GET /api/status; on failure returns false with a one-line reason.
bool fetch(const endpoint& at, const std::string& token, json& doc, std::string& why) {
  httplib::Client cli(at.host, at.port);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(5, 0);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  auto res = cli.Get("/api/status", headers);
  const std::string where = at.host + ":" + std::to_string(at.port);
  if (!res) {
    why = "cannot reach the console at " + where + ": " + httplib::to_string(res.error());
    return false;
  }
  if (res->status == 401) {
    why = "the console at " + where + " wants a token (401): --token or HLLM_MONITOR_TOKEN";
    return false;
  }
  if (res->status != 200) {
    why = "the console at " + where + " answered HTTP " + std::to_string(res->status);
    return false;
  }
  doc = json::parse(res->body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    why = where + "/api/status is not a console document";
    return false;
  }
  return true;
}

termios saved_termios;
bool raw_mode = false;
volatile sig_atomic_t interrupted = 0;

void restore_terminal() {
  if (!raw_mode) return;
  ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
  std::fputs("\x1b[?25h", stdout);  // cursor back
  std::fflush(stdout);
  raw_mode = false;
}

void on_signal(int) { interrupted = 1; }

std::size_t terminal_width() {
  winsize w{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string connect, job, token;
  double interval = 1.0;
  bool once = false;
  CLI::App app{"hllm top: the running job's console in the terminal (actors, progress, loss, cache, checkpoints); "
               "q quits",
               "hllm top"};
  app.add_option("--connect", connect, "HOST:PORT of the job's console (the job logs it: 'console: http://...')");
  app.add_option("--job", job, "job directory of a running job: read HOST:PORT from JOB/console.json");
  app.add_option("--token", token, "bearer token of the console (default: $HLLM_MONITOR_TOKEN)");
  app.add_option("--interval", interval, "seconds between refreshes")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  app.add_flag("--once", once, "print one screen and exit (also when stdout is not a terminal)");
  CLI11_PARSE(app, argc, argv);
  if (token.empty()) {
    if (const char* t = std::getenv("HLLM_MONITOR_TOKEN")) token = t;
  }
  endpoint at;
  try {
    if (!connect.empty()) at = parse_endpoint(connect);
    else if (!job.empty()) at = endpoint_of_job(job);
    else throw std::runtime_error("give --connect HOST:PORT (the job logs 'console: http://HOST:PORT/') or --job DIR");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hllm top: %s\n", e.what());
    return 2;
  }
  const bool interactive = !once && ::isatty(STDOUT_FILENO) && ::isatty(STDIN_FILENO);
  if (!interactive) {
    json doc;
    std::string why;
    if (!fetch(at, token, doc, why)) {
      std::fprintf(stderr, "hllm top: %s\n", why.c_str());
      return 1;
    }
    try {
      std::fputs(hllm::render_top(doc, 0).c_str(), stdout);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hllm top: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  // Interactive: raw keys (no echo, no line buffering), redraw from the top of the screen.
  ::tcgetattr(STDIN_FILENO, &saved_termios);
  termios raw = saved_termios;
  raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
  raw.c_cc[VMIN] = 0;
  raw.c_cc[VTIME] = 0;
  ::tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  raw_mode = true;
  std::atexit(restore_terminal);
  ::signal(SIGINT, on_signal);
  ::signal(SIGTERM, on_signal);
  std::fputs("\x1b[?25l", stdout);  // hide the cursor
  const std::string where = at.host + ":" + std::to_string(at.port);
  while (interrupted == 0) {
    json doc;
    std::string why, screen;
    if (fetch(at, token, doc, why)) {
      try {
        screen = hllm::render_top(doc, terminal_width());
      } catch (const std::exception& e) {
        screen = std::string("hllm top: ") + e.what() + "\n";
      }
    } else {
      screen = "hllm top: " + why + " (retrying)\n";
    }
    std::string footer = "\n" + where + "  refresh " + std::to_string(interval).substr(0, 4) + "s  q quits\n";
    std::fputs(("\x1b[H\x1b[2J" + screen + footer).c_str(), stdout);
    std::fflush(stdout);
    pollfd p{STDIN_FILENO, POLLIN, 0};
    int ms = static_cast<int>(std::lround(interval * 1000));
    bool quit = false;
    while (!quit && interrupted == 0 && ::poll(&p, 1, ms) > 0) {
      char c = 0;
      if (::read(STDIN_FILENO, &c, 1) != 1) break;
      if (c == 'q' || c == 'Q' || c == 3 /* Ctrl-C in raw mode */) quit = true;
      else break;  // any other key: refresh now
    }
    if (quit) break;
  }
  std::fputs("\x1b[H\x1b[2J", stdout);
  restore_terminal();
  return 0;
}
