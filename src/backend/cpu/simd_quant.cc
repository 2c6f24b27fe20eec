#include "backend/cpu/simd_quant.h"

// GCC 12's own AVX-512 headers trip these warnings (its _mm512_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <string_view>

#include "backend/cpu/simd.h"
#include "backend/cpu/simd_quant_int8.h"
#include "core/bf16.h"

namespace voxtral::simd {

namespace {

constexpr int kBlock = 32;

// ---------------------------------------------------------------- portable
// A block's 32 weights as floats: Q8 codes are int8; Q4 byte j holds codes j and j + 16.
inline void block_q8(const std::uint8_t* codes, float d, float* w) {
  for (int i = 0; i < kBlock; ++i) w[i] = d * static_cast<float>(static_cast<std::int8_t>(codes[i]));
}
inline void block_q4(const std::uint8_t* codes, float d, float* w) {
  for (int j = 0; j < kBlock / 2; ++j) {
    w[j] = d * static_cast<float>((codes[j] & 0x0f) - 8);
    w[j + kBlock / 2] = d * static_cast<float>((codes[j] >> 4) - 8);
  }
}

// Eight partial sums per row, as simd.cc's portable kernels.
template <void (*Block)(const std::uint8_t*, float, float*), int BlockBytes>
void dot_rows_generic(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x, int rows,
                      std::int64_t n, float* out) {
  float acc[kQuantRows][8] = {};
  float w[kBlock];
  for (std::int64_t b = 0; b < n / kBlock; ++b) {
    Block(codes + b * BlockBytes, f16_to_float(scales[b]), w);
    for (int r = 0; r < rows; ++r) {
      const float* xr = x[r] + b * kBlock;
      for (int i = 0; i < kBlock; i += 8) {
        for (int u = 0; u < 8; ++u) acc[r][u] += w[i + u] * xr[i + u];
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    const float* a = acc[r];
    out[r] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  }
}

// ---------------------------------------------------------------- AVX2
#define VOXTRAL_AVX2 __attribute__((target("avx2,fma")))

// How far ahead the SIMD kernels prefetch the codes: turning them into floats keeps the core busy
// enough that the hardware prefetcher alone leaves it waiting on memory (2-core Zen 4, 4B model,
// exact step: Q4 125.1 -> 113.3 ms, Q8 168.6 -> 154.1 ms with AVX-512; BENCHMARKS.md).
constexpr std::int64_t kExactPrefetchBytes = 4096;

// Eight weights at a time (a quarter block).
VOXTRAL_AVX2 inline __m256 q8_eighth(const std::uint8_t* codes, __m256 d) {
  const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes));
  return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw)));
}

// Codes of Q4 inputs [8k, 8k + 8) of a block: the low nibbles of bytes 8k.. for k < 2, else
// the high nibbles of bytes 8(k - 2)..
VOXTRAL_AVX2 inline __m256 q4_eighth(const std::uint8_t* codes, int k, __m256 d) {
  const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + 8 * (k & 1)));
  __m256i c = _mm256_cvtepu8_epi32(raw);
  c = k < 2 ? _mm256_and_si256(c, _mm256_set1_epi32(0x0f)) : _mm256_srli_epi32(c, 4);
  return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(c, _mm256_set1_epi32(8))));
}

template <int ROWS, bool Q4>
VOXTRAL_AVX2 void dot_block_avx2(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x,
                                 std::int64_t n, float* out) {
  __m256 acc[ROWS][2];
  for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
  for (std::int64_t b = 0; b < n / kBlock; ++b) {
    const std::int64_t bytes = b * (Q4 ? 16 : 32);  // the line kExactPrefetchBytes on, once per line
    if (bytes % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(codes + bytes + kExactPrefetchBytes), _MM_HINT_T0);
    const __m256 d = _mm256_set1_ps(f16_to_float(scales[b]));
    for (int k = 0; k < 4; ++k) {
      const __m256 w = Q4 ? q4_eighth(codes + b * 16, k, d) : q8_eighth(codes + b * 32 + 8 * k, d);
      for (int r = 0; r < ROWS; ++r) {
        acc[r][k & 1] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[r] + b * kBlock + 8 * k), acc[r][k & 1]);
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    const __m256 s = _mm256_add_ps(acc[r][0], acc[r][1]);
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
    out[r] = _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps(q, q, 1)));
  }
}

// ---------------------------------------------------------------- AVX-512
#define VOXTRAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

template <int ROWS, bool Q4>
VOXTRAL_AVX512 void dot_block_avx512(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x,
                                     std::int64_t n, float* out) {
  __m512 acc[ROWS][2];
  for (auto& a : acc) a[0] = a[1] = _mm512_setzero_ps();
  // Q4: a block's 16 possible weights d * (c - 8) form a table the codes index.
  const __m512 levels = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  const std::int64_t blocks = n / kBlock;
  for (std::int64_t b0 = 0; b0 < blocks; b0 += 16) {
    alignas(64) float d[16];
    const std::int64_t count = blocks - b0 < 16 ? blocks - b0 : 16;
    if (count == 16) {
      _mm512_store_ps(d, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + b0))));
    } else {
      for (std::int64_t i = 0; i < count; ++i) d[i] = f16_to_float(scales[b0 + i]);
    }
    for (std::int64_t b = b0; b < b0 + count; ++b) {
      // The line kExactPrefetchBytes on, once per line (4 Q4 blocks, 2 Q8 ones).
      const std::int64_t bytes = b * (Q4 ? 16 : 32);
      if (bytes % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(codes + bytes + kExactPrefetchBytes), _MM_HINT_T0);
      const __m512 scale = _mm512_set1_ps(d[b - b0]);
      __m512 w0, w1;
      if constexpr (Q4) {
        const __m512 table = _mm512_mul_ps(scale, levels);
        const __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + b * 16)));
        w0 = _mm512_permutexvar_ps(_mm512_and_si512(c, _mm512_set1_epi32(0x0f)), table);
        w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(c, 4), table);
      } else {
        const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + b * 32));
        w0 = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(raw))));
        w1 = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(raw, 1))));
      }
      for (int r = 0; r < ROWS; ++r) {
        acc[r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[r] + b * kBlock), acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x[r] + b * kBlock + 16), acc[r][1]);
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]));
}

// The row count as a template argument keeps the accumulators in registers.
#define VOXTRAL_ROWS_SWITCH(fn, Q4)                                   \
  switch (rows) {                                                     \
    case 1: return fn<1, Q4>(codes, scales, x, n, out);               \
    case 2: return fn<2, Q4>(codes, scales, x, n, out);               \
    case 3: return fn<3, Q4>(codes, scales, x, n, out);               \
    case 4: return fn<4, Q4>(codes, scales, x, n, out);               \
    case 5: return fn<5, Q4>(codes, scales, x, n, out);               \
    case 6: return fn<6, Q4>(codes, scales, x, n, out);               \
    case 7: return fn<7, Q4>(codes, scales, x, n, out);               \
    default: return fn<8, Q4>(codes, scales, x, n, out);              \
  }

template <bool Q4>
VOXTRAL_AVX512 void dot_rows_avx512(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x,
                                    int rows, std::int64_t n, float* out) {
  VOXTRAL_ROWS_SWITCH(dot_block_avx512, Q4)
}

template <bool Q4>
VOXTRAL_AVX2 void dot_rows_avx2(const std::uint8_t* codes, const std::uint16_t* scales, const float* const* x,
                                int rows, std::int64_t n, float* out) {
  VOXTRAL_ROWS_SWITCH(dot_block_avx2, Q4)
}

#undef VOXTRAL_ROWS_SWITCH

// The same level as simd.h's kernels (one decision, VOXTRAL_CPU_KERNELS included).
QuantKernels choose() {
  const Kernels& level = kernels();
  const std::string_view name = level.name;
  QuantKernels k;
  Int8Kernels fast;
  if (name.starts_with("avx512")) {
    k = {dot_rows_avx512<false>, dot_rows_avx512<true>, nullptr, nullptr, nullptr, level.vnni ? "avx512vnni" : "avx512"};
    fast = int8_kernels_avx512(level.vnni);
  } else if (name == "avx2") {
    k = {dot_rows_avx2<false>, dot_rows_avx2<true>, nullptr, nullptr, nullptr, "avx2"};
    fast = int8_kernels_avx2();
  } else {
    k = {dot_rows_generic<block_q8, 32>, dot_rows_generic<block_q4, 16>, nullptr, nullptr, nullptr, "generic"};
    fast = int8_kernels_generic();
  }
  k.quantize_activations = fast.quantize;
  k.dot_rows_q8_int8 = fast.dot_q8;
  k.dot_rows_q4_int8 = fast.dot_q4;
  return k;
}

}  // namespace

const QuantKernels& quant_kernels() {
  static const QuantKernels k = choose();
  return k;
}

}  // namespace voxtral::simd
