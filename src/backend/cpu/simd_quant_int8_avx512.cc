// The fast Q8/Q4 products on AVX-512: 64 code bytes a vector, the integer sums through
// AVX512-VNNI's vpdpbusd where the CPU has it, else AVX-512BW's vpmaddubsw + vpmaddwd
// (simd_quant_int8.h has the layout and both formulas).
#include <bit>

#include "backend/cpu/simd_quant_int8.h"

// GCC 12's own AVX-512 headers trip these warnings (its _mm512_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

// Each kernel is compiled for exactly the instructions it may use: the VNNI ones must never
// leak into the set that runs on CPUs without them.
#define VOXTRAL_AVX512BW __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define VOXTRAL_AVX512BW_INLINE __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"), always_inline)) inline
#define VOXTRAL_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define VOXTRAL_VNNI_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"), always_inline)) inline

namespace voxtral::simd {

namespace {

VOXTRAL_AVX512BW void quantize_avx512(WeightFormat format, const float* x, std::int64_t n, std::uint8_t* values,
                                      float* scales) {
  const int lanes = scale_lanes(format);
  const std::int64_t blocks = n / kQuantBlock;
  const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
  const __m128i offset = _mm_set1_epi8(static_cast<char>(0x80));
  for (std::int64_t b = 0; b < groups(n) * kGroupBlocks; ++b) {
    __m128i a0 = offset, a1 = offset;
    float s = 0.0f;
    if (b < blocks) {
      const __m512 x0 = _mm512_loadu_ps(x + b * kQuantBlock), x1 = _mm512_loadu_ps(x + b * kQuantBlock + 16);
      // The largest magnitude on the bit patterns, as the portable set (NaN outranks all).
      const __m512i bits = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(x0), magnitude),
                                            _mm512_and_si512(_mm512_castps_si512(x1), magnitude));
      const float m = std::bit_cast<float>(static_cast<std::uint32_t>(_mm512_reduce_max_epu32(bits)));
      const float inv = m >= kTinyBlock ? kInt8Max / m : 0.0f;
      s = m / kInt8Max;
      if (inv != 0.0f) {
        const __m512 scale = _mm512_set1_ps(inv);
        a0 = _mm_xor_si128(_mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x0, scale))), offset);
        a1 = _mm_xor_si128(_mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(x1, scale))), offset);
      }
    }
    const auto k = static_cast<int>(b % kGroupBlocks);
    std::uint8_t* group = values + (b / kGroupBlocks) * kGroupInputs;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(format, k, 0)), a0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(format, k, 16)), a1);
    for (int l = 0; l < lanes; ++l) scales[b * lanes + l] = s;
  }
}

// A group's 4 weight scales as floats (0 past the row's end), from `left` > 0 blocks.
VOXTRAL_AVX512BW_INLINE __m512 group_scales(const std::uint16_t* scales, std::int64_t left) {
  const __m128i half = left >= kGroupBlocks
                           ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales))
                           : _mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << left) - 1), scales);
  return _mm512_zextps128_ps512(_mm_cvtph_ps(half));
}

// `bytes` code bytes from p (the rest zero), bytes <= 64.
VOXTRAL_AVX512BW_INLINE __m512i load_codes(const std::uint8_t* p, std::int64_t bytes) {
  if (bytes >= 64) return _mm512_loadu_si512(p);
  return _mm512_maskz_loadu_epi8(bytes <= 0 ? 0 : (~0ull >> (64 - bytes)), p);
}

// acc += lanes * (d * s): a vector of integer lane sums scaled by its blocks' d and s.
VOXTRAL_AVX512BW_INLINE __m512 scale_add(__m512i lanes, __m512 d, const float* s, __m512 acc) {
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(d, _mm512_loadu_ps(s)), acc);
}

// The integer lane sums of one vector of codes with each activation row, two ways.
struct Vnni {
  // Q8: q's vector, and each lane's start -128 sum q.
  struct Q8 {
    __m512i q, start;
  };
  VOXTRAL_VNNI_INLINE static Q8 q8(__m512i q) {
    const __m512i zero = _mm512_setzero_si512();
    return {q, _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(static_cast<char>(0x80)), q))};
  }
  VOXTRAL_VNNI_INLINE static __m512i lanes(const Q8& w, __m512i a) { return _mm512_dpbusd_epi32(w.start, a, w.q); }
  // Q4: the low and high nibble planes as q = c - 8, and the start -128 sum q = 8192 - 128 sum c.
  struct Q4 {
    __m512i lo, hi, start;
  };
  VOXTRAL_VNNI_INLINE static Q4 q4(__m512i c_lo, __m512i c_hi) {
    const __m512i minus128 = _mm512_set1_epi8(-128), eight = _mm512_set1_epi8(8);
    const __m512i start =
        _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_set1_epi32(8192), c_lo, minus128), c_hi, minus128);
    return {_mm512_sub_epi8(c_lo, eight), _mm512_sub_epi8(c_hi, eight), start};
  }
  VOXTRAL_VNNI_INLINE static __m512i lanes(const Q4& w, __m512i a_lo, __m512i a_hi) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(w.start, a_lo, w.lo), a_hi, w.hi);
  }
};

struct MaddUbs {
  // Q8: |q| (unsigned) and where q < 0; the activation is negated there.
  struct Q8 {
    __m512i magnitude;
    __mmask64 negative;
  };
  VOXTRAL_AVX512BW_INLINE static Q8 q8(__m512i q) { return {_mm512_abs_epi8(q), _mm512_movepi8_mask(q)}; }
  VOXTRAL_AVX512BW_INLINE static __m512i lanes(const Q8& w, __m512i a_biased) {
    const __m512i a = _mm512_xor_si512(a_biased, _mm512_set1_epi8(static_cast<char>(0x80)));
    const __m512i signed_a = _mm512_mask_sub_epi8(a, w.negative, _mm512_setzero_si512(), a);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(w.magnitude, signed_a), _mm512_set1_epi16(1));
  }
  struct Q4 {
    __m512i lo, hi, start;
  };
  VOXTRAL_AVX512BW_INLINE static Q4 q4(__m512i c_lo, __m512i c_hi) {
    const __m512i ones = _mm512_set1_epi8(1), eight = _mm512_set1_epi8(8);
    const __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(c_lo, ones), _mm512_maddubs_epi16(c_hi, ones));
    const __m512i start = _mm512_add_epi32(_mm512_madd_epi16(pairs, _mm512_set1_epi16(-128)), _mm512_set1_epi32(8192));
    return {_mm512_sub_epi8(c_lo, eight), _mm512_sub_epi8(c_hi, eight), start};
  }
  VOXTRAL_AVX512BW_INLINE static __m512i lanes(const Q4& w, __m512i a_lo, __m512i a_hi) {
    const __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(a_lo, w.lo), _mm512_maddubs_epi16(a_hi, w.hi));
    return _mm512_add_epi32(_mm512_madd_epi16(pairs, _mm512_set1_epi16(1)), w.start);
  }
};

// One group (4 blocks) per step; each row has one accumulator per code vector, so its sum
// goes in the same order whatever ROWS is.
#define VOXTRAL_Q8_BODY(Ops)                                                                              \
  __m512 acc[ROWS][2];                                                                                    \
  for (auto& a : acc) a[0] = a[1] = _mm512_setzero_ps();                                                  \
  const __m512i first = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);                 \
  const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(2));                                   \
  const std::int64_t blocks = n / kQuantBlock;                                                            \
  for (std::int64_t b = 0; b < blocks; b += kGroupBlocks) {                                               \
    const std::int64_t left_bytes = (blocks - b) * kQuantBlock;                                           \
    const auto w0 = Ops::q8(load_codes(codes + b * kQuantBlock, left_bytes));                             \
    const auto w1 = Ops::q8(load_codes(codes + b * kQuantBlock + 64, left_bytes - 64));                   \
    const __m512 d4 = group_scales(scales + b, blocks - b);                                               \
    const __m512 d0 = _mm512_permutexvar_ps(first, d4), d1 = _mm512_permutexvar_ps(second, d4);           \
    for (int r = 0; r < ROWS; ++r) {                                                                      \
      const std::uint8_t* v = x[r].values + b * kQuantBlock;                                              \
      const float* s = x[r].scales + b * 8;                                                               \
      acc[r][0] = scale_add(Ops::lanes(w0, _mm512_loadu_si512(v)), d0, s, acc[r][0]);                     \
      acc[r][1] = scale_add(Ops::lanes(w1, _mm512_loadu_si512(v + 64)), d1, s + 16, acc[r][1]);           \
    }                                                                                                     \
  }                                                                                                       \
  for (int r = 0; r < ROWS; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));

#define VOXTRAL_Q4_BODY(Ops)                                                                              \
  __m512 acc[ROWS];                                                                                       \
  for (auto& a : acc) a = _mm512_setzero_ps();                                                            \
  const __m512i quarter = _mm512_srli_epi32(                                                              \
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2);                         \
  const __m512i nibble = _mm512_set1_epi8(0x0f);                                                          \
  const std::int64_t blocks = n / kQuantBlock;                                                            \
  for (std::int64_t b = 0; b < blocks; b += kGroupBlocks) {                                               \
    const __m512i raw = load_codes(codes + b * 16, (blocks - b) * 16);                                    \
    const auto w = Ops::q4(_mm512_and_si512(raw, nibble), _mm512_and_si512(_mm512_srli_epi16(raw, 4), nibble)); \
    const __m512 d = _mm512_permutexvar_ps(quarter, group_scales(scales + b, blocks - b));                \
    for (int r = 0; r < ROWS; ++r) {                                                                      \
      const std::uint8_t* v = x[r].values + b * kQuantBlock;                                              \
      const __m512i lanes = Ops::lanes(w, _mm512_loadu_si512(v), _mm512_loadu_si512(v + 64));             \
      acc[r] = scale_add(lanes, d, x[r].scales + b * 4, acc[r]);                                          \
    }                                                                                                     \
  }                                                                                                       \
  for (int r = 0; r < ROWS; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);

// The kernels, one per format and way, ROWS a template argument so that the accumulators
// stay in registers.
#define VOXTRAL_INT8_KERNEL(Name, Target, Body, Ops)                                                 \
  struct Name {                                                                                     \
    template <int ROWS>                                                                             \
    Target static void run(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, \
                           std::int64_t n, float* out) {                                            \
      Body(Ops)                                                                                     \
    }                                                                                               \
  };
VOXTRAL_INT8_KERNEL(Q8Vnni, VOXTRAL_VNNI, VOXTRAL_Q8_BODY, Vnni)
VOXTRAL_INT8_KERNEL(Q4Vnni, VOXTRAL_VNNI, VOXTRAL_Q4_BODY, Vnni)
VOXTRAL_INT8_KERNEL(Q8MaddUbs, VOXTRAL_AVX512BW, VOXTRAL_Q8_BODY, MaddUbs)
VOXTRAL_INT8_KERNEL(Q4MaddUbs, VOXTRAL_AVX512BW, VOXTRAL_Q4_BODY, MaddUbs)
#undef VOXTRAL_INT8_KERNEL
#undef VOXTRAL_Q8_BODY
#undef VOXTRAL_Q4_BODY

template <class K>
void by_rows(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x, int rows, std::int64_t n,
             float* out) {
  switch (rows) {
    case 1: return K::template run<1>(codes, scales, x, n, out);
    case 2: return K::template run<2>(codes, scales, x, n, out);
    case 3: return K::template run<3>(codes, scales, x, n, out);
    case 4: return K::template run<4>(codes, scales, x, n, out);
    case 5: return K::template run<5>(codes, scales, x, n, out);
    case 6: return K::template run<6>(codes, scales, x, n, out);
    case 7: return K::template run<7>(codes, scales, x, n, out);
    default: return K::template run<8>(codes, scales, x, n, out);
  }
}

}  // namespace

Int8Kernels int8_kernels_avx512(bool with_vnni) {
  if (with_vnni) return {quantize_avx512, by_rows<Q8Vnni>, by_rows<Q4Vnni>};
  return {quantize_avx512, by_rows<Q8MaddUbs>, by_rows<Q4MaddUbs>};
}

}  // namespace voxtral::simd
