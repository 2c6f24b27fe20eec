// AVX2 + FMA tiles of the many-row products: 16 activation rows (two vectors) by up to 6
// weight rows (exact: 12 accumulators of the 16 registers) or 4 (fast, whose pairs take two
// registers per operand once widened).
#include <algorithm>
#include <cstring>

#include "backend/cpu/simd_gemm_sets.h"

// GCC 12's own vector headers trip these warnings (its _mm*_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "core/bf16.h"

#define VOXTRAL_AVX2 __attribute__((target("avx2,fma")))
#define VOXTRAL_UNROLL _Pragma("GCC unroll 16")

namespace voxtral::simd {

namespace {

constexpr int kLanes = 16;
constexpr int kRows = 6;
constexpr int kPairRows = 4;

template <int W>
VOXTRAL_AVX2 void store_tile(const __m256 (&acc)[W][2], float* tile) {
  VOXTRAL_UNROLL for (int v = 0; v < W; ++v) {
    _mm256_storeu_ps(tile + v * kLanes, acc[v][0]);
    _mm256_storeu_ps(tile + v * kLanes + 8, acc[v][1]);
  }
}

struct TileF32 {
  template <int W>
  VOXTRAL_AVX2 static void run(const float* const* w, const float* panel, std::int64_t n, float* tile) {
    __m256 acc[W][2];
    VOXTRAL_UNROLL for (int v = 0; v < W; ++v) acc[v][0] = acc[v][1] = _mm256_setzero_ps();
    for (std::int64_t k = 0; k < n; ++k) {
      const __m256 x0 = _mm256_loadu_ps(panel + k * kLanes), x1 = _mm256_loadu_ps(panel + k * kLanes + 8);
      VOXTRAL_UNROLL for (int v = 0; v < W; ++v) {
        const __m256 b = _mm256_broadcast_ss(w[v] + k);
        acc[v][0] = _mm256_fmadd_ps(b, x0, acc[v][0]);
        acc[v][1] = _mm256_fmadd_ps(b, x1, acc[v][1]);
      }
    }
    store_tile<W>(acc, tile);
  }
};

VOXTRAL_AVX2 inline __m256 even_half(__m256i pairs) { return _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16)); }
VOXTRAL_AVX2 inline __m256 odd_half(__m256i pairs) {
  return _mm256_castsi256_ps(_mm256_and_si256(pairs, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}

// The pair order of simd_gemm.h: the odd input's product first, then the even one's.
struct TilePairs {
  template <int W>
  VOXTRAL_AVX2 static void run(const std::uint16_t* const* w, const std::uint32_t* panel, std::int64_t pairs,
                               float* tile) {
    __m256 acc[W][2];
    VOXTRAL_UNROLL for (int v = 0; v < W; ++v) acc[v][0] = acc[v][1] = _mm256_setzero_ps();
    for (std::int64_t p = 0; p < pairs; ++p) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + p * kLanes));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(panel + p * kLanes + 8));
      const __m256 e0 = even_half(x0), o0 = odd_half(x0), e1 = even_half(x1), o1 = odd_half(x1);
      VOXTRAL_UNROLL for (int v = 0; v < W; ++v) {
        std::uint32_t pair;
        std::memcpy(&pair, w[v] + 2 * p, sizeof pair);
        const __m256 be = _mm256_set1_ps(bf16_to_float(static_cast<std::uint16_t>(pair)));
        const __m256 bo = _mm256_set1_ps(bf16_to_float(static_cast<std::uint16_t>(pair >> 16)));
        acc[v][0] = _mm256_fmadd_ps(be, e0, _mm256_fmadd_ps(bo, o0, acc[v][0]));
        acc[v][1] = _mm256_fmadd_ps(be, e1, _mm256_fmadd_ps(bo, o1, acc[v][1]));
      }
    }
    store_tile<W>(acc, tile);
  }
};

VOXTRAL_AVX2 void tile_f32_avx2(const float* const* w, int wrows, const float* panel, std::int64_t n, float* tile) {
  for (int v = 0; v < wrows; v += kRows) {
    with_rows<TileF32, kRows>(std::min(kRows, wrows - v), w + v, panel, n, tile + v * kLanes);
  }
}

VOXTRAL_AVX2 void tile_pairs_avx2(const std::uint16_t* const* w, int wrows, const std::uint32_t* panel,
                                  std::int64_t pairs, float* tile) {
  for (int v = 0; v < wrows; v += kPairRows) {
    with_rows<TilePairs, kPairRows>(std::min(kPairRows, wrows - v), w + v, panel, pairs, tile + v * kLanes);
  }
}

VOXTRAL_AVX2 void dequantize_q8_avx2(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n,
                                     float* out) {
  for (std::int64_t b = 0; b < n / 32; ++b) {
    const __m256 d = _mm256_set1_ps(f16_to_float(scales[b]));
    for (int e = 0; e < 4; ++e) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + b * 32 + e * 8));
      _mm256_storeu_ps(out + b * 32 + e * 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q))));
    }
  }
}

VOXTRAL_AVX2 void dequantize_q4_avx2(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n,
                                     float* out) {
  const __m256i nibble = _mm256_set1_epi32(0x0f), eight = _mm256_set1_epi32(8);
  for (std::int64_t b = 0; b < n / 32; ++b) {
    const __m256 d = _mm256_set1_ps(f16_to_float(scales[b]));
    for (int e = 0; e < 2; ++e) {
      const __m256i bytes =
          _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + b * 16 + e * 8)));
      const __m256i low = _mm256_sub_epi32(_mm256_and_si256(bytes, nibble), eight);
      const __m256i high = _mm256_sub_epi32(_mm256_srli_epi32(bytes, 4), eight);
      _mm256_storeu_ps(out + b * 32 + e * 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(low)));
      _mm256_storeu_ps(out + b * 32 + 16 + e * 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(high)));
    }
  }
}

}  // namespace

GemmKernels avx2_gemm_kernels() {
  return {kLanes,
          kRows,
          tile_f32_avx2,
          tile_pairs_avx2,
          dequantize_q8_avx2,
          dequantize_q4_avx2,
          dequantize_then_round<dequantize_q8_avx2>,
          dequantize_then_round<dequantize_q4_avx2>,
          "avx2"};
}

}  // namespace voxtral::simd
