// The second process of the two-process router tests: a router plus a batch_service, started by the test with
//   router_peer <router-name> <service-name> <bind-endpoint> <job-id> <job-epoch> [name=endpoint ...]
// It prints "endpoint <bound endpoint>" on stdout, serves until its stdin closes, then exits 0.
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "actors/router.hpp"
#include "tests/actors/test_actors.hpp"

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s <router-name> <service-name> <bind> <job-id> <epoch> [name=endpoint ...]\n",
                 argv[0]);
    return 2;
  }
  caf::actor_system_config cfg;
  hllm::configure_actor_system(cfg);
  caf::actor_system sys{cfg};
  hllm::router_config rc;
  rc.name = argv[1];
  rc.bind = {argv[3]};
  rc.job_id = std::stoull(argv[4]);
  rc.job_epoch = static_cast<std::uint32_t>(std::stoul(argv[5]));
  auto router = hllm::spawn_router(sys, rc);
  auto service = sys.spawn(hllm::testing::batch_service, std::string(argv[2]));
  caf::scoped_actor self{sys};
  self->request(router, caf::infinite, hllm::atom::enroll_v, std::string(argv[2]), service).receive(
      [](bool) {}, [](caf::error&) {});
  for (int i = 6; i < argc; ++i) {
    std::string arg = argv[i];
    auto eq = arg.find('=');
    self->request(router, caf::infinite, hllm::atom::route_v, arg.substr(0, eq), arg.substr(eq + 1),
                  std::string())
        .receive([](bool) {}, [](caf::error&) {});
  }
  std::vector<std::string> endpoints;
  self->request(router, caf::infinite, hllm::atom::endpoints_v)
      .receive([&](std::vector<std::string>& e) { endpoints = std::move(e); }, [](caf::error&) {});
  std::cout << "endpoint " << (endpoints.empty() ? "" : endpoints.front()) << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  self->send_exit(router, caf::exit_reason::user_shutdown);
  self->send_exit(service, caf::exit_reason::user_shutdown);
  return 0;
}
