// AVX-512 tiles of the many-row products: 32 activation rows (two vectors) by up to 12
// weight rows, 24 of the 32 vector registers accumulating, the rest for the panel's two
// vectors and the broadcast weight.
#include <algorithm>
#include <cstring>

#include "backend/cpu/simd_gemm_sets.h"

// GCC 12's own vector headers trip these warnings (its _mm512_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "core/bf16.h"

#define VOXTRAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define VOXTRAL_AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))
// The accumulators live in registers only if every loop over them is unrolled.
#define VOXTRAL_UNROLL _Pragma("GCC unroll 16")

namespace voxtral::simd {

namespace {

constexpr int kLanes = 32;
constexpr int kRows = 12;
// Without the instruction a pair takes two more registers per operand (its halves widened).
constexpr int kEmulatedRows = 8;

std::uint32_t pair_at(const std::uint16_t* p) {
  std::uint32_t pair;
  std::memcpy(&pair, p, sizeof pair);
  return pair;
}

template <int W>
VOXTRAL_AVX512 void store_tile(const __m512 (&acc)[W][2], float* tile) {
  VOXTRAL_UNROLL for (int v = 0; v < W; ++v) {
    _mm512_storeu_ps(tile + v * kLanes, acc[v][0]);
    _mm512_storeu_ps(tile + v * kLanes + 16, acc[v][1]);
  }
}

struct TileF32 {
  template <int W>
  VOXTRAL_AVX512 static void run(const float* const* w, const float* panel, std::int64_t n, float* tile) {
    __m512 acc[W][2];
    VOXTRAL_UNROLL for (int v = 0; v < W; ++v) acc[v][0] = acc[v][1] = _mm512_setzero_ps();
    for (std::int64_t k = 0; k < n; ++k) {
      const __m512 x0 = _mm512_loadu_ps(panel + k * kLanes), x1 = _mm512_loadu_ps(panel + k * kLanes + 16);
      VOXTRAL_UNROLL for (int v = 0; v < W; ++v) {
        const __m512 b = _mm512_set1_ps(w[v][k]);
        acc[v][0] = _mm512_fmadd_ps(b, x0, acc[v][0]);
        acc[v][1] = _mm512_fmadd_ps(b, x1, acc[v][1]);
      }
    }
    store_tile<W>(acc, tile);
  }
};

struct TilePairsBf16 {
  template <int W>
  VOXTRAL_AVX512BF16 static void run(const std::uint16_t* const* w, const std::uint32_t* panel, std::int64_t pairs,
                                     float* tile) {
    __m512 acc[W][2];
    VOXTRAL_UNROLL for (int v = 0; v < W; ++v) acc[v][0] = acc[v][1] = _mm512_setzero_ps();
    for (std::int64_t p = 0; p < pairs; ++p) {
      const __m512i x0 = _mm512_loadu_si512(panel + p * kLanes), x1 = _mm512_loadu_si512(panel + p * kLanes + 16);
      VOXTRAL_UNROLL for (int v = 0; v < W; ++v) {
        const __m512i b = _mm512_set1_epi32(static_cast<int>(pair_at(w[v] + 2 * p)));
        acc[v][0] = _mm512_dpbf16_ps(acc[v][0], (__m512bh)b, (__m512bh)x0);
        acc[v][1] = _mm512_dpbf16_ps(acc[v][1], (__m512bh)b, (__m512bh)x1);
      }
    }
    store_tile<W>(acc, tile);
  }
};

VOXTRAL_AVX512 inline __m512 even_half(__m512i pairs) { return _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16)); }
VOXTRAL_AVX512 inline __m512 odd_half(__m512i pairs) {
  return _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}

struct TilePairsFma {
  template <int W>
  VOXTRAL_AVX512 static void run(const std::uint16_t* const* w, const std::uint32_t* panel, std::int64_t pairs,
                                 float* tile) {
    __m512 acc[W][2];
    VOXTRAL_UNROLL for (int v = 0; v < W; ++v) acc[v][0] = acc[v][1] = _mm512_setzero_ps();
    for (std::int64_t p = 0; p < pairs; ++p) {
      const __m512i x0 = _mm512_loadu_si512(panel + p * kLanes), x1 = _mm512_loadu_si512(panel + p * kLanes + 16);
      const __m512 e0 = even_half(x0), o0 = odd_half(x0), e1 = even_half(x1), o1 = odd_half(x1);
      VOXTRAL_UNROLL for (int v = 0; v < W; ++v) {
        const __m512i b = _mm512_set1_epi32(static_cast<int>(pair_at(w[v] + 2 * p)));
        const __m512 be = even_half(b), bo = odd_half(b);
        acc[v][0] = _mm512_fmadd_ps(be, e0, _mm512_fmadd_ps(bo, o0, acc[v][0]));
        acc[v][1] = _mm512_fmadd_ps(be, e1, _mm512_fmadd_ps(bo, o1, acc[v][1]));
      }
    }
    store_tile<W>(acc, tile);
  }
};

VOXTRAL_AVX512 void tile_f32_avx512(const float* const* w, int wrows, const float* panel, std::int64_t n, float* tile) {
  with_rows<TileF32, kRows>(wrows, w, panel, n, tile);
}

VOXTRAL_AVX512BF16 void tile_pairs_avx512bf16(const std::uint16_t* const* w, int wrows, const std::uint32_t* panel,
                                              std::int64_t pairs, float* tile) {
  with_rows<TilePairsBf16, kRows>(wrows, w, panel, pairs, tile);
}

VOXTRAL_AVX512 void tile_pairs_avx512(const std::uint16_t* const* w, int wrows, const std::uint32_t* panel,
                                      std::int64_t pairs, float* tile) {
  for (int v = 0; v < wrows; v += kEmulatedRows) {
    with_rows<TilePairsFma, kEmulatedRows>(std::min(kEmulatedRows, wrows - v), w + v, panel, pairs, tile + v * kLanes);
  }
}

// F32 to BF16, nearest even, for finite values (a dequantized weight is f16(d) * q: no NaN,
// no infinity), as core/bf16.h's float_to_bf16.
VOXTRAL_AVX512 inline __m256i round_finite_bf16(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd);
  return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_add_epi32(bits, bias), 16));
}

// 16 dequantized values out as F32, or rounded to BF16 (the fast tiles' rows, in one pass).
VOXTRAL_AVX512 inline void store16(float* out, __m512 v) { _mm512_storeu_ps(out, v); }
VOXTRAL_AVX512 inline void store16(std::uint16_t* out, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), round_finite_bf16(v));
}

// f16(d) * q has at most 8 + 11 significant bits: exact in F32, as core/quant.h's reference.
template <typename Out>
VOXTRAL_AVX512 void dequantize_q8_avx512(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n,
                                         Out* out) {
  for (std::int64_t b = 0; b < n / 32; ++b) {
    const __m512 d = _mm512_set1_ps(f16_to_float(scales[b]));
    for (int h = 0; h < 2; ++h) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + b * 32 + h * 16));
      store16(out + b * 32 + h * 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q))));
    }
  }
}

template <typename Out>
VOXTRAL_AVX512 void dequantize_q4_avx512(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n,
                                         Out* out) {
  const __m512i nibble = _mm512_set1_epi32(0x0f), eight = _mm512_set1_epi32(8);
  for (std::int64_t b = 0; b < n / 32; ++b) {
    const __m512 d = _mm512_set1_ps(f16_to_float(scales[b]));
    const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + b * 16)));
    const __m512i low = _mm512_sub_epi32(_mm512_and_si512(bytes, nibble), eight);
    const __m512i high = _mm512_sub_epi32(_mm512_srli_epi32(bytes, 4), eight);
    store16(out + b * 32, _mm512_mul_ps(d, _mm512_cvtepi32_ps(low)));
    store16(out + b * 32 + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(high)));
  }
}

}  // namespace

GemmKernels avx512_gemm_kernels(bool with_bf16_instruction) {
  return {kLanes,
          kRows,
          tile_f32_avx512,
          with_bf16_instruction ? tile_pairs_avx512bf16 : tile_pairs_avx512,
          dequantize_q8_avx512<float>,
          dequantize_q4_avx512<float>,
          dequantize_q8_avx512<std::uint16_t>,
          dequantize_q4_avx512<std::uint16_t>,
          with_bf16_instruction ? "avx512bf16" : "avx512"};
}

}  // namespace voxtral::simd
