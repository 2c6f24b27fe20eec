// The fast Q8/Q4 products on AVX2: 32 code bytes a vector (one Q8 block, two Q4 blocks),
// the integer sums through vpmaddubsw + vpmaddwd (simd_quant_int8.h has the layout and the
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

VOXTRAL_AVX2 void quantize_avx2(WeightFormat format, const float* x, std::int64_t n, std::uint8_t* values,
                                float* scales) {
  const int lanes = scale_lanes(format);
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
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(format, k, 0)), _mm256_castsi256_si128(a));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(format, k, 16)), _mm256_extracti128_si256(a, 1));
    for (int l = 0; l < lanes; ++l) scales[b * lanes + l] = s;
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

// Q8: one block per vector; |q| times the activation with q's sign (no pair can saturate).
template <int ROWS>
VOXTRAL_AVX2 void q8_avx2(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, std::int64_t n,
                          float* out) {
  __m256 acc[ROWS];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const __m256i offset = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  const std::int64_t blocks = n / kQuantBlock;
  for (std::int64_t b = 0; b < blocks; b += kGroupBlocks) {
    const __m256 d4 = group_scales(scales + b, blocks - b);
    for (std::int64_t k = 0; k < std::min<std::int64_t>(kGroupBlocks, blocks - b); ++k) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + (b + k) * kQuantBlock));
      const __m256i magnitude = _mm256_abs_epi8(q);
      const __m256 d = _mm256_permutevar8x32_ps(d4, _mm256_set1_epi32(static_cast<int>(k)));
      for (int r = 0; r < ROWS; ++r) {
        const __m256i a = _mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[r].values + (b + k) * kQuantBlock)), offset);
        const __m256i lanes = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(a, q)), ones);
        acc[r] = scale_add(lanes, d, x[r].scales + (b + k) * 8, acc[r]);
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) out[r] = hsum(acc[r]);
}

// Q4: two blocks per vector of codes; the biased activation bytes times q = c - 8, from the
// lanes' start -128 sum q.
template <int ROWS>
VOXTRAL_AVX2 void q4_avx2(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, std::int64_t n,
                          float* out) {
  __m256 acc[ROWS];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const __m256i nibble = _mm256_set1_epi8(0x0f), eight = _mm256_set1_epi8(8), ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  const std::int64_t blocks = n / kQuantBlock;
  for (std::int64_t b = 0; b < blocks; b += kGroupBlocks) {
    const __m256 d4 = group_scales(scales + b, blocks - b);
    for (std::int64_t k = 0; k < std::min<std::int64_t>(kGroupBlocks, blocks - b); k += 2) {
      const std::uint8_t* p = codes + (b + k) * 16;
      const __m256i raw = blocks - b - k >= 2
                              ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                              : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      const __m256i c_lo = _mm256_and_si256(raw, nibble);
      const __m256i c_hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), nibble);
      const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(c_lo, ones8), _mm256_maddubs_epi16(c_hi, ones8));
      const __m256i start =
          _mm256_add_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(-128)), _mm256_set1_epi32(8192));
      const __m256i q_lo = _mm256_sub_epi8(c_lo, eight), q_hi = _mm256_sub_epi8(c_hi, eight);
      const auto first = static_cast<int>(k);
      const __m256 d = _mm256_permutevar8x32_ps(
          d4, _mm256_setr_epi32(first, first, first, first, first + 1, first + 1, first + 1, first + 1));
      for (int r = 0; r < ROWS; ++r) {
        const std::uint8_t* group = x[r].values + b * kQuantBlock;
        const __m256i a_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + 16 * k));
        const __m256i a_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + 64 + 16 * k));
        const __m256i sums = _mm256_add_epi16(_mm256_maddubs_epi16(a_lo, q_lo), _mm256_maddubs_epi16(a_hi, q_hi));
        acc[r] = scale_add(_mm256_add_epi32(_mm256_madd_epi16(sums, ones16), start), d, x[r].scales + (b + k) * 4,
                           acc[r]);
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) out[r] = hsum(acc[r]);
}

// The row count as a template argument keeps the accumulators in registers.
#define VOXTRAL_ROWS_SWITCH(fn)                       \
  switch (rows) {                                     \
    case 1: return fn<1>(codes, scales, x, n, out);   \
    case 2: return fn<2>(codes, scales, x, n, out);   \
    case 3: return fn<3>(codes, scales, x, n, out);   \
    case 4: return fn<4>(codes, scales, x, n, out);   \
    case 5: return fn<5>(codes, scales, x, n, out);   \
    case 6: return fn<6>(codes, scales, x, n, out);   \
    case 7: return fn<7>(codes, scales, x, n, out);   \
    default: return fn<8>(codes, scales, x, n, out);  \
  }

VOXTRAL_AVX2 void dot_q8_avx2(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, int rows,
                              std::int64_t n, float* out) {
  VOXTRAL_ROWS_SWITCH(q8_avx2)
}
VOXTRAL_AVX2 void dot_q4_avx2(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, int rows,
                              std::int64_t n, float* out) {
  VOXTRAL_ROWS_SWITCH(q4_avx2)
}

#undef VOXTRAL_ROWS_SWITCH

}  // namespace

Int8Kernels int8_kernels_avx2() { return {quantize_avx2, dot_q8_avx2, dot_q4_avx2}; }

}  // namespace voxtral::simd
