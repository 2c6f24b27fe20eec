// The fast Q8/Q4 products on AVX2: half a group (2 blocks, 8 int32 lanes) a step, the
// integer sums through vpmaddubsw + vpmaddwd (simd_quant_int8.h has the layout and the
// formulas).
#include <algorithm>
#include <bit>
#include <cstring>

#include "backend/cpu/simd_quant_int8.h"

// GCC 12's own vector headers trip these warnings (its _mm*_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define VOXTRAL_AVX2 __attribute__((target("avx2,fma,f16c")))
#define VOXTRAL_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

namespace voxtral::simd {

namespace {

VOXTRAL_AVX2_INLINE __m256i max_magnitude(__m256 a, __m256 b) {
  const __m256i magnitude = _mm256_set1_epi32(0x7fffffff);
  return _mm256_max_epu32(_mm256_and_si256(_mm256_castps_si256(a), magnitude),
                          _mm256_and_si256(_mm256_castps_si256(b), magnitude));
}

VOXTRAL_AVX2 void quantize_avx2(const float* x, std::int64_t n, std::uint8_t* values, float* scales) {
  const std::int64_t blocks = n / kQuantBlock;
  const __m256i offset = _mm256_set1_epi8(static_cast<char>(0x80));
  for (std::int64_t b = 0; b < groups(n) * kGroupBlocks; ++b) {
    __m256i a = offset;
    float s = 0.0f;
    if (b < blocks) {
      const float* xb = x + b * kQuantBlock;
      __m256 v[4];
      for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(xb + 8 * i);
      // The largest magnitude on the bit patterns, as the portable set (NaN outranks all).
      __m256i bits = _mm256_max_epu32(max_magnitude(v[0], v[1]), max_magnitude(v[2], v[3]));
      __m128i half = _mm_max_epu32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1));
      half = _mm_max_epu32(half, _mm_shuffle_epi32(half, 0x4e));
      half = _mm_max_epu32(half, _mm_shuffle_epi32(half, 0xb1));
      const float m = std::bit_cast<float>(static_cast<std::uint32_t>(_mm_cvtsi128_si32(half)));
      const float inv = m >= kTinyBlock ? kInt8Max / m : 0.0f;
      s = m / kInt8Max;
      if (inv != 0.0f) {
        const __m256 scale = _mm256_set1_ps(inv);
        __m256i q[4];
        for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], scale));
        // The packs interleave 128-bit halves; the permutation puts the inputs back in order.
        const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        a = _mm256_xor_si256(_mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)), offset);
      }
    }
    const auto k = static_cast<int>(b % kGroupBlocks);
    std::uint8_t* group = values + (b / kGroupBlocks) * kGroupInputs;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(k, 0)), _mm256_castsi256_si128(a));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(k, 16)), _mm256_extracti128_si256(a, 1));
    _mm_storeu_ps(scales + b * kScaleLanes, _mm_set1_ps(s));
  }
}

// A group's 4 weight scales as floats (0 past the row's end), from `left` > 0 blocks.
VOXTRAL_AVX2_INLINE __m256 group_scales(const std::uint16_t* scales, std::int64_t left) {
  std::uint16_t bits[kGroupBlocks] = {};
  std::memcpy(bits, scales, static_cast<std::size_t>(std::min<std::int64_t>(left, kGroupBlocks)) * 2);
  return _mm256_castps128_ps256(_mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bits))));
}

VOXTRAL_AVX2_INLINE __m256 scale_add(__m256i lanes, __m256 d, const float* s, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_mul_ps(d, _mm256_loadu_ps(s)), acc);
}

VOXTRAL_AVX2_INLINE float hsum(__m256 v) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
}

// Half a group's codes (blocks k, k + 1; zero past the row's end) as the activation
// layout's two planes: inputs 0..15 of both blocks, then inputs 16..31 of both.
struct Planes {
  __m256i first, second;
};
template <WeightFormat F>
VOXTRAL_AVX2_INLINE Planes planes(const std::uint8_t* codes, std::int64_t left_blocks) {
  if constexpr (F == WeightFormat::Q8) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
    const __m256i b = left_blocks >= 2 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + 32))
                                       : _mm256_setzero_si256();
    return {_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31)};
  } else {
    const __m256i raw = left_blocks >= 2
                            ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes))
                            : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes)));
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    return {_mm256_and_si256(raw, nibble), _mm256_and_si256(_mm256_srli_epi16(raw, 4), nibble)};
  }
}

// Q8: |q| times the activation with q's sign, each pair in int16 (at most 2 * 128 * 127).
VOXTRAL_AVX2_INLINE __m256i signed_pairs(__m256i q, __m256i a_biased) {
  const __m256i a = _mm256_xor_si256(a_biased, _mm256_set1_epi8(static_cast<char>(0x80)));
  return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(a, q)), _mm256_set1_epi16(1));
}

// One accumulator per row: a row's sum goes in the same order whatever ROWS is.
template <WeightFormat F, int ROWS>
VOXTRAL_AVX2 void dot_avx2(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, std::int64_t n,
                           float* out) {
  __m256 acc[ROWS];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const std::int64_t blocks = n / kQuantBlock;
  const auto block_bytes = static_cast<std::int64_t>(quantized_row_bytes(F, kQuantBlock));
  for (std::int64_t b = 0; b < blocks; b += kGroupBlocks) {
    // Q4: 64 bytes of codes a group, the line kCodePrefetchBytes on asked for (as on AVX-512).
    if constexpr (F == WeightFormat::Q4) {
      _mm_prefetch(reinterpret_cast<const char*>(codes + b * block_bytes + kCodePrefetchBytes), _MM_HINT_T0);
    }
    const __m256 d4 = group_scales(scales + b, blocks - b);
    for (int h = 0; h < 2 && b + 2 * h < blocks; ++h) {
      const Planes w = planes<F>(codes + (b + 2 * h) * block_bytes, blocks - b - 2 * h);
      const __m256 d = _mm256_permutevar8x32_ps(d4, _mm256_setr_epi32(2 * h, 2 * h, 2 * h, 2 * h, 2 * h + 1, 2 * h + 1,
                                                                        2 * h + 1, 2 * h + 1));
      // Q4: q = c - 8, each lane starting from -128 sum q = 8192 - 128 sum c (its 8 codes).
      __m256i q_first = w.first, q_second = w.second, start = _mm256_setzero_si256();
      if constexpr (F == WeightFormat::Q4) {
        const __m256i ones = _mm256_set1_epi8(1), eight = _mm256_set1_epi8(8);
        const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(w.first, ones), _mm256_maddubs_epi16(w.second, ones));
        start = _mm256_add_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(-128)), _mm256_set1_epi32(8192));
        q_first = _mm256_sub_epi8(w.first, eight);
        q_second = _mm256_sub_epi8(w.second, eight);
      }
      for (int r = 0; r < ROWS; ++r) {
        const std::uint8_t* v = x[r].values + b * kQuantBlock + 32 * h;
        const __m256i a_first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v));
        const __m256i a_second = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + 64));
        __m256i lanes;
        if constexpr (F == WeightFormat::Q8) {
          lanes = _mm256_add_epi32(signed_pairs(q_first, a_first), signed_pairs(q_second, a_second));
        } else {
          const __m256i pairs =
              _mm256_add_epi16(_mm256_maddubs_epi16(a_first, q_first), _mm256_maddubs_epi16(a_second, q_second));
          lanes = _mm256_add_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)), start);
        }
        acc[r] = scale_add(lanes, d, x[r].scales + (b + 2 * h) * kScaleLanes, acc[r]);
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) out[r] = hsum(acc[r]);
}

// The row count as a template argument keeps the accumulators in registers.
template <WeightFormat F>
VOXTRAL_AVX2 void by_rows(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, int rows,
                          std::int64_t n, float* out) {
  switch (rows) {
    case 1: return dot_avx2<F, 1>(codes, scales, x, n, out);
    case 2: return dot_avx2<F, 2>(codes, scales, x, n, out);
    case 3: return dot_avx2<F, 3>(codes, scales, x, n, out);
    case 4: return dot_avx2<F, 4>(codes, scales, x, n, out);
    case 5: return dot_avx2<F, 5>(codes, scales, x, n, out);
    case 6: return dot_avx2<F, 6>(codes, scales, x, n, out);
    case 7: return dot_avx2<F, 7>(codes, scales, x, n, out);
    default: return dot_avx2<F, 8>(codes, scales, x, n, out);
  }
}

}  // namespace

Int8Kernels int8_kernels_avx2() { return {quantize_avx2, by_rows<WeightFormat::Q8>, by_rows<WeightFormat::Q4>}; }

}  // namespace voxtral::simd
