// Small vector kernels with run-time dispatch: AVX-512, AVX2+FMA, or portable C++.
// The CPU backend is built for the x86-64 baseline and picks the widest kernels the
// machine running it supports.
#pragma once

#include <cstdint>

namespace voxtral::simd {

struct Kernels {
  // sum_i a[i] * b[i]
  float (*dot)(const float* a, const float* b, std::int64_t n);
  // y[i] += alpha * x[i]
  void (*axpy)(float alpha, const float* x, float* y, std::int64_t n);
  // out[r] = sum_i w[i] * x[r][i] for r < rows (rows <= 4); w in BF16 (or F32 for the _f32 form)
  void (*dot_rows_bf16)(const std::uint16_t* w, const float* const* x, int rows, std::int64_t n, float* out);
  // The same for two weight rows sharing the activation loads: out0 from w0, out1 from w1,
  // each equal to what dot_rows_bf16 gives for its row.
  void (*dot2_rows_bf16)(const std::uint16_t* w0, const std::uint16_t* w1, const float* const* x, int rows,
                         std::int64_t n, float* out0, float* out1);
  void (*dot_rows_f32)(const float* w, const float* const* x, int rows, std::int64_t n, float* out);
  // out[i] = float(bf16[i])
  void (*widen_bf16)(const std::uint16_t* in, float* out, std::int64_t n);
  const char* name;
};

// The kernels for this machine (chosen once).
const Kernels& kernels();

}  // namespace voxtral::simd
