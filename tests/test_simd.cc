// The CPU's vector kernels against double-precision references, and every register blocking
// of the decode-step kernels against the one-pair call bit for bit (a stream's decode step
// must not depend on how many streams share it). CTest runs this suite once per kernel set
// (VOXTRAL_CPU_KERNELS); Simd.RunsTheKernelSetAskedFor says which one ran.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/simd.h"
#include "backend/cpu/simd_gemm.h"
#include "backend/cpu/simd_sets.h"
#include "core/bf16.h"

namespace voxtral {
namespace {

bool machine_has(const std::string& set) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl");
  if (set == "amx") return avx512 && __builtin_cpu_supports("avx512bf16") && simd::amx_bf16_usable();
  if (set == "avx512bf16") return avx512 && __builtin_cpu_supports("avx512bf16");
  if (set == "avx512") return avx512;
  if (set == "avx2") return avx2;
  return set == "generic";
}

TEST(Simd, RunsTheKernelSetAskedFor) {
  const std::string name = simd::kernels().name;
  const std::string tiles = simd::gemm_kernels().name;
  std::cout << "[ kernels  ] " << name << ", many-row tiles " << tiles << "\n";
  const char* forced = std::getenv("VOXTRAL_CPU_KERNELS");
  const std::string asked = forced != nullptr ? forced : "";
  if (asked.empty()) {
    // Unforced: the widest set this machine has (AMX: its tiles beside the avx512bf16 vectors).
    EXPECT_EQ(tiles == std::string("amx"), machine_has("amx"));
    for (const std::string set : {"avx512bf16", "avx512", "avx2", "generic"}) {
      if (machine_has(set)) {
        EXPECT_EQ(name, set);
        break;
      }
    }
    return;
  }
  // CTest counts this run as skipped (not passed) when the machine lacks the set.
  if (!machine_has(asked)) GTEST_SKIP() << "this CPU has no " << asked << " kernels; ran " << name;
  if (asked == "amx") {
    EXPECT_EQ(name, "avx512bf16");
    EXPECT_EQ(tiles, "amx");
    return;
  }
  EXPECT_EQ(name, asked);
  EXPECT_NE(tiles, "amx");
}

struct Problem {
  std::vector<std::vector<std::uint16_t>> w;  // BF16 weight rows
  std::vector<std::vector<float>> x;          // F32 activation rows
  std::vector<std::vector<std::uint16_t>> xb; // the activations rounded to BF16
};

Problem random_problem(std::int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Problem p;
  p.w.assign(simd::kMaxWeightRows, std::vector<std::uint16_t>(static_cast<std::size_t>(n)));
  p.x.assign(simd::kMaxRows, std::vector<float>(static_cast<std::size_t>(n)));
  p.xb.assign(simd::kMaxRows, std::vector<std::uint16_t>(static_cast<std::size_t>(n)));
  for (auto& row : p.w) {
    for (auto& v : row) v = float_to_bf16(normal(rng));
  }
  for (std::size_t r = 0; r < p.x.size(); ++r) {
    for (std::size_t i = 0; i < p.x[r].size(); ++i) {
      p.x[r][i] = normal(rng);
      p.xb[r][i] = float_to_bf16(p.x[r][i]);
    }
  }
  return p;
}

// sum_i w[i] * x[i] in double, and sum_i |w[i] * x[i]| (the scale of the rounding error).
template <typename X>
std::pair<double, double> reference(const std::vector<std::uint16_t>& w, const std::vector<X>& x) {
  double sum = 0, scale = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    double xi;
    if constexpr (std::is_same_v<X, float>) {
      xi = x[i];
    } else {
      xi = bf16_to_float(x[i]);
    }
    const double term = static_cast<double>(bf16_to_float(w[i])) * xi;
    sum += term;
    scale += std::fabs(term);
  }
  return {sum, scale};
}

// Every (wrows, rows) call against the one-pair call bit for bit, and against the double
// reference: F32 sums of n terms, relative to the sum of |terms|, within 1e-5.
template <typename X, typename Call>
void check_blocks(const std::vector<std::vector<X>>& xs, const Problem& p, std::int64_t n, Call call) {
  const char* name = simd::kernels().name;
  std::vector<const std::uint16_t*> w;
  for (const auto& row : p.w) w.push_back(row.data());
  std::vector<const X*> x;
  for (const auto& row : xs) x.push_back(row.data());
  float alone[simd::kMaxWeightRows][simd::kMaxRows];
  for (int v = 0; v < simd::kMaxWeightRows; ++v) {
    for (int r = 0; r < simd::kMaxRows; ++r) {
      call(w.data() + v, 1, x.data() + r, 1, n, &alone[v][r]);
      const auto [want, scale] = reference(p.w[static_cast<std::size_t>(v)], xs[static_cast<std::size_t>(r)]);
      EXPECT_NEAR(alone[v][r], want, 1e-5 * scale + 1e-6) << name << " n " << n;
    }
  }
  for (int wrows = 1; wrows <= simd::kMaxWeightRows; ++wrows) {
    for (int rows = 1; rows <= simd::kMaxRows; ++rows) {
      float out[simd::kMaxWeightRows * simd::kMaxRows];
      call(w.data(), wrows, x.data(), rows, n, out);
      for (int v = 0; v < wrows; ++v) {
        for (int r = 0; r < rows; ++r) {
          ASSERT_EQ(out[v * rows + r], alone[v][r])
              << name << " n " << n << " weight rows " << wrows << " rows " << rows << " pair " << v << "," << r;
        }
      }
    }
  }
}

const std::int64_t kLengths[] = {1, 7, 16, 31, 33, 100, 1029, 3077};

TEST(Simd, ExactProductIsTheSameInEveryBlockAndNearTheReference) {
  std::mt19937 rng(7);
  for (const std::int64_t n : kLengths) {
    const Problem p = random_problem(n, rng);
    check_blocks(p.x, p, n, simd::kernels().dot_bf16);
  }
}

// Fast mode: the reference takes the activations rounded to BF16.
TEST(Simd, Bf16PairsAreTheSameInEveryBlockAndNearTheReference) {
  std::mt19937 rng(11);
  for (const std::int64_t n : kLengths) {
    const Problem p = random_problem(n, rng);
    check_blocks(p.xb, p, n, simd::kernels().dot_bf16_pairs);
  }
}

// Rounding the activations must matter: 1 + 2^-10 is 1 in BF16, so 1024 products of
// 1 x (1 + 2^-10) sum to 1024 in fast mode and to 1025 in exact mode.
TEST(Simd, FastModeMultipliesTheBf16RoundedActivations) {
  const auto& k = simd::kernels();
  const std::int64_t n = 1024;
  const std::vector<std::uint16_t> ones(static_cast<std::size_t>(n), float_to_bf16(1.0f));
  std::vector<float> x(static_cast<std::size_t>(n), 1.0f + 0x1p-10f);
  std::vector<std::uint16_t> xb(x.size());
  k.round_bf16(x.data(), xb.data(), n);
  const std::uint16_t* w = ones.data();
  const float* xf = x.data();
  const std::uint16_t* xr = xb.data();
  float exact = 0, fast = 0;
  k.dot_bf16(&w, 1, &xf, 1, n, &exact);
  k.dot_bf16_pairs(&w, 1, &xr, 1, n, &fast);
  EXPECT_EQ(exact, 1025.0f) << k.name;
  EXPECT_EQ(fast, 1024.0f) << k.name;
}

// round_bf16 against hand-worked roundings, at every position of the vector and scalar code.
TEST(Simd, RoundsToBf16NearestEven) {
  struct Case {
    float in;
    std::uint16_t out;
  };
  const Case cases[] = {
      {1.0f, 0x3f80},
      {1.0f + 0x1p-8f, 0x3f80},         // halfway, to even (down)
      {1.0f + 3 * 0x1p-8f, 0x3f82},     // halfway, to even (up)
      {1.0f + 0x1p-8f + 0x1p-20f, 0x3f81},  // just above halfway
      {-2.5f, 0xc020},
      {std::numeric_limits<float>::max(), 0x7f80},  // rounds up to infinity
      {std::numeric_limits<float>::infinity(), 0x7f80},
      {-std::numeric_limits<float>::infinity(), 0xff80},
      {0x1p-130f, 0x0008},  // a denormal (2^19 x 2^-149): kept, not flushed
      {-0.0f, 0x8000},
  };
  const std::size_t count = 37;
  std::vector<float> in(count);
  for (std::size_t i = 0; i < count; ++i) in[i] = cases[i % std::size(cases)].in;
  in[count - 2] = std::numeric_limits<float>::quiet_NaN();
  in[5] = std::bit_cast<float>(0x7f800001u);  // a signalling NaN must not round to infinity
  std::vector<std::uint16_t> out(count);
  simd::kernels().round_bf16(in.data(), out.data(), static_cast<std::int64_t>(count));
  for (std::size_t i = 0; i < count; ++i) {
    if (std::isnan(in[i])) {
      EXPECT_TRUE((out[i] & 0x7f80) == 0x7f80 && (out[i] & 0x7f) != 0) << "NaN at " << i << ": " << out[i];
    } else {
      EXPECT_EQ(out[i], cases[i % std::size(cases)].out) << "value " << in[i] << " at " << i;
    }
  }
}

}  // namespace
}  // namespace voxtral
