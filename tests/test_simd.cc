// The CPU's vector kernels against a double-precision reference, and the two-weight-row
// kernel against the one-row kernel bit for bit (a stream's decode step must not depend on
// how many streams share it). CTest runs this suite once per kernel set the machine has.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/simd.h"
#include "core/bf16.h"

namespace voxtral {
namespace {

TEST(Simd, TwoWeightRowsGiveExactlyWhatOneRowGives) {
  const auto& k = simd::kernels();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const std::int64_t n : {1, 7, 16, 31, 33, 100, 1029, 3077}) {
    std::vector<std::uint16_t> w0(static_cast<std::size_t>(n)), w1(static_cast<std::size_t>(n));
    for (auto& v : w0) v = float_to_bf16(normal(rng));
    for (auto& v : w1) v = float_to_bf16(normal(rng));
    std::vector<std::vector<float>> xs(4, std::vector<float>(static_cast<std::size_t>(n)));
    for (auto& x : xs) {
      for (auto& v : x) v = normal(rng);
    }
    const float* rows[4] = {xs[0].data(), xs[1].data(), xs[2].data(), xs[3].data()};
    for (int count = 1; count <= 4; ++count) {
      float one0[4], one1[4], two0[4], two1[4];
      k.dot_rows_bf16(w0.data(), rows, count, n, one0);
      k.dot_rows_bf16(w1.data(), rows, count, n, one1);
      k.dot2_rows_bf16(w0.data(), w1.data(), rows, count, n, two0, two1);
      for (int r = 0; r < count; ++r) {
        EXPECT_EQ(two0[r], one0[r]) << k.name << " n " << n << " rows " << count << " row " << r;
        EXPECT_EQ(two1[r], one1[r]) << k.name << " n " << n << " rows " << count << " row " << r;
        double want = 0, scale = 0;
        for (std::int64_t i = 0; i < n; ++i) {
          const double term = static_cast<double>(bf16_to_float(w0[static_cast<std::size_t>(i)])) * rows[r][i];
          want += term;
          scale += std::fabs(term);
        }
        EXPECT_NEAR(one0[r], want, 1e-5 * scale + 1e-6) << k.name << " n " << n;
      }
    }
  }
}

}  // namespace
}  // namespace voxtral
