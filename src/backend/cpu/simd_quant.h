// Dot products of one Q8 or Q4 weight row (core/quant.h: codes and F16 scales as stored)
// with several F32 activation rows, at the level simd.h's kernels chose (AVX-512, AVX2+FMA or
// portable; VOXTRAL_CPU_KERNELS forces a narrower set for both).
//
// Each weight is turned into the exact float its code stands for (f16(d) * q, exact in
// float), so a result is the dot product with the dequantized row up to float rounding, and
// a row's sum is computed in the same order whatever `rows` is (batch invariance).
#pragma once

#include <cstdint>

namespace voxtral::simd {

inline constexpr int kQuantRows = 8;  // activation rows per call, at most

struct QuantKernels {
  // out[r] = sum_i w[i] * x[r][i] for r < rows <= kQuantRows; n a multiple of 32.
  void (*dot_rows_q8)(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x, int rows,
                      std::int64_t n, float* out);
  void (*dot_rows_q4)(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x, int rows,
                      std::int64_t n, float* out);
  const char* name;
};

const QuantKernels& quant_kernels();

}  // namespace voxtral::simd
