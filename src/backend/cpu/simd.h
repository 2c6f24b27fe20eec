// Small vector kernels with run-time dispatch: AVX-512 (with or without AVX512_BF16),
// AVX2+FMA, or portable C++. The CPU backend is built for the x86-64 baseline and picks the
// widest kernels the machine running it supports.
#pragma once

#include <cstdint>

namespace voxtral::simd {

inline constexpr int kMaxRows = 8;        // activation rows of one dot_bf16 / dot_bf16_pairs call
inline constexpr int kMaxWeightRows = 4;  // weight rows of one call

struct Kernels {
  // sum_i a[i] * b[i]
  float (*dot)(const float* a, const float* b, std::int64_t n);
  // y[i] += alpha * x[i]
  void (*axpy)(float alpha, const float* x, float* y, std::int64_t n);
  // The decode step's matrix product with BF16 weights, exact mode (F32 activations):
  //   out[v * rows + r] = sum_i w[v][i] * x[r][i]   for v < wrows <= kMaxWeightRows, r < rows <= kMaxRows.
  // Each weight chunk is read and widened once for all the rows. Every (v, r) sum is taken in
  // one order that depends on neither wrows nor rows, so a stream's result does not depend
  // on how many streams share the step.
  void (*dot_bf16)(const std::uint16_t* const* w, int wrows, const float* const* x, int rows, std::int64_t n,
                   float* out);
  // The same with BF16 activations (fast mode): products summed two at a time into F32
  // lanes, lane l taking elements 2l and 2l + 1 of each chunk, as AVX512_BF16's vdpbf16ps
  // does (it is used where the CPU has it; the other sets compute the same sums with F32
  // FMAs, which differ from it only in rounding details). Batch invariant like dot_bf16.
  void (*dot_bf16_pairs)(const std::uint16_t* const* w, int wrows, const std::uint16_t* const* x, int rows,
                         std::int64_t n, float* out);
  // out[r] = sum_i w[i] * x[r][i] for r < rows <= 4, F32 weights.
  void (*dot_rows_f32)(const float* w, const float* const* x, int rows, std::int64_t n, float* out);
  // out[i] = float(bf16[i])
  void (*widen_bf16)(const std::uint16_t* in, float* out, std::int64_t n);
  // out[i] = bf16(in[i]), rounded to nearest even (NaN stays NaN): core/bf16.h's float_to_bf16.
  void (*round_bf16)(const float* in, std::uint16_t* out, std::int64_t n);
  const char* name;  // "avx512bf16", "avx512", "avx2" or "generic"
  // AVX512_VNNI for simd_quant.h's integer products: the CPU has it and VOXTRAL_CPU_KERNELS
  // is unset or avx512bf16 (the set "avx512" stands for AVX-512F/BW without the newer
  // instructions).
  bool vnni = false;
  // AMX-BF16 tiles for the many-row fast products (simd_gemm.h): the CPU has them, Linux
  // granted the tile state, and VOXTRAL_CPU_KERNELS is unset or amx.
  bool amx = false;
};

// The kernels for this machine (chosen once). VOXTRAL_CPU_KERNELS=amx|avx512bf16|avx512|avx2|generic
// asks for a set (the tests run each one); a set the machine lacks gives the widest it has
// below it, so compare `name` with the request to know which one runs.
const Kernels& kernels();

}  // namespace voxtral::simd
