// Dot products of one Q8 or Q4 weight row (core/quant.h: codes and F16 scales as stored)
// with several activation rows, at the level simd.h's kernels chose (VOXTRAL_CPU_KERNELS
// forces a narrower set for both). Two precisions:
//
// Exact: each weight is turned into the exact float its code stands for (f16(d) * q, exact
// in float) and multiplied with F32 activations, so a result is the dot product with the
// dequantized row up to float rounding.
//
// Fast (integer products): each activation row is first quantized to int8 per block of 32
// inputs, the weights' blocks:
//   m = max_i |x_i|,  s = m / 127,  a_i = round(x_i * (127 / m)), ties to even, in [-127, 127]
// (all in float, each operation rounded once; a_i = 0 where m < 2^-120, below which the
// reciprocal would overflow, or m is not finite). A weight block then contributes
//   f16(d) * s * sum_i q_i a_i        (Q4: q_i = c_i - 8)
// with the integer sum exact, so a result is the product of the dequantized weights with the
// int8-rounded activations up to float rounding; each activation is off by at most s / 2.
// A non-finite activation makes its block's s, and so the row's result, non-finite.
// The integer sums use the unsigned x signed byte products of AVX512-VNNI (vpdpbusd) or
// AVX2/AVX-512BW (vpmaddubsw): simd_quant_int8.h gives the formulas.
//
// In both, a row's sum is computed in the same order whatever `rows` is (batch invariance).
#pragma once

#include <cstdint>

#include "core/quant.h"

namespace voxtral::simd {

inline constexpr int kQuantRows = 8;  // activation rows per call, at most

// One activation row quantized for the fast products (the layout: quantize_activations).
struct Int8Row {
  const std::uint8_t* values;
  const float* scales;
};

// Sizes of an Int8Row's two arrays for n inputs (n a multiple of 32): values in bytes,
// scales in floats. Both are whole multiples of 64 bytes.
std::int64_t int8_row_values(std::int64_t n);
std::int64_t int8_row_scales(std::int64_t n);

struct QuantKernels {
  // Exact: out[r] = sum_i w[i] * x[r][i] for r < rows <= kQuantRows; n a multiple of 32.
  void (*dot_rows_q8)(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x, int rows,
                      std::int64_t n, float* out);
  void (*dot_rows_q4)(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x, int rows,
                      std::int64_t n, float* out);
  // Fast: x (n floats) quantized as above into values and scales (int8_row_* sizes; the
  // layout serves Q8 and Q4 weights alike). Every kernel set writes the same bytes.
  void (*quantize_activations)(const float* x, std::int64_t n, std::uint8_t* values, float* scales);
  // Fast: out[r] = the integer-product sum above for r < rows <= kQuantRows.
  void (*dot_rows_q8_int8)(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, int rows,
                           std::int64_t n, float* out);
  void (*dot_rows_q4_int8)(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, int rows,
                           std::int64_t n, float* out);
  // "avx512vnni" (AVX512-VNNI, with the avx512bf16 kernels), "avx512", "avx2" or "generic"
  const char* name;
};

const QuantKernels& quant_kernels();

}  // namespace voxtral::simd
