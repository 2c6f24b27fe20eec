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

VOXTRAL_AVX512BW void quantize_avx512(const float* x, std::int64_t n, std::uint8_t* values, float* scales) {
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
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(k, 0)), a0);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(group + value_position(k, 16)), a1);
    _mm_storeu_ps(scales + b * kScaleLanes, _mm_set1_ps(s));
  }
}

// A group's 4 weight scales as floats (0 past the row's end), from `left` > 0 blocks.
VOXTRAL_AVX512BW_INLINE __m512 group_scales(const std::uint16_t* scales, std::int64_t left) {
  const __m128i half = left >= kGroupBlocks
                           ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(scales))
                           : _mm_maskz_loadu_epi16(static_cast<__mmask8>((1u << left) - 1), scales);
  return _mm512_zextps128_ps512(_mm_cvtph_ps(half));
}

// `bytes` code bytes from p (the rest zero; nothing is read past them).
VOXTRAL_AVX512BW_INLINE __m512i load_codes(const std::uint8_t* p, std::int64_t bytes) {
  if (bytes >= 64) return _mm512_loadu_si512(p);
  if (bytes <= 0) return _mm512_setzero_si512();
  return _mm512_maskz_loadu_epi8(~0ull >> (64 - bytes), p);
}

// A group's codes as the activation layout's two planes: inputs 0..15 of each of its 4
// blocks, then inputs 16..31 of each (zero codes past the row's end).
struct Planes {
  __m512i first, second;
};
// Q8: the 128-bit quarters of two vectors, interleaved (each quarter is half a block).
VOXTRAL_AVX512BW_INLINE Planes q8_planes(const std::uint8_t* codes, std::int64_t left_blocks) {
  const __m512i a = load_codes(codes, left_blocks * kQuantBlock);
  const __m512i b = load_codes(codes + 64, left_blocks * kQuantBlock - 64);
  return {_mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_i32x4(a, b, _MM_SHUFFLE(3, 1, 3, 1))};
}
// Q4: the low and the high nibbles of the group's 64 bytes, codes c in 0..15.
VOXTRAL_AVX512BW_INLINE Planes q4_planes(const std::uint8_t* codes, std::int64_t left_blocks) {
  const __m512i raw = load_codes(codes, left_blocks * 16), nibble = _mm512_set1_epi8(0x0f);
  return {_mm512_and_si512(raw, nibble), _mm512_and_si512(_mm512_srli_epi16(raw, 4), nibble)};
}

// The cache line of codes kCodePrefetchBytes on (past a row's end: the next row's, read next),
// asked for at each group's line (Q4: one line of 64 bytes; Q8: two). Busy with the products,
// the core otherwise waits on the hardware prefetcher: the 4B model's Q4 fast step took 86.9
// ms without, 80.1 with (2 Zen 4 cores, where Q8 gained nothing); on a 2-core AMX Xeon the
// Q8 LM head of a Q4 model gained 2% at one row and 6% at 4-8 rows (BENCHMARKS.md).
VOXTRAL_AVX512BW_INLINE void prefetch_codes(const std::uint8_t* group) {
  _mm_prefetch(reinterpret_cast<const char*>(group + kCodePrefetchBytes), _MM_HINT_T0);
}

// acc += lanes * (d * s): a vector of integer lane sums scaled by its blocks' d and s.
VOXTRAL_AVX512BW_INLINE __m512 scale_add(__m512i lanes, __m512 d, const float* s, __m512 acc) {
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(d, _mm512_loadu_ps(s)), acc);
}

// The integer lane sums of a group's codes with one activation row, two ways. weights()
// does the work shared by all rows, lanes() each row's.
struct Vnni {
  // The signed weights q (Q4: c - 8) and each lane's start, -128 sum q.
  struct Weights {
    __m512i first, second, start;
  };
  template <WeightFormat F>
  VOXTRAL_VNNI_INLINE static Weights weights(const std::uint8_t* codes, std::int64_t left_blocks) {
    const __m512i zero = _mm512_setzero_si512(), minus128 = _mm512_set1_epi8(-128);
    if constexpr (F == WeightFormat::Q8) {
      const Planes q = q8_planes(codes, left_blocks);
      const __m512i sums = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, minus128, q.first), minus128, q.second);
      return {q.first, q.second, _mm512_sub_epi32(zero, sums)};  // 0x80 is 128 as the unsigned operand
    } else {
      // -128 sum (c - 8) over a lane's 8 codes = 8192 - 128 sum c.
      const Planes c = q4_planes(codes, left_blocks);
      const __m512i eight = _mm512_set1_epi8(8);
      const __m512i start =
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_set1_epi32(8192), c.first, minus128), c.second, minus128);
      return {_mm512_sub_epi8(c.first, eight), _mm512_sub_epi8(c.second, eight), start};
    }
  }
  VOXTRAL_VNNI_INLINE static __m512i lanes(const Weights& w, __m512i a_first, __m512i a_second) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(w.start, a_first, w.first), a_second, w.second);
  }
};

struct MaddUbs {
  // Q8: |q| (unsigned) and where q < 0, the activation being negated there.
  struct Q8Weights {
    __m512i first, second;
    __mmask64 first_negative, second_negative;
  };
  // Q4: q = c - 8 and each lane's start, as Vnni's.
  struct Q4Weights {
    __m512i first, second, start;
  };
  template <WeightFormat F>
  VOXTRAL_AVX512BW_INLINE static auto weights(const std::uint8_t* codes, std::int64_t left_blocks) {
    if constexpr (F == WeightFormat::Q8) {
      const Planes q = q8_planes(codes, left_blocks);
      return Q8Weights{_mm512_abs_epi8(q.first), _mm512_abs_epi8(q.second), _mm512_movepi8_mask(q.first),
                       _mm512_movepi8_mask(q.second)};
    } else {
      const Planes c = q4_planes(codes, left_blocks);
      const __m512i ones = _mm512_set1_epi8(1), eight = _mm512_set1_epi8(8);
      const __m512i pairs = _mm512_add_epi16(_mm512_maddubs_epi16(c.first, ones), _mm512_maddubs_epi16(c.second, ones));
      const __m512i start =
          _mm512_add_epi32(_mm512_madd_epi16(pairs, _mm512_set1_epi16(-128)), _mm512_set1_epi32(8192));
      return Q4Weights{_mm512_sub_epi8(c.first, eight), _mm512_sub_epi8(c.second, eight), start};
    }
  }
  // |q| a' with a' = a negated where q < 0; each product pair in int16 (at most 2 * 128 * 127).
  VOXTRAL_AVX512BW_INLINE static __m512i signed_pairs(__m512i magnitude, __mmask64 negative, __m512i a_biased) {
    const __m512i a = _mm512_xor_si512(a_biased, _mm512_set1_epi8(static_cast<char>(0x80)));
    const __m512i signed_a = _mm512_mask_sub_epi8(a, negative, _mm512_setzero_si512(), a);
    return _mm512_madd_epi16(_mm512_maddubs_epi16(magnitude, signed_a), _mm512_set1_epi16(1));
  }
  VOXTRAL_AVX512BW_INLINE static __m512i lanes(const Q8Weights& w, __m512i a_first, __m512i a_second) {
    return _mm512_add_epi32(signed_pairs(w.first, w.first_negative, a_first),
                            signed_pairs(w.second, w.second_negative, a_second));
  }
  VOXTRAL_AVX512BW_INLINE static __m512i lanes(const Q4Weights& w, __m512i a_first, __m512i a_second) {
    const __m512i pairs =
        _mm512_add_epi16(_mm512_maddubs_epi16(a_first, w.first), _mm512_maddubs_epi16(a_second, w.second));
    return _mm512_add_epi32(_mm512_madd_epi16(pairs, _mm512_set1_epi16(1)), w.start);
  }
};

// One group (4 blocks, one vector of lane sums) per step, each row with one accumulator: a
// row's sum goes in the same order whatever ROWS is. ROWS is a template argument so that
// the accumulators stay in registers; each kernel is compiled for its own instructions.
#define VOXTRAL_INT8_KERNEL(Name, Target, Ops, Format)                                                      \
  struct Name {                                                                                            \
    template <int ROWS>                                                                                    \
    Target static void run(const std::uint8_t* codes, const std::uint16_t* scales, const Int8Row* x,        \
                           std::int64_t n, float* out) {                                                   \
      __m512 acc[ROWS];                                                                                    \
      for (auto& a : acc) a = _mm512_setzero_ps();                                                         \
      const __m512i quarter =                                                                              \
          _mm512_srli_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), 2);     \
      const std::int64_t blocks = n / kQuantBlock;                                                         \
      const std::int64_t block_bytes = static_cast<std::int64_t>(quantized_row_bytes(Format, kQuantBlock)); \
      for (std::int64_t b = 0; b < blocks; b += kGroupBlocks) {                                            \
        prefetch_codes(codes + b * block_bytes);                                                           \
        if constexpr (Format == WeightFormat::Q8) prefetch_codes(codes + b * block_bytes + 64);             \
        const auto w = Ops::template weights<Format>(codes + b * block_bytes, blocks - b);                 \
        const __m512 d = _mm512_permutexvar_ps(quarter, group_scales(scales + b, blocks - b));             \
        for (int r = 0; r < ROWS; ++r) {                                                                   \
          const std::uint8_t* v = x[r].values + b * kQuantBlock;                                           \
          const __m512i lanes = Ops::lanes(w, _mm512_loadu_si512(v), _mm512_loadu_si512(v + 64));          \
          acc[r] = scale_add(lanes, d, x[r].scales + b * kScaleLanes, acc[r]);                             \
        }                                                                                                  \
      }                                                                                                    \
      for (int r = 0; r < ROWS; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);                                \
    }                                                                                                      \
  };
VOXTRAL_INT8_KERNEL(Q8Vnni, VOXTRAL_VNNI, Vnni, WeightFormat::Q8)
VOXTRAL_INT8_KERNEL(Q4Vnni, VOXTRAL_VNNI, Vnni, WeightFormat::Q4)
VOXTRAL_INT8_KERNEL(Q8MaddUbs, VOXTRAL_AVX512BW, MaddUbs, WeightFormat::Q8)
VOXTRAL_INT8_KERNEL(Q4MaddUbs, VOXTRAL_AVX512BW, MaddUbs, WeightFormat::Q4)
#undef VOXTRAL_INT8_KERNEL

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
