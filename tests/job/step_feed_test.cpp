#include <gtest/gtest.h>

#include <caf/all.hpp>
#include <cstdlib>
#include <thread>

#include "actors/addressable.hpp"
#include "actors/data_loader.hpp"
#include "actors/negative_sampler.hpp"
#include "actors/step_feed.hpp"
#include "job_test_util.hpp"

using namespace hllm;

namespace {

std::string tiny() { return test::tiny_dataset(); }

// A real loader that answers late: replies of a fast loader overtake its replies.
struct slow_loader {
  data_loader inner{{"loader-slow", tiny(), 2020}};
  msg::body handle(const msg::body& b) {
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    return inner.handle(b);
  }
};

using actor_env = test::local_actor_env;

step_feed_options feed_opts(std::vector<std::string> loaders) {
  step_feed_options o;
  o.loaders = std::move(loaders);
  o.samplers = {"sampler-0"};
  o.batch_size = 8;
  o.max_length = 5;
  o.negatives = 32;
  o.window = 3;
  o.timeout = std::chrono::milliseconds(5000);
  return o;
}

}  // namespace

TEST(step_feed, serves_steps_in_order_whatever_order_replies_arrive_in) {
  actor_env env;
  spawn_data_loader(*env.sys, env.router, {"loader-0", tiny(), 2020});
  spawn_addressable(*env.sys, env.router, "loader-slow", std::make_unique<slow_loader>());
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny(), 2020});
  // Step 0 goes to the slow loader, step 1 to the fast one, step 2 to a loader that does not exist (retried).
  step_feed feed(*env.sys, env.router, feed_opts({"loader-slow", "loader-0", "loader-missing"}));
  data_loader reference({"ref", tiny(), 2020});
  negative_sampler ref_sampler({"ref-s", tiny(), 2020});
  feed.start_epoch(0, 0, 6);
  for (uint64_t s = 0; s < 6; ++s) {
    auto b = feed.next();
    msg::batch_request r;
    r.at = {1, 0, s, 0};
    r.world_size = 1;
    r.batch_size = 8;
    r.max_length = 5;
    EXPECT_EQ(b.items, std::get<msg::batch>(reference.batch_of(r)).item_ids) << "step " << s;
    msg::negatives_request n;
    n.at = r.at;
    n.count = 32;
    EXPECT_EQ(b.negatives, std::get<msg::negatives>(ref_sampler.negatives_of(n)).item_ids) << "step " << s;
  }
  EXPECT_GE(feed.counters().retries, 2u);  // steps 2 and 5 went to the missing loader first
  EXPECT_EQ(feed.counters().steps, 6u);
}

TEST(step_feed, gives_up_with_a_clear_error_when_no_loader_answers) {
  actor_env env;
  spawn_negative_sampler(*env.sys, env.router, {"sampler-0", tiny(), 2020});
  auto o = feed_opts({"loader-gone"});
  o.attempts = 2;
  step_feed feed(*env.sys, env.router, o);
  feed.start_epoch(0, 0, 2);
  try {
    feed.next();
    FAIL() << "no error";
  } catch (const hllm::error& e) {
    EXPECT_NE(std::string(e.what()).find("no loader answered after 2 attempts"), std::string::npos) << e.what();
  }
}
