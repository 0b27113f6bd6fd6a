// Device placement on a machine without a GPU (issue 18): `cuda` is one clear error, `auto` is the CPU, an explicit
// `cpu` is bit-identical to the default, and a checkpoint loaded through the map-location path (an explicit device)
// resumes with identical parameters.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "device_digest.hpp"
#include "storage/error.hpp"

namespace hllm::model {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const error& e) {
    EXPECT_EQ(e.code(), errc::invalid_input) << e.what();
    return e.what();
  }
  return "";
}

TEST(device, unknown_names_are_one_clear_error) {
  for (const std::string bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", "", "cuda:00000"}) {
    const auto msg = error_of([&] { resolve_device(bad); });
    EXPECT_NE(msg.find("train.device = " + bad + ": not one of auto, cpu, cuda, cuda:N"), std::string::npos)
        << "'" << bad << "': " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(device, cpu_and_auto_without_a_gpu_are_the_cpu) {
  EXPECT_EQ(resolve_device("cpu"), "cpu");
  EXPECT_EQ(resolve_device("cpu", 3), "cpu");
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: auto picks it (tests/model gpu tests)";
  EXPECT_EQ(resolve_device("auto"), "cpu");
  EXPECT_EQ(resolve_device("auto", 5), "cpu");
}

TEST(device, cuda_without_a_gpu_is_one_clear_error_from_resolve_and_from_the_trainer) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible here";
  const std::string expected = cuda_built() ? "but no GPU is visible" : "but this build has no CUDA support";
  for (const std::string req : {"cuda", "cuda:0", "cuda:3"}) {
    const auto msg = error_of([&] { resolve_device(req, 1); });
    EXPECT_EQ(msg.rfind("train.device = " + req + " ", 0), 0u) << msg;
    EXPECT_NE(msg.find(expected), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  auto job = testing::digest_variant("text");
  const auto msg = error_of([&] { trainer t(job.model, job.train, job.data.texts.view(), {}, "cuda"); });
  EXPECT_NE(msg.find(expected), std::string::npos) << msg;
  // load() with a CUDA map location fails the same way, before reading anything.
  const auto msg2 = error_of([&] { trainer::load("/nonexistent-checkpoint", job.data.texts.view(), {}, "cuda"); });
  EXPECT_NE(msg2.find(expected), std::string::npos) << msg2;
}

TEST(device, explicit_cpu_is_bit_identical_to_the_default) {
  for (const auto& v : testing::digest_variants()) {
    const auto j = testing::digest_variant(v);
    const auto by_default = testing::run_digest(j, [](const testing::digest_job& j) {
      return trainer(j.model, j.train, j.data.texts.view());
    });
    const auto explicit_cpu = testing::run_digest(j, [](const testing::digest_job& j) {
      trainer t(j.model, j.train, j.data.texts.view(), {}, "cpu");
      EXPECT_EQ(t.device(), "cpu");
      return t;
    });
    const auto via_auto = testing::run_digest(j, [](const testing::digest_job& j) {
      return trainer(j.model, j.train, j.data.texts.view(), {}, resolve_device("auto"));
    });
    EXPECT_EQ(by_default, explicit_cpu) << v;
    if (cuda_device_count() == 0) {
      EXPECT_EQ(by_default, via_auto) << v;
    }
  }
}

TEST(device, a_checkpoint_loaded_with_an_explicit_map_location_resumes_bit_for_bit) {
  for (const std::string v : {"late_fusion", "bf16", "id"}) {
    auto job = testing::digest_variant(v);
    const auto dir =
        (std::filesystem::temp_directory_path() / ("hllm_device_ckpt_" + v + "_" + std::to_string(::getpid())))
            .string();
    trainer a(job.model, job.train, job.data.texts.view());
    for (int s = 0; s < 3; ++s) a.step(job.batch(s));
    a.save(dir);
    auto b = trainer::load(dir, job.data.texts.view(), {}, "cpu");
    EXPECT_EQ(b.device(), "cpu");
    EXPECT_EQ(b.steps_done(), 3);
    EXPECT_EQ(testing::state_digest(a), testing::state_digest(b)) << v << ": loaded state differs";
    for (int s = 3; s < 6; ++s) {
      const auto ma = a.step(job.batch(s)), mb = b.step(job.batch(s));
      EXPECT_EQ(ma.loss, mb.loss) << v << " step " << s;
    }
    EXPECT_EQ(testing::state_digest(a), testing::state_digest(b)) << v << ": resumed run differs";
    std::filesystem::remove_all(dir);
  }
}

}  // namespace
}  // namespace hllm::model
