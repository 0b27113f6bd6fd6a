// The console against a real running job (issue 11): `hllm train` on the tiny dataset with its console on, read over
// real HTTP on 127.0.0.1, through `hllm top`, by promtool, and by a real headless chromium driven over W3C WebDriver
// (chromedriver). No torch here: the job is the real binary.
//
// HLLM_CONSOLE_SCREENSHOT=PATH makes the browser test save its screenshot there (docs/console.png is made so).
#include <gtest/gtest.h>
#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "console_job.hpp"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using namespace hllm::test;
const std::string bin = HLLM_BIN_DIR;

bool have(const std::string& program) { return std::system(("command -v " + program + " >/dev/null 2>&1").c_str()) == 0; }

// A tiny job long enough to watch with its console on a free port and a token (set in the job's configuration).
struct running_job : console_job {
  static inline const std::string token = "test-token-123";

  explicit running_job(const std::string& name)
      : console_job("hllm-console-test", name, {"monitor.token=\"" + token + "\""}) {}
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/"; }

  httplib::Result get(const std::string& path, bool with_token = true) const {
    httplib::Client cli("127.0.0.1", port);
    cli.set_connection_timeout(5, 0);
    cli.set_read_timeout(10, 0);
    httplib::Headers h;
    if (with_token) h.emplace("Authorization", "Bearer " + token);
    return cli.Get(path, h);
  }
  json status() const {
    auto r = get("/api/status");
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }
  // Polls /api/status until PRED holds (or the job ends / 300 s pass: no speed claim, a liveness bound on a shared
  // machine).
  template <class Pred>
  json wait_for(Pred pred) const {
    json doc;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    while (std::chrono::steady_clock::now() < deadline && alive(pid)) {
      doc = status();
      if (doc.is_object() && pred(doc)) return doc;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return json();
  }
};

std::size_t curve_points(const json& doc, const std::string& stage) {
  if (!doc.contains("curves") || !doc["curves"].contains(stage)) return 0;
  return doc["curves"][stage]["loss"].size();
}

// The newest step of a stage's curve (-1 when none).
std::int64_t last_step(const json& doc, const std::string& stage) {
  if (!doc.contains("curves") || !doc["curves"].contains(stage) || doc["curves"][stage]["step"].empty()) return -1;
  return doc["curves"][stage]["step"].back().get<std::int64_t>();
}

}  // namespace

TEST(job, console_shows_the_live_job_over_http_prometheus_and_hllm_top) {
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  running_job job("http");
  ASSERT_GT(job.port, 0) << "no JOB/console.json; job log:\n" << job.log();
  // The job says where its console is.
  EXPECT_NE(job.log().find("console: " + job.url()), std::string::npos) << job.log();

  // Without the token: 401 and nothing else, on every path.
  for (const char* path : {"/", "/api/status", "/metrics", "/favicon.ico"}) {
    auto r = job.get(path, false);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 401) << path;
    EXPECT_TRUE(r->body.empty()) << path;
  }
  // The page, with the token.
  auto page = job.get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("hllm console"), std::string::npos);
  EXPECT_EQ(job.get("/no/such/page")->status, 404);

  // The live job: trainer steps, a growing stage-1 curve, every actor of the placement reachable and placed.
  auto doc = job.wait_for([](const json& d) { return curve_points(d, "stage1") >= 20 && d["job"]["step"].is_number(); });
  ASSERT_TRUE(doc.is_object()) << "the console never showed 20 steps; job log:\n" << job.log();
  const std::int64_t first = last_step(doc, "stage1");
  std::vector<std::string> names;
  for (const auto& a : doc["actors"]) {
    names.push_back(a["name"]);
    EXPECT_TRUE(a["reachable"].get<bool>()) << a.dump();
    EXPECT_NE(a["where"].get<std::string>().find("rank 0"), std::string::npos) << a.dump();
  }
  for (const char* n : {"router", "coordinator", "trainer-0", "loader-0", "loader-1", "sampler-0", "cache-shard-0",
                        "cache-shard-1"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n << " missing in " << doc["actors"].dump();
  }
  EXPECT_EQ(doc["job"]["stage"], "stage1");
  EXPECT_EQ(doc["job"]["phase"], "stage1");
  EXPECT_EQ(doc["cache"].size(), 2u);
  auto later = job.wait_for([&](const json& d) {
    return last_step(d, "stage1") > first && !d["checkpoints"].empty() && d["job"]["best"].contains("stage1") &&
           d["job"]["samples_per_s"].is_number();
  });
  ASSERT_TRUE(later.is_object()) << "the curve did not grow, or no checkpoint/validation/speed; job log:\n" << job.log();
  EXPECT_GT(later["job"]["eta_s"].get<double>(), 0.0);
  EXPECT_GT(later["checkpoints"][0]["bytes"].get<double>(), 0.0);

  // /metrics passes promtool and carries the job's series.
  auto m = job.get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("hllm_actor_up{actor=\"trainer-0\",kind=\"user_trainer\""), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("rank=\"0\""), std::string::npos);
  EXPECT_NE(m->body.find("hllm_job_step{rank=\"0\",stage=\"stage1\"}"), std::string::npos) << m->body;
  if (have("promtool")) {
    fs::path f = job.dir / "metrics.txt";
    std::ofstream(f) << m->body;
    std::string out = hllm::test::run_output("promtool check metrics < '" + f.string() + "' 2>&1; echo rc=$?");
    EXPECT_NE(out.find("rc=0"), std::string::npos) << out;
  } else {
    std::printf("promtool not installed (Debian package prometheus): /metrics not linted here\n");
  }

  // hllm top: one screen with the job panel and the actors.
  std::string top = hllm::test::run_output(bin + "/hllm top --once --job '" + (job.dir / "job").string() +
                                           "' --token " + job.token + " 2>&1; echo rc=$?");
  EXPECT_NE(top.find("stage stage1"), std::string::npos) << top;
  EXPECT_NE(top.find("trainer-0"), std::string::npos) << top;
  EXPECT_NE(top.find("cache coverage"), std::string::npos) << top;
  EXPECT_NE(top.find("rc=0"), std::string::npos) << top;
  std::string refused = hllm::test::run_output(bin + "/hllm top --once --connect 127.0.0.1:" + std::to_string(job.port) +
                                               " --token wrong 2>&1; echo rc=$?");
  EXPECT_NE(refused.find("401"), std::string::npos) << refused;
  EXPECT_NE(refused.find("rc=1"), std::string::npos) << refused;

  // The console never stopped the job.
  EXPECT_TRUE(alive(job.pid)) << job.log();
}

// ---- a real browser ----

namespace {

// A port nobody listens on now (the kernel's choice for port 0, released at once).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

// A W3C WebDriver session of chromedriver driving headless chromium.
class webdriver {
 public:
  webdriver(const fs::path& dir) {
    port_ = 0;
    // A free port: bind one and let chromedriver take it.
    for (int attempt = 0; attempt < 5 && port_ == 0; ++attempt) {
      int p = free_port();
      if (p <= 0) continue;
      pid_ = spawn({"/usr/bin/chromedriver", "--port=" + std::to_string(p)}, dir / "chromedriver.log");
      for (int i = 0; i < 200 && alive(pid_); ++i) {
        httplib::Client c("127.0.0.1", p);
        c.set_connection_timeout(1, 0);
        c.set_read_timeout(5, 0);
        auto r = c.Get("/status");
        if (r && r->status == 200 && json::parse(r->body, nullptr, false).value("value", json::object()).value("ready", false)) {
          port_ = p;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (port_ == 0) stop(pid_);
    }
    if (port_ == 0) throw std::runtime_error("chromedriver did not start (see chromedriver.log)");
    json caps{{"capabilities",
               {{"alwaysMatch",
                 {{"browserName", "chrome"},
                  {"goog:chromeOptions",
                   {{"binary", "/usr/bin/chromium"},
                    {"args",
                     {"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync",
                      "--disable-dev-shm-usage", "--window-size=1400,1500",
                      "--user-data-dir=" + (dir / "chromium-profile").string()}}}}}}}}};
    auto r = call("POST", "/session", caps);
    session_ = r.value("value", json::object()).value("sessionId", "");
    if (session_.empty()) throw std::runtime_error("no WebDriver session: " + r.dump());
  }
  ~webdriver() {
    if (!session_.empty()) {
      try {
        call("DELETE", "/session/" + session_, json());
      } catch (...) {
      }
    }
    stop(pid_);
  }
  void go(const std::string& url) { call("POST", "/session/" + session_ + "/url", json{{"url", url}}); }
  json run(const std::string& script) {
    return call("POST", "/session/" + session_ + "/execute/sync", json{{"script", script}, {"args", json::array()}})
        .value("value", json());
  }
  std::string screenshot_png() {
    return base64_decode(call("GET", "/session/" + session_ + "/screenshot", json()).value("value", ""));
  }

 private:
  json call(const std::string& method, const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(120, 0);
    httplib::Result r = method == "GET"      ? c.Get(path)
                        : method == "DELETE" ? c.Delete(path)
                                             : c.Post(path, body.dump(), "application/json");
    if (!r) throw std::runtime_error("WebDriver " + method + " " + path + ": " + httplib::to_string(r.error()));
    auto j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) throw std::runtime_error("WebDriver " + path + ": not JSON: " + r->body);
    if (r->status != 200) throw std::runtime_error("WebDriver " + path + ": HTTP " + std::to_string(r->status) + " " + r->body);
    return j;
  }
  static std::string base64_decode(const std::string& in) {
    std::string out;
    int val = 0, bits = -8;
    for (unsigned char c : in) {
      int d = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+' ? 62 : c == '/' ? 63 : -1;
      if (d < 0) continue;
      val = (val << 6) + d;
      bits += 6;
      if (bits >= 0) {
        out.push_back(static_cast<char>((val >> bits) & 0xFF));
        bits -= 8;
      }
    }
    return out;
  }

  pid_t pid_ = -1;
  int port_ = 0;
  std::string session_;
};

}  // namespace

TEST(job, console_page_in_a_real_browser_fills_the_actors_table_and_grows_the_curve) {
  if (!fs::exists("/usr/bin/chromium") || !fs::exists("/usr/bin/chromedriver")) {
    GTEST_SKIP() << "chromium or chromedriver missing (Debian packages chromium, chromium-driver; launch/lib.sh "
                    "installs them)";
  }
  ASSERT_FALSE(tiny().empty()) << "HLLM_TINY_DATA is not set (ctest fixture prepared_tiny)";
  running_job job("browser");
  ASSERT_GT(job.port, 0) << "no JOB/console.json; job log:\n" << job.log();
  auto browser = std::make_unique<webdriver>(job.dir);
  // The address with ?token= once: the console answers 303 to the clean address with an HttpOnly session cookie,
  // and the page polls /api/status with that cookie; the token is in no URL the page has or builds.
  browser->go(job.url() + "?token=" + job.token);
  EXPECT_EQ(browser->run("return window.location.href;"), job.url());
  EXPECT_EQ(browser->run("return document.cookie;"), "") << "the session cookie is HttpOnly";
  // Each wait is bounded (300 s on a shared machine: liveness, no speed claim).
  auto poll_page = [&](const std::string& script, auto pred) {
    json v;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    while (std::chrono::steady_clock::now() < deadline && alive(job.pid)) {
      v = browser->run(script);
      if (pred(v)) return v;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return v;
  };
  const std::string rows = "return document.querySelectorAll('#actors tbody tr').length;";
  auto n = poll_page(rows, [](const json& v) { return v.is_number() && v.get<int>() >= 9; });
  ASSERT_TRUE(n.is_number() && n.get<int>() >= 9) << "actors table rows: " << n.dump() << "\n" << job.log();
  // The loss curve: points drawn, and its newest step moves on while the page is open.
  const std::string points = "return parseInt(document.getElementById('loss-chart').getAttribute('data-points'));";
  const std::string last_x = "return parseInt(document.getElementById('loss-chart').getAttribute('data-last-x'));";
  auto p1 = poll_page(points, [](const json& v) { return v.is_number() && v.get<int>() >= 10; });
  ASSERT_TRUE(p1.is_number() && p1.get<int>() >= 10) << "loss curve points: " << p1.dump();
  auto x1 = browser->run(last_x);
  ASSERT_TRUE(x1.is_number()) << x1.dump();
  auto x2 = poll_page(last_x, [&](const json& v) { return v.is_number() && v.get<int>() >= x1.get<int>() + 20; });
  EXPECT_GE(x2.get<int>(), x1.get<int>() + 20) << "the curve did not grow in the page";
  // What the page shows is the live job.
  EXPECT_EQ(browser->run("return document.getElementById('conn').textContent;"), "live");
  EXPECT_EQ(browser->run("return document.getElementById('api-link').getAttribute('href');"), "api/status");
  EXPECT_EQ(browser->run("return document.querySelector('#card-stage .v').textContent;"), "stage1");
  EXPECT_EQ(browser->run("return document.querySelector('#actors tr[data-actor=\"trainer-0\"] .badge').textContent;"),
            "running");
  auto ckpts = poll_page("return document.querySelectorAll('#checkpoints tbody tr').length;",
                         [](const json& v) { return v.is_number() && v.get<int>() >= 2; });
  EXPECT_GE(ckpts.get<int>(), 2);
  auto valid = poll_page("return parseInt(document.getElementById('valid-chart').getAttribute('data-points'));",
                         [](const json& v) { return v.is_number() && v.get<int>() >= 3; });
  EXPECT_GE(valid.get<int>(), 3);
  std::string png = browser->screenshot_png();
  ASSERT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  fs::path shot = job.dir / "console.png";
  if (const char* to = std::getenv("HLLM_CONSOLE_SCREENSHOT"); to != nullptr && *to != '\0') shot = to;
  std::ofstream(shot, std::ios::binary) << png;
  std::printf("screenshot: %s (%zu bytes)\n", shot.c_str(), png.size());
  browser.reset();
  EXPECT_TRUE(alive(job.pid)) << "the browser's polling never stopped the job\n" << job.log();
}
