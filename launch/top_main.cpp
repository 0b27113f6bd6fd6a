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
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "actors/monitor_console_token.hpp"
#include "actors/monitor_view.hpp"

namespace {

using json = nlohmann::json;

// Text from the job (actor names, errors, paths, anything in /api/status) and from the network reaches the terminal
// only through here: control characters are removed, so nothing the job or a server says can move the cursor,
// retitle the window, or hide lines. Removed: C0 controls (except newline where KEEP_NEWLINES, and tab, which
// becomes a space), DEL, C1 controls (U+0080..U+009F, and raw bytes 0x80..0x9F outside UTF-8), bidirectional
// overrides and isolates (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C), and bytes that are not UTF-8.
std::string terminal_safe(const std::string& in, bool keep_newlines) {
  std::string out;
  out.reserve(in.size());
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      if (c == '\n' && keep_newlines) out.push_back('\n');
      else if (c == '\t') out.push_back(' ');
      else if (c >= 0x20 && c != 0x7f) out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    // A UTF-8 sequence: its length, then whether it is well formed (no overlong forms, no surrogates).
    std::size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (len == 0 || i + len > n) {
      ++i;  // not UTF-8 (a raw C1 byte among them): dropped
      continue;
    }
    std::uint32_t cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
    bool ok = true;
    for (std::size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    if (ok) {
      ok = !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10ffff)) && !(cp >= 0xd800 && cp <= 0xdfff);
    }
    if (!ok) {
      ++i;
      continue;
    }
    const bool hidden = (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
                        cp == 0x200e || cp == 0x200f || cp == 0x061c;
    if (!hidden) out.append(in, i, len);
    i += len;
  }
  return out;
}

// Every string in DOC (keys too) made terminal_safe without newlines, so the screen's layout is computed on what
// will be printed.
json terminal_safe(const json& doc) {
  if (doc.is_string()) return terminal_safe(doc.get<std::string>(), false);
  if (doc.is_array()) {
    json out = json::array();
    for (const auto& v : doc) out.push_back(terminal_safe(v));
    return out;
  }
  if (doc.is_object()) {
    json out = json::object();
    for (auto it = doc.begin(); it != doc.end(); ++it) out[terminal_safe(it.key(), false)] = terminal_safe(it.value());
    return out;
  }
  return doc;
}

void print_error(const std::string& what) {
  std::fprintf(stderr, "hllm top: %s\n", terminal_safe(what, false).c_str());
}

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
  doc = terminal_safe(doc);
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
  std::string connect, job, token, token_file;
  double interval = 1.0;
  bool once = false;
  CLI::App app{"hllm top: the running job's console in the terminal (actors, progress, loss, cache, checkpoints); "
               "q quits",
               "hllm top"};
  app.add_option("--connect", connect, "HOST:PORT of the job's console (the job logs it: 'console: http://...')");
  app.add_option("--job", job, "job directory of a running job: read HOST:PORT from JOB/console.json");
  app.add_option("--token", token,
                 "bearer token of the console (visible to other users in the process list: prefer --token-file or "
                 "$HLLM_MONITOR_TOKEN)");
  app.add_option("--token-file", token_file,
                 "file holding the console's bearer token (mode 600: readable by its owner only)");
  app.add_option("--interval", interval, "seconds between refreshes")->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  app.add_flag("--once", once, "print one screen and exit (also when stdout is not a terminal)");
  CLI11_PARSE(app, argc, argv);
  endpoint at;
  try {
    if (!token.empty() && !token_file.empty()) throw std::runtime_error("give --token or --token-file, not both");
    if (!token_file.empty()) token = hllm::load_monitor_token(token_file);
    if (token.empty()) {
      if (const char* t = std::getenv("HLLM_MONITOR_TOKEN")) token = t;
    }
    if (!connect.empty()) at = parse_endpoint(connect);
    else if (!job.empty()) at = endpoint_of_job(job);
    else throw std::runtime_error("give --connect HOST:PORT (the job logs 'console: http://HOST:PORT/') or --job DIR");
  } catch (const std::exception& e) {
    print_error(e.what());
    return 2;
  }
  const bool interactive = !once && ::isatty(STDOUT_FILENO) && ::isatty(STDIN_FILENO);
  if (!interactive) {
    json doc;
    std::string why;
    if (!fetch(at, token, doc, why)) {
      print_error(why);
      return 1;
    }
    try {
      std::fputs(terminal_safe(hllm::render_top(doc, 0), true).c_str(), stdout);
    } catch (const std::exception& e) {
      print_error(e.what());
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
    screen = terminal_safe(screen, true);  // the only escape sequences printed are our own, below
    std::string footer =
        terminal_safe("\n" + where + "  refresh " + std::to_string(interval).substr(0, 4) + "s  q quits\n", true);
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
