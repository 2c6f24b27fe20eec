// make_backend (backend/factory.h): which backend each choice builds, and the errors that
// name the option at fault. Expectations are the documented choices and messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>

#include "backend/cpu/cpu_backend.h"
#include "backend/factory.h"
#ifdef VOXTRAL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif
#include "backend/profiling_backend.h"
#include "core/error.h"
#include "model/model.h"

namespace voxtral::testing {
namespace {

using ::testing::EndsWith;

// The message make_backend throws for `options`, or "" when it builds a backend.
std::string refusal(const ModelOptions& options) {
  try {
    make_backend(options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(BackendFactory, BuildsTheCpuBackendWithTheAskedThreads) {
  ModelOptions options;
  options.threads = 3;
  const auto backend = make_backend(options);
  const auto* cpu = dynamic_cast<const CpuBackend*>(backend.get());
  ASSERT_NE(cpu, nullptr) << backend->name();
  EXPECT_EQ(cpu->threads(), 3);
}

TEST(BackendFactory, GivesTheCpuOneThreadPerCoreByDefault) {
  const auto backend = make_backend(ModelOptions{});
  const auto* cpu = dynamic_cast<const CpuBackend*>(backend.get());
  ASSERT_NE(cpu, nullptr) << backend->name();
  EXPECT_EQ(cpu->threads(), std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
}

TEST(BackendFactory, PrecisionReachesTheCpuBackend) {
  ModelOptions options;
  for (const auto& [precision, want] : {std::pair{"auto", CpuPrecision::Exact}, std::pair{"exact", CpuPrecision::Exact},
                                        std::pair{"fast", CpuPrecision::Fast}}) {
    options.precision = precision;
    const auto backend = make_backend(options);
    const auto* cpu = dynamic_cast<const CpuBackend*>(backend.get());
    ASSERT_NE(cpu, nullptr) << backend->name();
    EXPECT_EQ(cpu->precision(), want) << precision;
  }
  options.precision = "turbo";
  EXPECT_EQ(refusal(options), "precision: unknown mode \"turbo\" (use exact, fast or auto)");
}

TEST(BackendFactory, Fp16AndFp8AreRefusedOnTheCpuNamingWhatItRuns) {
  ModelOptions options;
  options.backend = "cpu";
  for (const char* format : {"fp16", "fp8"}) {
    options.weights = format;
    EXPECT_EQ(refusal(options), std::string("weights: ") + format +
                                    " is a storage of the CUDA backend; the CPU backend keeps BF16 weights or quantizes "
                                    "them (use auto, bf16, q8 or q4)");
  }
}

TEST(BackendFactory, NamesAnUnknownBackend) {
  ModelOptions options;
  options.backend = "tpu";
  EXPECT_EQ(refusal(options), "backend: unknown backend \"tpu\" (use cpu, cuda or auto)");
}

#ifdef VOXTRAL_HAVE_CUDA
// Checked before any GPU is touched, so these hold on a machine without one.
TEST(BackendFactory, NamesAnUnknownCudaPrecisionOrWeightStorage) {
  ModelOptions options;
  options.backend = "cuda";
  options.precision = "turbo";
  EXPECT_EQ(refusal(options), "precision: unknown mode \"turbo\" (use exact, fast or auto)");
  options.precision = "auto";
  options.weights = "int4";
  EXPECT_EQ(refusal(options), "weights: unknown storage \"int4\" (use auto, bf16, fp16, q8, q4 or fp8)");
  options.weights = "bf16";
  options.kernel_variants = "fused=gemv,warp_size=64";
  EXPECT_EQ(refusal(options), "variant: \"warp_size=64\" is not one of fused=1|0|gemv, mma_attention=1|0, "
                              "streamed_rows=N, quantized_streamed_rows=N, attention_keys=32|64|128, "
                              "attention_threads=256|512|1024, programmatic_launch=1|0, "
                              "fp8_epilogue=auto|library|kernel, fp8_fast_accum=1|0");
  options.kernel_variants = "streamed_rows=5000";
  EXPECT_EQ(refusal(options), "variant: \"streamed_rows=5000\": want a number from 0 to 4096");
}

TEST(BackendFactory, KernelVariantsSetTheCudaChoices) {
  const CudaKernelChoices c =
      parse_cuda_variants("fused=gemv,mma_attention=0,streamed_rows=8,attention_keys=32,attention_threads=1024");
  EXPECT_TRUE(c.fused_decode);
  EXPECT_FALSE(c.fused_attention);
  EXPECT_FALSE(c.mma_attention);
  EXPECT_EQ(c.streamed_max_rows, 8);
  EXPECT_EQ(c.attention_max_keys, 32);
  EXPECT_EQ(c.decode_attention_threads, 1024);
  const CudaKernelChoices defaults = parse_cuda_variants("");
  EXPECT_TRUE(defaults.fused_decode && defaults.fused_attention && defaults.mma_attention);
  EXPECT_EQ(defaults.streamed_max_rows, 2);
  EXPECT_EQ(defaults.decode_attention_threads, 512);
  EXPECT_THROW(parse_cuda_variants("attention_threads=384"), Error);
}
#else
TEST(BackendFactory, SaysHowToGetCudaInACpuBuild) {
  ModelOptions options;
  options.backend = "cuda";
  EXPECT_EQ(refusal(options), "backend: this build has no CUDA backend: rebuild with `make cuda`");
}

TEST(BackendFactory, AutoIsTheCpuWithoutANoticeInACpuBuild) {
  ModelOptions options;
  options.backend = "auto";
  ::testing::internal::CaptureStderr();
  const auto backend = make_backend(options);
  const std::string notices = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(dynamic_cast<const CpuBackend*>(backend.get()), nullptr) << backend->name();
  EXPECT_EQ(notices, "");
}

TEST(BackendFactory, ResolvesAutoToTheCpuInACpuBuild) {
  ModelOptions options;
  options.backend = "auto";
  EXPECT_EQ(resolve_backend(options), "cpu");
}
#endif

TEST(BackendFactory, ResolvingKeepsANamedBackendAsItIs) {
  for (const std::string name : {"cpu", "cuda", "tpu"}) {
    ModelOptions options;
    options.backend = name;
    EXPECT_EQ(resolve_backend(options), name);
  }
}

TEST(BackendFactory, KernelVariantsAreForTheCudaBackendOnly) {
  ModelOptions options;
  options.kernel_variants = "fused=0";
  EXPECT_EQ(refusal(options), "variant: kernel variants are the CUDA backend's");
}

TEST(BackendFactory, WrapsTheChoiceInAProfilerOnlyForVoxtralProfileOne) {
  ModelOptions options;
  options.threads = 1;
  ASSERT_EQ(::setenv("VOXTRAL_PROFILE", "0", 1), 0);
  EXPECT_EQ(dynamic_cast<const ProfilingBackend*>(make_backend(options).get()), nullptr);
  ASSERT_EQ(::setenv("VOXTRAL_PROFILE", "1", 1), 0);
  ::testing::internal::CaptureStderr();  // the profiler prints its (empty) table when destroyed
  {
    const auto backend = make_backend(options);
    EXPECT_NE(dynamic_cast<const ProfilingBackend*>(backend.get()), nullptr);
    EXPECT_THAT(backend->name(), EndsWith(" [profiling]"));
  }
  ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(::unsetenv("VOXTRAL_PROFILE"), 0);
}

}  // namespace
}  // namespace voxtral::testing
