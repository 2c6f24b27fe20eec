// The AVX2 + FMA kernel set (8 F32 lanes, 16 vector registers).
#include "backend/cpu/simd_sets.h"

// GCC 12's own vector headers trip these warnings (its _mm*_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "core/bf16.h"

#define VOXTRAL_AVX2 __attribute__((target("avx2,fma")))

namespace voxtral::simd {

namespace {

VOXTRAL_AVX2 inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

VOXTRAL_AVX2 float dot_avx2(const float* a, const float* b, std::int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  float sum = hsum256(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

VOXTRAL_AVX2 void axpy_avx2(float alpha, const float* x, float* y, std::int64_t n) {
  const __m256 a = _mm256_set1_ps(alpha);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

VOXTRAL_AVX2 inline __m256 load8_bf16(const std::uint16_t* p) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
}

// Exact mode: lane l of a pair's accumulator takes element l, then 8 + l, of each
// 16-element chunk; the elements past the last whole chunk are added after the lanes.
struct ExactAvx2 {
  using X = float;
  static constexpr int kAccumulators = 8;
  static constexpr int kWeightRows = 2;

  template <int W, int R>
  VOXTRAL_AVX2 static void block(const std::uint16_t* const* w, const float* const* x, std::int64_t n, float* out,
                                 int ldo) {
    __m256 acc[W][R];
    for (auto& a : acc) {
      for (auto& b : a) b = _mm256_setzero_ps();
    }
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      __m256 w0[W], w1[W];
      for (int v = 0; v < W; ++v) {
        w0[v] = load8_bf16(w[v] + i);
        w1[v] = load8_bf16(w[v] + i + 8);
      }
      for (int r = 0; r < R; ++r) {
        const __m256 x0 = _mm256_loadu_ps(x[r] + i), x1 = _mm256_loadu_ps(x[r] + i + 8);
        for (int v = 0; v < W; ++v) acc[v][r] = _mm256_fmadd_ps(w1[v], x1, _mm256_fmadd_ps(w0[v], x0, acc[v][r]));
      }
    }
    for (int v = 0; v < W; ++v) {
      for (int r = 0; r < R; ++r) {
        float sum = hsum256(acc[v][r]);
        for (std::int64_t j = i; j < n; ++j) sum += bf16_to_float(w[v][j]) * x[r][j];
        out[v * ldo + r] = sum;
      }
    }
  }
};

VOXTRAL_AVX2 inline __m256 even_bf16(__m256i pairs) { return _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16)); }
VOXTRAL_AVX2 inline __m256 odd_bf16(__m256i pairs) {
  return _mm256_castsi256_ps(_mm256_and_si256(pairs, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

// Fast mode: lane l takes elements 2l + 1, then 2l, of each 16-element chunk (the pair
// order of vdpbf16ps); BF16 products are exact in F32, so only the additions round.
struct PairsAvx2 {
  using X = std::uint16_t;
  static constexpr int kAccumulators = 8;
  static constexpr int kWeightRows = 2;

  template <int W, int R>
  VOXTRAL_AVX2 static void block(const std::uint16_t* const* w, const std::uint16_t* const* x, std::int64_t n,
                                 float* out, int ldo) {
    __m256 acc[W][R];
    for (auto& a : acc) {
      for (auto& b : a) b = _mm256_setzero_ps();
    }
    std::int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      __m256 we[W], wo[W];
      for (int v = 0; v < W; ++v) {
        const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[v] + i));
        we[v] = even_bf16(pairs);
        wo[v] = odd_bf16(pairs);
      }
      for (int r = 0; r < R; ++r) {
        const __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[r] + i));
        const __m256 xe = even_bf16(pairs), xo = odd_bf16(pairs);
        for (int v = 0; v < W; ++v) acc[v][r] = _mm256_fmadd_ps(we[v], xe, _mm256_fmadd_ps(wo[v], xo, acc[v][r]));
      }
    }
    for (int v = 0; v < W; ++v) {
      for (int r = 0; r < R; ++r) {
        float sum = hsum256(acc[v][r]);
        for (std::int64_t j = i; j < n; ++j) sum += bf16_to_float(w[v][j]) * bf16_to_float(x[r][j]);
        out[v * ldo + r] = sum;
      }
    }
  }
};

template <int R>
VOXTRAL_AVX2 void dot_rows_f32_block(const float* w, const float* const* x, std::int64_t n, float* out) {
  __m256 acc[R];
  for (auto& a : acc) a = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 wv = _mm256_loadu_ps(w + i);
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[r] + i), acc[r]);
  }
  for (int r = 0; r < R; ++r) {
    float sum = hsum256(acc[r]);
    for (std::int64_t j = i; j < n; ++j) sum += w[j] * x[r][j];
    out[r] = sum;
  }
}

VOXTRAL_AVX2 void dot_rows_f32_avx2(const float* w, const float* const* x, int rows, std::int64_t n, float* out) {
  switch (rows) {
    case 1: return dot_rows_f32_block<1>(w, x, n, out);
    case 2: return dot_rows_f32_block<2>(w, x, n, out);
    case 3: return dot_rows_f32_block<3>(w, x, n, out);
    default: return dot_rows_f32_block<4>(w, x, n, out);
  }
}

VOXTRAL_AVX2 void widen_avx2(const std::uint16_t* in, float* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8_bf16(in + i));
  for (; i < n; ++i) out[i] = bf16_to_float(in[i]);
}

void round_scalar(const float* in, std::uint16_t* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(in[i]);
}

}  // namespace

Kernels avx2_kernels() {
  return {dot_avx2,          axpy_avx2,  dot_blocks<ExactAvx2>, dot_blocks<PairsAvx2>,
          dot_rows_f32_avx2, widen_avx2, round_scalar,          "avx2"};
}

}  // namespace voxtral::simd
