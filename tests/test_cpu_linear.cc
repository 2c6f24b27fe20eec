// The CPU backend's streamed product with BF16 weights (the decode step), in both
// precisions: a row gives the same bits alone and among eight (streams must not depend on
// their neighbours), and every output is near a double-precision reference — in fast mode
// one computed from the activations rounded to BF16.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"
#include "core/bf16.h"
#include "core/safetensors.h"

namespace voxtral {
namespace {

// 37 outputs: blocks of four weight rows with a remainder, split over the threads.
constexpr std::int64_t kOutputs = 37;
constexpr std::int64_t kInputs = 200;
constexpr std::int64_t kRows = 8;

struct Case {
  std::vector<std::uint16_t> weights;  // [kOutputs, kInputs] BF16
  std::vector<float> x;                // [kRows, kInputs]
};

Case random_case() {
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Case c;
  c.weights.resize(static_cast<std::size_t>(kOutputs * kInputs));
  for (auto& v : c.weights) v = float_to_bf16(normal(rng));
  c.x.resize(static_cast<std::size_t>(kRows * kInputs));
  for (auto& v : c.x) v = normal(rng);
  return c;
}

// y = x W^T for the rows [first, first + count) of x.
std::vector<float> product(CpuBackend& backend, const Weight& w, std::vector<float>& x, std::int64_t first,
                           std::int64_t count) {
  std::vector<float> y(static_cast<std::size_t>(count * kOutputs));
  const Tensor xt{x.data() + first * kInputs, ElemType::F32, count, kInputs, kInputs};
  const Tensor yt{y.data(), ElemType::F32, count, kOutputs, kOutputs};
  backend.linear(xt, w, Weight{}, yt, Epilogue::Store);
  return y;
}

void check(CpuPrecision precision) {
  Case c = random_case();
  CpuBackend backend(2, precision);
  const TensorView view{"w", DType::BF16, {kOutputs, kInputs}, reinterpret_cast<const std::byte*>(c.weights.data()),
                        c.weights.size() * sizeof(std::uint16_t)};
  const TensorView* parts[] = {&view};
  const Weight w = backend.load_weight(parts, WeightUse::Streamed);
  const std::vector<float> all = product(backend, w, c.x, 0, kRows);
  const bool fast = precision == CpuPrecision::Fast;
  for (std::int64_t r = 0; r < kRows; ++r) {
    const std::vector<float> alone = product(backend, w, c.x, r, 1);
    for (std::int64_t j = 0; j < kOutputs; ++j) {
      const float in_batch = all[static_cast<std::size_t>(r * kOutputs + j)];
      ASSERT_EQ(alone[static_cast<std::size_t>(j)], in_batch)
          << simd::kernels().name << (fast ? " fast" : " exact") << " row " << r << " output " << j;
      double want = 0, scale = 0;
      for (std::int64_t i = 0; i < kInputs; ++i) {
        const float xi = c.x[static_cast<std::size_t>(r * kInputs + i)];
        const double term = static_cast<double>(bf16_to_float(c.weights[static_cast<std::size_t>(j * kInputs + i)])) *
                            (fast ? bf16_to_float(float_to_bf16(xi)) : xi);
        want += term;
        scale += std::fabs(term);
      }
      EXPECT_NEAR(in_batch, want, 1e-5 * scale + 1e-6) << simd::kernels().name << " row " << r << " output " << j;
    }
  }
}

TEST(CpuLinear, ExactRowIsTheSameAloneAndAmongEight) { check(CpuPrecision::Exact); }

TEST(CpuLinear, FastRowIsTheSameAloneAndAmongEight) { check(CpuPrecision::Fast); }

}  // namespace
}  // namespace voxtral
