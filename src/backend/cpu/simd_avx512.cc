// The AVX-512 kernel sets (16 F32 lanes, 32 vector registers), with and without the
// AVX512_BF16 dot-product instruction.
#include "backend/cpu/simd_sets.h"

// GCC 12's own vector headers trip these warnings (its _mm512_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "core/bf16.h"

#define VOXTRAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define VOXTRAL_AVX512_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"), always_inline)) inline
#define VOXTRAL_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))

namespace voxtral::simd {

namespace {

VOXTRAL_AVX512 float dot_avx512(const float* a, const float* b, std::int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

VOXTRAL_AVX512 void axpy_avx512(float alpha, const float* x, float* y, std::int64_t n) {
  const __m512 a = _mm512_set1_ps(alpha);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(a, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

VOXTRAL_AVX512_INLINE __m512 widen16(__m256i raw) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// Pins a loaded value to a register. Without it GCC folds an activation load into each of
// the W FMAs that use it, reading every activation chunk W times instead of once.
template <typename V>
VOXTRAL_AVX512_INLINE V in_register(V v) {
  __asm__("" : "+v"(v));
  return v;
}

// With more than four rows a chunk takes long enough to compute that the hardware
// prefetcher alone leaves the core waiting on memory (8 rows took ~25% longer without
// this): each weight chunk asks for the one kPrefetchAhead elements on (past the end of a
// row, the start of the next one, read soon after). Fewer rows are bound by bandwidth and
// gain nothing.
constexpr std::int64_t kPrefetchAhead = 1024;
VOXTRAL_AVX512_INLINE void prefetch_ahead(const std::uint16_t* p) {
  _mm_prefetch(reinterpret_cast<const char*>(p + kPrefetchAhead), _MM_HINT_T0);
}

// Masks for the last, partial chunk of a row: loads through them read zeros past the end.
VOXTRAL_AVX512_INLINE __mmask16 mask16(std::int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xffff) : count <= 0 ? 0 : static_cast<__mmask16>((1u << count) - 1);
}
VOXTRAL_AVX512_INLINE __mmask32 mask32(std::int64_t count) {
  return count >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << count) - 1);
}

// Exact mode: lane l of a pair's accumulator takes element l, then 16 + l, of each
// 32-element chunk; the last partial chunk is read through masks, so it adds zeros.
struct ExactAvx512 {
  using X = float;
  static constexpr int kAccumulators = 16;
  static constexpr int kWeightRows = 4;

  template <int W, int R, bool Masked>
  VOXTRAL_AVX512_INLINE static void chunk(__m512 (&acc)[W][R], const std::uint16_t* const* w, const float* const* x,
                                          std::int64_t i, __mmask16 m0, __mmask16 m1) {
    __m512 w0[W], w1[W];
    for (int v = 0; v < W; ++v) {
      if constexpr (!Masked && R > 4) prefetch_ahead(w[v] + i);
      if constexpr (Masked) {
        w0[v] = widen16(_mm256_maskz_loadu_epi16(m0, w[v] + i));
        w1[v] = widen16(_mm256_maskz_loadu_epi16(m1, w[v] + i + 16));
      } else {
        w0[v] = widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[v] + i)));
        w1[v] = widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[v] + i + 16)));
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m512 x0 = in_register(Masked ? _mm512_maskz_loadu_ps(m0, x[r] + i) : _mm512_loadu_ps(x[r] + i));
      const __m512 x1 =
          in_register(Masked ? _mm512_maskz_loadu_ps(m1, x[r] + i + 16) : _mm512_loadu_ps(x[r] + i + 16));
      for (int v = 0; v < W; ++v) acc[v][r] = _mm512_fmadd_ps(w1[v], x1, _mm512_fmadd_ps(w0[v], x0, acc[v][r]));
    }
  }

  template <int W, int R>
  VOXTRAL_AVX512 static void block(const std::uint16_t* const* w, const float* const* x, std::int64_t n, float* out,
                                   int ldo) {
    __m512 acc[W][R];
    for (auto& a : acc) {
      for (auto& b : a) b = _mm512_setzero_ps();
    }
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32) chunk<W, R, false>(acc, w, x, i, 0, 0);
    if (i < n) chunk<W, R, true>(acc, w, x, i, mask16(n - i), mask16(n - i - 16));
    for (int v = 0; v < W; ++v) {
      for (int r = 0; r < R; ++r) out[v * ldo + r] = _mm512_reduce_add_ps(acc[v][r]);
    }
  }
};

VOXTRAL_AVX512_INLINE __m512i load_pairs(const std::uint16_t* p) { return _mm512_loadu_si512(p); }
VOXTRAL_AVX512_INLINE __m512i load_pairs(const std::uint16_t* p, __mmask32 m) { return _mm512_maskz_loadu_epi16(m, p); }

// Fast mode, vdpbf16ps: lane l adds the products of elements 2l + 1 and 2l of each
// 32-element chunk.
struct PairsAvx512Bf16 {
  using X = std::uint16_t;
  static constexpr int kAccumulators = 16;
  static constexpr int kWeightRows = 4;

  template <int W, int R>
  VOXTRAL_AVX512BF16 static void block(const std::uint16_t* const* w, const std::uint16_t* const* x, std::int64_t n,
                                       float* out, int ldo) {
    __m512 acc[W][R];
    for (auto& a : acc) {
      for (auto& b : a) b = _mm512_setzero_ps();
    }
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
      __m512i wv[W];
      for (int v = 0; v < W; ++v) {
        if constexpr (R > 4) prefetch_ahead(w[v] + i);
        wv[v] = _mm512_loadu_si512(w[v] + i);
      }
      for (int r = 0; r < R; ++r) {
        const __m512i xv = in_register(_mm512_loadu_si512(x[r] + i));
        for (int v = 0; v < W; ++v) acc[v][r] = _mm512_dpbf16_ps(acc[v][r], (__m512bh)xv, (__m512bh)wv[v]);
      }
    }
    if (i < n) {
      const __mmask32 m = mask32(n - i);
      __m512i wv[W];
      for (int v = 0; v < W; ++v) wv[v] = _mm512_maskz_loadu_epi16(m, w[v] + i);
      for (int r = 0; r < R; ++r) {
        const __m512i xv = in_register(_mm512_maskz_loadu_epi16(m, x[r] + i));
        for (int v = 0; v < W; ++v) acc[v][r] = _mm512_dpbf16_ps(acc[v][r], (__m512bh)xv, (__m512bh)wv[v]);
      }
    }
    for (int v = 0; v < W; ++v) {
      for (int r = 0; r < R; ++r) out[v * ldo + r] = _mm512_reduce_add_ps(acc[v][r]);
    }
  }
};

VOXTRAL_AVX512_INLINE __m512 even_bf16(__m512i pairs) { return _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16)); }
VOXTRAL_AVX512_INLINE __m512 odd_bf16(__m512i pairs) {
  return _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

// Fast mode without the instruction: the same lanes and pair order as vdpbf16ps with F32
// FMAs (a BF16 product is exact in F32, so only the additions round; denormals are kept,
// where vdpbf16ps flushes them).
struct PairsAvx512 {
  using X = std::uint16_t;
  static constexpr int kAccumulators = 16;
  static constexpr int kWeightRows = 4;

  template <int W, int R, bool Masked>
  VOXTRAL_AVX512_INLINE static void chunk(__m512 (&acc)[W][R], const std::uint16_t* const* w,
                                          const std::uint16_t* const* x, std::int64_t i, __mmask32 m) {
    __m512 we[W], wo[W];
    for (int v = 0; v < W; ++v) {
      const __m512i pairs = Masked ? load_pairs(w[v] + i, m) : load_pairs(w[v] + i);
      we[v] = even_bf16(pairs);
      wo[v] = odd_bf16(pairs);
    }
    for (int r = 0; r < R; ++r) {
      const __m512i pairs = Masked ? load_pairs(x[r] + i, m) : load_pairs(x[r] + i);
      const __m512 xe = even_bf16(pairs), xo = odd_bf16(pairs);
      for (int v = 0; v < W; ++v) acc[v][r] = _mm512_fmadd_ps(we[v], xe, _mm512_fmadd_ps(wo[v], xo, acc[v][r]));
    }
  }

  template <int W, int R>
  VOXTRAL_AVX512 static void block(const std::uint16_t* const* w, const std::uint16_t* const* x, std::int64_t n,
                                   float* out, int ldo) {
    __m512 acc[W][R];
    for (auto& a : acc) {
      for (auto& b : a) b = _mm512_setzero_ps();
    }
    std::int64_t i = 0;
    for (; i + 32 <= n; i += 32) chunk<W, R, false>(acc, w, x, i, 0);
    if (i < n) chunk<W, R, true>(acc, w, x, i, mask32(n - i));
    for (int v = 0; v < W; ++v) {
      for (int r = 0; r < R; ++r) out[v * ldo + r] = _mm512_reduce_add_ps(acc[v][r]);
    }
  }
};

template <int R>
VOXTRAL_AVX512 void dot_rows_f32_block(const float* w, const float* const* x, std::int64_t n, float* out) {
  __m512 acc[R][2];
  for (auto& a : acc) a[0] = a[1] = _mm512_setzero_ps();
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 w0 = _mm512_loadu_ps(w + i), w1 = _mm512_loadu_ps(w + i + 16);
    for (int r = 0; r < R; ++r) {
      acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[r] + i), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[r] + i + 16), acc[r][1]);
    }
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 w0 = _mm512_loadu_ps(w + i);
    for (int r = 0; r < R; ++r) acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[r] + i), acc[r][0]);
  }
  for (int r = 0; r < R; ++r) {
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
    for (std::int64_t j = i; j < n; ++j) sum += w[j] * x[r][j];
    out[r] = sum;
  }
}

VOXTRAL_AVX512 void dot_rows_f32_avx512(const float* w, const float* const* x, int rows, std::int64_t n, float* out) {
  switch (rows) {
    case 1: return dot_rows_f32_block<1>(w, x, n, out);
    case 2: return dot_rows_f32_block<2>(w, x, n, out);
    case 3: return dot_rows_f32_block<3>(w, x, n, out);
    default: return dot_rows_f32_block<4>(w, x, n, out);
  }
}

VOXTRAL_AVX512 void widen_avx512(const std::uint16_t* in, float* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i))));
  for (; i < n; ++i) out[i] = bf16_to_float(in[i]);
}

// float_to_bf16, 16 values at a time: add 0x7fff plus the kept part's lowest bit, keep the
// top half; NaN keeps its top half with the quiet bit set.
VOXTRAL_AVX512 void round_avx512(const float* in, std::uint16_t* out, std::int64_t n) {
  const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff), infinity = _mm512_set1_epi32(0x7f800000);
  const __m512i quiet = _mm512_set1_epi32(0x40);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i bits = _mm512_castps_si512(_mm512_loadu_ps(in + i));
    const __m512i high = _mm512_srli_epi32(bits, 16);
    const __m512i rounded =
        _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(bias, _mm512_and_si512(high, one))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(bits, magnitude), infinity);
    const __m512i result = _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(high, quiet));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(result));
  }
  for (; i < n; ++i) out[i] = float_to_bf16(in[i]);
}

}  // namespace

Kernels avx512_kernels(bool with_bf16_instruction) {
  return {dot_avx512,
          axpy_avx512,
          dot_blocks<ExactAvx512>,
          with_bf16_instruction ? dot_blocks<PairsAvx512Bf16> : dot_blocks<PairsAvx512>,
          dot_rows_f32_avx512,
          widen_avx512,
          round_avx512,
          with_bf16_instruction ? "avx512bf16" : "avx512"};
}

}  // namespace voxtral::simd
