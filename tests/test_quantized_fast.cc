// Q8/Q4 products in the CPU's fast precision (issue 17): activations quantized to int8 per
// block of 32, integer products. Each result is compared with the formula of simd_quant.h
// written out here in scalar code (int8-rounded activations times the dequantized weights,
// summed in double), and with the exact product within the rounding of the activations; a
// row's result does not depend on the rows beside it. CTest runs these with every kernel set.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <random>
#include <string>

#include "backend/cpu/simd.h"
#include "backend/cpu/simd_quant.h"
#include "core/bf16.h"
#include "quantized_matrix.h"

namespace voxtral {
namespace {

using testing::make_matrix;
using testing::product;

// One output of the fast product by the formula, and bounds to judge a result by.
struct Expected {
  double value = 0;      // sum over blocks of (s a_i) w_i, in double
  double magnitude = 0;  // sum of |s a_i w_i|: the scale of float rounding in the kernel
  double exact = 0;      // sum of x_i w_i
  double rounding = 0;   // sum of |w_i| times the most an activation moves: s / 2, or m
};

Expected expected(const float* w, const float* x, std::int64_t n) {
  Expected e;
  for (std::int64_t b = 0; b < n; b += 32) {
    float m = 0;
    for (int i = 0; i < 32; ++i) m = std::max(m, std::fabs(x[b + i]));
    const float inv = m >= 0x1p-120f ? 127.0f / m : 0.0f;
    const float s = m / 127.0f;
    for (int i = 0; i < 32; ++i) {
      const double a = inv != 0.0f ? std::nearbyint(x[b + i] * inv) : 0.0;
      const double term = static_cast<double>(w[b + i]) * s * a;
      e.value += term;
      e.magnitude += std::fabs(term);
      e.exact += static_cast<double>(w[b + i]) * x[b + i];
      e.rounding += std::fabs(w[b + i]) * (inv != 0.0f ? s / 2.0 : m);
    }
  }
  return e;
}

// Activations whose blocks differ in scale by up to 10^4, with a block of zeros, one of
// values too small to quantize, and one dominated by a single large value.
std::vector<float> activations(std::int64_t rows, std::int64_t cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> decade(-3.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t b = 0; b < cols / 32; ++b) {
      const float scale = std::pow(10.0f, decade(rng));
      for (int i = 0; i < 32; ++i) {
        float& v = x[static_cast<std::size_t>(r * cols + b * 32 + i)];
        v = normal(rng) * scale;
        if (b == 1) v = 0.0f;
        if (b == 2) v *= 1e-38f;
        if (b == 3 && i == 5) v = 300.0f;
      }
    }
  }
  return x;
}

// Q8 codes may be -128 in a file (the quantizer never writes it): set a few, and their floats.
void add_minus_128(testing::QuantizedMatrix& m, std::int64_t cols) {
  for (std::size_t at : {std::size_t{0}, std::size_t{33}, static_cast<std::size_t>(cols + 7)}) {
    m.codes[at] = 0x80;
    const std::size_t block = at / 32;
    m.dequantized[at] = f16_to_float(m.scales[block]) * -128.0f;
  }
}

TEST(QuantizedLinear, FastPrecisionIsTheProductWithInt8RoundedActivations) {
  CpuBackend backend(2, CpuPrecision::Fast);
  const std::int64_t outputs = 37;
  for (const auto format : {WeightFormat::Q8, WeightFormat::Q4}) {
    // 3 blocks (one part group), 11 (two groups and a part), 16 (whole groups of 4).
    for (const std::int64_t cols : {96, 352, 512}) {
      SCOPED_TRACE(std::string(weight_format_name(format)) + ", " + std::to_string(cols) + " inputs");
      auto m = make_matrix(format, outputs, cols, 11);
      if (format == WeightFormat::Q8) add_minus_128(m, cols);
      const WeightPart q{&m.codes_view, &m.scales_view};
      const Weight wq = backend.load_weight(std::span<const WeightPart>(&q, 1), WeightUse::Streamed);
      const auto x = activations(20, cols, 7);
      const auto alone = product(backend, wq, x, 1, cols, outputs);
      for (const std::int64_t rows : {1, 3, 8, 20}) {
        const auto got = product(backend, wq, x, rows, cols, outputs);
        bool differs_from_exact = false;
        for (std::int64_t r = 0; r < rows; ++r) {
          for (std::int64_t j = 0; j < outputs; ++j) {
            const Expected e = expected(m.dequantized.data() + j * cols, x.data() + r * cols, cols);
            const double v = got[static_cast<std::size_t>(r * outputs + j)];
            ASSERT_NEAR(v, e.value, 1e-5 * e.magnitude + 1e-30) << "row " << r << ", output " << j;
            ASSERT_LE(std::fabs(v - e.exact), e.rounding * (1 + 1e-4) + 1e-5 * e.magnitude) << r << ", " << j;
            differs_from_exact = differs_from_exact || std::fabs(v - e.exact) > 1e-4 * std::fabs(e.exact);
          }
        }
        EXPECT_TRUE(differs_from_exact) << "the activations were not rounded";
        for (std::int64_t j = 0; j < outputs; ++j) {
          ASSERT_EQ(got[static_cast<std::size_t>(j)], alone[static_cast<std::size_t>(j)]) << rows << " rows, output " << j;
        }
      }
    }
  }
}

TEST(QuantizedLinear, FastPrecisionKeepsANonFiniteActivationVisibleInItsRowOnly) {
  CpuBackend backend(1, CpuPrecision::Fast);
  const std::int64_t cols = 160, outputs = 9;
  for (const auto format : {WeightFormat::Q8, WeightFormat::Q4}) {
    SCOPED_TRACE(std::string(weight_format_name(format)));
    const auto m = make_matrix(format, outputs, cols, 4);
    const WeightPart q{&m.codes_view, &m.scales_view};
    const Weight wq = backend.load_weight(std::span<const WeightPart>(&q, 1), WeightUse::Streamed);
    auto x = activations(3, cols, 2);
    x[static_cast<std::size_t>(cols + 70)] = std::numeric_limits<float>::quiet_NaN();
    x[static_cast<std::size_t>(2 * cols + 140)] = -std::numeric_limits<float>::infinity();
    const auto got = product(backend, wq, x, 3, cols, outputs);
    for (std::int64_t j = 0; j < outputs; ++j) {
      EXPECT_TRUE(std::isfinite(got[static_cast<std::size_t>(j)])) << j;
      EXPECT_FALSE(std::isfinite(got[static_cast<std::size_t>(outputs + j)])) << "NaN row, output " << j;
      EXPECT_FALSE(std::isfinite(got[static_cast<std::size_t>(2 * outputs + j)])) << "infinite row, output " << j;
    }
  }
}

// The activation bytes and scales every kernel set writes (simd_quant_int8.h's layout),
// checked position by position against the formula: a + 128 per input, in groups of 128
// inputs (the first 16 inputs of each of 4 blocks, then their last 16), and s repeated 4
// times per block; the last group padded with a = 0, s = 0.
TEST(QuantizedLinear, ActivationsAreQuantizedToTheDocumentedBytes) {
  const auto& k = simd::quant_kernels();
  const std::int64_t cols = 352;  // 11 blocks: two groups of 4 and one of 3
  const auto x = activations(1, cols, 5);
  ASSERT_EQ(simd::int8_row_values(cols), 3 * 128);
  ASSERT_EQ(simd::int8_row_scales(cols), 3 * 4 * 4);
  std::vector<std::uint8_t> values(3 * 128, 0xee);
  std::vector<float> scales(3 * 4 * 4, -1.0f);
  k.quantize_activations(x.data(), cols, values.data(), scales.data());
  for (std::int64_t b = 0; b < 12; ++b) {
    float m = 0;
    for (int i = 0; i < 32 && b < 11; ++i) m = std::max(m, std::fabs(x[static_cast<std::size_t>(b * 32 + i)]));
    const float inv = m >= 0x1p-120f ? 127.0f / m : 0.0f;
    for (int l = 0; l < 4; ++l) ASSERT_EQ(scales[static_cast<std::size_t>(b * 4 + l)], m / 127.0f) << b;
    for (int i = 0; i < 32; ++i) {
      const std::int64_t in_group = i < 16 ? (b % 4) * 16 + i : 64 + (b % 4) * 16 + i - 16;
      const float v = b < 11 ? x[static_cast<std::size_t>(b * 32 + i)] : 0.0f;
      const int a = inv != 0.0f ? static_cast<int>(std::nearbyint(v * inv)) : 0;
      ASSERT_EQ(values[static_cast<std::size_t>((b / 4) * 128 + in_group)], a + 128) << "block " << b << ", input " << i;
    }
  }
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST(QuantizedLinear, FastProductsUseTheIntegerInstructionsOfTheKernelSet) {
  const std::string level = simd::kernels().name, quant = simd::quant_kernels().name;
  std::cout << "[ kernels  ] " << level << ", quantized: " << quant << "\n";
  if (!starts_with(level, "avx512")) {
    EXPECT_EQ(quant, level);
    return;
  }
  const char* forced = std::getenv("VOXTRAL_CPU_KERNELS");
  const std::string asked = forced != nullptr ? forced : "";
  __builtin_cpu_init();
  const bool vnni = (asked.empty() || asked == "amx" || asked == "avx512bf16") && __builtin_cpu_supports("avx512vnni");
  EXPECT_EQ(quant, vnni ? "avx512vnni" : "avx512");
}

}  // namespace
}  // namespace voxtral
