// The GPU path on a CUDA device (issue 18; ctest label "gpu"). Each case skips, saying why, on a machine without a
// visible GPU (every CPU build, and this project's CI); it never passes without running.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>

#include "device_digest.hpp"
#include "storage/error.hpp"

namespace hllm::model {
namespace {

#define HLLM_NEED_GPU()                                                                                        \
  do {                                                                                                         \
    if (cuda_device_count() == 0)                                                                              \
      GTEST_SKIP() << (cuda_built() ? "no GPU is visible" : "this libtorch has no CUDA (the CPU build)");       \
  } while (0)

trainer on(const testing::digest_job& j, const std::string& device) {
  return trainer(j.model, j.train, j.data.texts.view(), {}, device);
}

TEST(gpu, resolve_picks_the_local_rank_gpu) {
  HLLM_NEED_GPU();
  EXPECT_EQ(resolve_device("cuda", 0), "cuda:0");
  EXPECT_EQ(resolve_device("auto", 0), "cuda:0");
  EXPECT_THROW(resolve_device("cuda", cuda_device_count()), hllm::error);
}

TEST(gpu, training_steps_on_the_gpu_follow_the_cpu_run) {
  HLLM_NEED_GPU();
  for (const auto& v : testing::digest_variants()) {
    const auto j = testing::digest_variant(v);
    trainer cpu = on(j, "cpu"), gpu = on(j, "cuda:0");
    EXPECT_EQ(testing::state_digest(cpu), testing::state_digest(gpu)) << v << ": initial parameters differ";
    for (int s = 0; s < 3; ++s) {
      const auto mc = cpu.step(j.batch(s)), mg = gpu.step(j.batch(s));
      // bf16 autocast on the GPU: the same objective within bf16 rounding.
      EXPECT_NEAR(mg.loss, mc.loss, 0.05 * std::abs(mc.loss) + 0.05) << v << " step " << s;
      EXPECT_TRUE(std::isfinite(mg.grad_norm)) << v;
    }
    const auto e = make_eval_set(j.data.view(), split::valid, 6);
    const auto ranks = gpu.ranks(e);
    ASSERT_EQ(static_cast<int64_t>(ranks.size()), e.size());
    for (auto r : ranks) ASSERT_GE(r, 0);
  }
}

TEST(gpu, a_gpu_checkpoint_resumes_on_the_cpu_and_back_with_identical_parameters) {
  HLLM_NEED_GPU();
  auto j = testing::digest_variant("late_fusion");
  const auto dir = (std::filesystem::temp_directory_path() / ("hllm_gpu_ckpt_" + std::to_string(::getpid()))).string();
  trainer g = on(j, "cuda:0");
  for (int s = 0; s < 3; ++s) g.step(j.batch(s));
  g.save(dir);
  auto c = trainer::load(dir, j.data.texts.view(), {}, "cpu");
  EXPECT_EQ(testing::state_digest(g), testing::state_digest(c));
  c.step(j.batch(3));
  const auto dir2 = dir + "_cpu";
  c.save(dir2);
  auto g2 = trainer::load(dir2, j.data.texts.view(), {}, "cuda:0");
  EXPECT_EQ(g2.device(), "cuda:0");
  EXPECT_EQ(testing::state_digest(c), testing::state_digest(g2));
  EXPECT_TRUE(std::isfinite(g2.step(j.batch(4)).loss));
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(dir2);
}

}  // namespace
}  // namespace hllm::model
