// The attention steps of simd_attention.h for each kernel set: AVX-512 (one register holds
// the 16 lanes), AVX2 (two), and portable C++.
#include "backend/cpu/simd_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include "backend/cpu/simd.h"

// GCC 12's own vector headers trip these warnings (its _mm*_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define VOXTRAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define VOXTRAL_AVX2 __attribute__((target("avx2,fma")))
#define VOXTRAL_UNROLL _Pragma("GCC unroll 16")

namespace voxtral::simd {

namespace {

constexpr int kLanes = kAttentionLanes;

// Hides where a pointer came from. Without it GCC rewrites v[j] (v = values[t] + d0) as
// values[t] + offset_j with one register per j, and spills those offsets (2.5x slower).
template <typename T>
inline T* opaque(T* p) {
  __asm__("" : "+r"(p));
  return p;
}

// exp(x) = 2^n exp(r) with n = round(x log2(e)) and |r| <= ln(2)/2, r taken in two steps
// (ln 2 split so that n * ln2_hi is exact); exp(r) by the degree-7 polynomial of Cephes'
// expf (its published coefficients), within 2 ulp of the true value.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                              4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// ---------------------------------------------------------------- AVX-512

VOXTRAL_AVX512 inline __m512 exp_avx512(__m512 x) {
  // Below -110, exp underflows past F32's smallest subnormal: scalef then gives exactly 0
  // (-inf included).
  x = _mm512_max_ps(x, _mm512_set1_ps(-110.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[i]));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

VOXTRAL_AVX512 void scores_avx512(const float* q, const float* const* keys, std::int64_t count, int dim, float scale,
                                  float* scores) {
  constexpr int kKeys = 8;  // independent accumulators, to cover the FMA latency
  const __m512 s = _mm512_set1_ps(scale);
  std::int64_t t = 0;
  for (; t + kKeys <= count; t += kKeys) {
    __m512 acc[kKeys];
    VOXTRAL_UNROLL for (int j = 0; j < kKeys; ++j) acc[j] = _mm512_setzero_ps();
    for (int d = 0; d < dim; ++d) {
      const __m512 qd = _mm512_loadu_ps(q + d * kLanes);
      VOXTRAL_UNROLL for (int j = 0; j < kKeys; ++j) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(keys[t + j][d]), qd, acc[j]);
    }
    VOXTRAL_UNROLL for (int j = 0; j < kKeys; ++j) _mm512_storeu_ps(scores + (t + j) * kLanes, _mm512_mul_ps(acc[j], s));
  }
  for (; t < count; ++t) {
    __m512 acc = _mm512_setzero_ps();
    for (int d = 0; d < dim; ++d) acc = _mm512_fmadd_ps(_mm512_set1_ps(keys[t][d]), _mm512_loadu_ps(q + d * kLanes), acc);
    _mm512_storeu_ps(scores + t * kLanes, _mm512_mul_ps(acc, s));
  }
}

VOXTRAL_AVX512 void softmax_avx512(float* scores, std::int64_t count, float* sums) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (std::int64_t t = 0; t < count; ++t) m = _mm512_max_ps(m, _mm512_loadu_ps(scores + t * kLanes));
  __m512 sum = _mm512_setzero_ps();
  for (std::int64_t t = 0; t < count; ++t) {
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(scores + t * kLanes), m));
    _mm512_storeu_ps(scores + t * kLanes, e);
    sum = _mm512_add_ps(sum, e);
  }
  _mm512_storeu_ps(sums, sum);
}

VOXTRAL_AVX512 void weighted_sum_avx512(const float* weights, const float* const* values, std::int64_t count, int dim,
                                        float* out) {
  constexpr int kDims = 16;  // accumulators: one per output element of the chunk
  int d0 = 0;
  for (; d0 + kDims <= dim; d0 += kDims) {
    __m512 acc[kDims];
    VOXTRAL_UNROLL for (int j = 0; j < kDims; ++j) acc[j] = _mm512_setzero_ps();
    for (std::int64_t t = 0; t < count; ++t) {
      const __m512 w = _mm512_loadu_ps(weights + t * kLanes);
      const float* v = opaque(values[t] + d0);
      VOXTRAL_UNROLL for (int j = 0; j < kDims; ++j) acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(v[j]), w, acc[j]);
    }
    VOXTRAL_UNROLL for (int j = 0; j < kDims; ++j) _mm512_storeu_ps(out + (d0 + j) * kLanes, acc[j]);
  }
  for (; d0 < dim; ++d0) {
    __m512 acc = _mm512_setzero_ps();
    for (std::int64_t t = 0; t < count; ++t) {
      acc = _mm512_fmadd_ps(_mm512_set1_ps(values[t][d0]), _mm512_loadu_ps(weights + t * kLanes), acc);
    }
    _mm512_storeu_ps(out + d0 * kLanes, acc);
  }
}

// ---------------------------------------------------------------- AVX2: lanes 0-7 and 8-15

VOXTRAL_AVX2 inline __m256 exp_avx2(__m256 x) {
  // 2^n is built in the exponent field, so n stays >= -126: below ln(FLT_MIN) the result is
  // taken as 0 (the true value, under 1.2e-38, is lost next to the row's largest weight, 1).
  const __m256 low = _mm256_set1_ps(-87.33654f);
  const __m256 below = _mm256_cmp_ps(x, low, _CMP_LT_OQ);
  x = _mm256_max_ps(x, low);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[i]));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(below, _mm256_mul_ps(p, _mm256_castsi256_ps(bits)));
}

VOXTRAL_AVX2 void scores_avx2(const float* q, const float* const* keys, std::int64_t count, int dim, float scale,
                              float* scores) {
  constexpr int kKeys = 4;
  const __m256 s = _mm256_set1_ps(scale);
  std::int64_t t = 0;
  for (; t < count; t += kKeys) {
    const int n = static_cast<int>(std::min<std::int64_t>(kKeys, count - t));
    __m256 acc[kKeys][2];
    VOXTRAL_UNROLL for (int j = 0; j < kKeys; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    const float* k[kKeys];
    VOXTRAL_UNROLL for (int j = 0; j < kKeys; ++j) k[j] = keys[t + std::min(j, n - 1)];
    for (int d = 0; d < dim; ++d) {
      const __m256 q0 = _mm256_loadu_ps(q + d * kLanes), q1 = _mm256_loadu_ps(q + d * kLanes + 8);
      VOXTRAL_UNROLL for (int j = 0; j < kKeys; ++j) {
        const __m256 b = _mm256_broadcast_ss(k[j] + d);
        acc[j][0] = _mm256_fmadd_ps(b, q0, acc[j][0]);
        acc[j][1] = _mm256_fmadd_ps(b, q1, acc[j][1]);
      }
    }
    for (int j = 0; j < n; ++j) {
      _mm256_storeu_ps(scores + (t + j) * kLanes, _mm256_mul_ps(acc[j][0], s));
      _mm256_storeu_ps(scores + (t + j) * kLanes + 8, _mm256_mul_ps(acc[j][1], s));
    }
  }
}

VOXTRAL_AVX2 void softmax_avx2(float* scores, std::int64_t count, float* sums) {
  for (int half = 0; half < 2; ++half) {
    float* s = scores + half * 8;
    __m256 m = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    for (std::int64_t t = 0; t < count; ++t) m = _mm256_max_ps(m, _mm256_loadu_ps(s + t * kLanes));
    __m256 sum = _mm256_setzero_ps();
    for (std::int64_t t = 0; t < count; ++t) {
      const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(s + t * kLanes), m));
      _mm256_storeu_ps(s + t * kLanes, e);
      sum = _mm256_add_ps(sum, e);
    }
    _mm256_storeu_ps(sums + half * 8, sum);
  }
}

VOXTRAL_AVX2 void weighted_sum_avx2(const float* weights, const float* const* values, std::int64_t count, int dim,
                                    float* out) {
  constexpr int kDims = 6;
  for (int d0 = 0; d0 < dim; d0 += kDims) {
    const int n = std::min(kDims, dim - d0);
    __m256 acc[kDims][2];
    VOXTRAL_UNROLL for (int j = 0; j < kDims; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
    for (std::int64_t t = 0; t < count; ++t) {
      const __m256 w0 = _mm256_loadu_ps(weights + t * kLanes), w1 = _mm256_loadu_ps(weights + t * kLanes + 8);
      const float* v = opaque(values[t] + d0);
      VOXTRAL_UNROLL for (int j = 0; j < kDims; ++j) {
        const __m256 b = _mm256_broadcast_ss(v + std::min(j, n - 1));
        acc[j][0] = _mm256_fmadd_ps(b, w0, acc[j][0]);
        acc[j][1] = _mm256_fmadd_ps(b, w1, acc[j][1]);
      }
    }
    for (int j = 0; j < n; ++j) {
      _mm256_storeu_ps(out + (d0 + j) * kLanes, acc[j][0]);
      _mm256_storeu_ps(out + (d0 + j) * kLanes + 8, acc[j][1]);
    }
  }
}

// ---------------------------------------------------------------- portable

void scores_generic(const float* q, const float* const* keys, std::int64_t count, int dim, float scale, float* scores) {
  for (std::int64_t t = 0; t < count; ++t) {
    float acc[kLanes] = {};
    for (int d = 0; d < dim; ++d) {
      for (int l = 0; l < kLanes; ++l) acc[l] += keys[t][d] * q[d * kLanes + l];
    }
    for (int l = 0; l < kLanes; ++l) scores[t * kLanes + l] = acc[l] * scale;
  }
}

void softmax_generic(float* scores, std::int64_t count, float* sums) {
  for (int l = 0; l < kLanes; ++l) {
    float m = -std::numeric_limits<float>::infinity();
    for (std::int64_t t = 0; t < count; ++t) m = std::max(m, scores[t * kLanes + l]);
    float sum = 0;
    for (std::int64_t t = 0; t < count; ++t) {
      float& s = scores[t * kLanes + l];
      s = std::exp(s - m);
      sum += s;
    }
    sums[l] = sum;
  }
}

void weighted_sum_generic(const float* weights, const float* const* values, std::int64_t count, int dim, float* out) {
  std::fill_n(out, static_cast<std::size_t>(dim) * kLanes, 0.0f);
  for (std::int64_t t = 0; t < count; ++t) {
    for (int d = 0; d < dim; ++d) {
      for (int l = 0; l < kLanes; ++l) out[d * kLanes + l] += values[t][d] * weights[t * kLanes + l];
    }
  }
}

// The same level as simd.h's kernels (one decision, VOXTRAL_CPU_KERNELS included).
AttentionKernels choose() {
  const std::string_view level = kernels().name;
  if (level.starts_with("avx512")) return {scores_avx512, softmax_avx512, weighted_sum_avx512};
  if (level == "avx2") return {scores_avx2, softmax_avx2, weighted_sum_avx2};
  return {scores_generic, softmax_generic, weighted_sum_generic};
}

}  // namespace

const AttentionKernels& attention_kernels() {
  static const AttentionKernels chosen = choose();
  return chosen;
}

}  // namespace voxtral::simd
