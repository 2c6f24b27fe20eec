// The portable kernel set: plain C++ for machines without AVX2 (and the tests' reference
// for the dispatch). Eight partial sums give the compiler independent lanes to vectorise
// without reassociation.
#include <bit>

#include "backend/cpu/simd_sets.h"
#include "core/bf16.h"

namespace voxtral::simd {

namespace {

float tree8(const float* acc) {
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

float dot_generic(const float* a, const float* b, std::int64_t n) {
  float acc[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += a[i + u] * b[i + u];
  }
  float sum = tree8(acc);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy_generic(float alpha, const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

inline float load_f32(float v) { return v; }

template <typename W, float (*Load)(W)>
float dot_one(const W* w, const float* x, std::int64_t n) {
  float acc[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += Load(w[i + u]) * x[i + u];
  }
  float sum = tree8(acc);
  for (; i < n; ++i) sum += Load(w[i]) * x[i];
  return sum;
}

void dot_bf16_generic(const std::uint16_t* const* w, int wrows, const float* const* x, int rows, std::int64_t n,
                      float* out) {
  for (int v = 0; v < wrows; ++v) {
    for (int r = 0; r < rows; ++r) out[v * rows + r] = dot_one<std::uint16_t, bf16_to_float>(w[v], x[r], n);
  }
}

// Two BF16 values as the vector kernels see them: a 32-bit lane, element 2l in its low half.
std::uint32_t pair_bits(const std::uint16_t* p) {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 16;
}
float low_half(std::uint32_t pair) { return std::bit_cast<float>(pair << 16); }
float high_half(std::uint32_t pair) { return std::bit_cast<float>(pair & 0xffff0000u); }

// Lane l takes elements 2l + 1 then 2l of each 16-element chunk (vdpbf16ps's order); a
// product of two BF16 values is exact in F32, so only the additions round. (Written with
// pair_bits: GCC 12.2 at -O3 mis-vectorised the plain w[i + 2l + 1] form.)
float dot_pairs_one(const std::uint16_t* w, const std::uint16_t* x, std::int64_t n) {
  float acc[8] = {};
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 8; ++l) {
      const std::uint32_t wp = pair_bits(w + i + 2 * l), xp = pair_bits(x + i + 2 * l);
      acc[l] += high_half(wp) * high_half(xp);
      acc[l] += low_half(wp) * low_half(xp);
    }
  }
  float sum = tree8(acc);
  for (; i < n; ++i) sum += bf16_to_float(w[i]) * bf16_to_float(x[i]);
  return sum;
}

void dot_bf16_pairs_generic(const std::uint16_t* const* w, int wrows, const std::uint16_t* const* x, int rows,
                            std::int64_t n, float* out) {
  for (int v = 0; v < wrows; ++v) {
    for (int r = 0; r < rows; ++r) out[v * rows + r] = dot_pairs_one(w[v], x[r], n);
  }
}

void dot_rows_f32_generic(const float* w, const float* const* x, int rows, std::int64_t n, float* out) {
  for (int r = 0; r < rows; ++r) out[r] = dot_one<float, load_f32>(w, x[r], n);
}

void widen_generic(const std::uint16_t* in, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(in[i]);
}

void round_generic(const float* in, std::uint16_t* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(in[i]);
}

}  // namespace

Kernels generic_kernels() {
  return {dot_generic,          axpy_generic,  dot_bf16_generic, dot_bf16_pairs_generic,
          dot_rows_f32_generic, widen_generic, round_generic,    "generic"};
}

}  // namespace voxtral::simd
