#include "backend/cpu/simd.h"

// GCC 12's own AVX-512 headers trip these warnings (its _mm512_undefined_* idiom).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace voxtral::simd {

namespace {

inline float bf16(std::uint16_t v) { return std::bit_cast<float>(static_cast<std::uint32_t>(v) << 16); }

// ---------------------------------------------------------------- portable
// Eight partial sums give the compiler independent lanes to vectorise without reassociation.
float dot_generic(const float* a, const float* b, std::int64_t n) {
  float acc[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int u = 0; u < 8; ++u) acc[u] += a[i + u] * b[i + u];
  }
  float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

void axpy_generic(float alpha, const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <typename W, float (*Load)(W)>
void dot_rows_generic(const W* w, const float* const* x, int rows, std::int64_t n, float* out) {
  for (int r = 0; r < rows; ++r) {
    float acc[8] = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      for (int u = 0; u < 8; ++u) acc[u] += Load(w[i + u]) * x[r][i + u];
    }
    float sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) sum += Load(w[i]) * x[r][i];
    out[r] = sum;
  }
}

inline float load_f32(float v) { return v; }

void dot2_rows_bf16_generic(const std::uint16_t* w0, const std::uint16_t* w1, const float* const* x, int rows,
                            std::int64_t n, float* out0, float* out1) {
  dot_rows_generic<std::uint16_t, bf16>(w0, x, rows, n, out0);
  dot_rows_generic<std::uint16_t, bf16>(w1, x, rows, n, out1);
}

void widen_generic(const std::uint16_t* in, float* out, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = bf16(in[i]);
}

// ---------------------------------------------------------------- AVX2 + FMA
#define VOXTRAL_AVX2 __attribute__((target("avx2,fma")))

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

VOXTRAL_AVX2 inline __m256 load8_f32(const float* p) { return _mm256_loadu_ps(p); }

// As the AVX-512 kernels below: counts as template arguments, registers for accumulators.
template <int WROWS, int ROWS, typename W, __m256 (*Load8)(const W*), float (*Load1)(W)>
VOXTRAL_AVX2 void dot_block_avx2(const W* const* w, const float* const* x, std::int64_t n, float* const* out) {
  __m256 acc[WROWS][ROWS];
  for (auto& a : acc) {
    for (auto& b : a) b = _mm256_setzero_ps();
  }
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 wv[WROWS];
    for (int v = 0; v < WROWS; ++v) wv[v] = Load8(w[v] + i);
    for (int r = 0; r < ROWS; ++r) {
      const __m256 xv = _mm256_loadu_ps(x[r] + i);
      for (int v = 0; v < WROWS; ++v) acc[v][r] = _mm256_fmadd_ps(wv[v], xv, acc[v][r]);
    }
  }
  for (int v = 0; v < WROWS; ++v) {
    for (int r = 0; r < ROWS; ++r) {
      float sum = hsum256(acc[v][r]);
      for (std::int64_t j = i; j < n; ++j) sum += Load1(w[v][j]) * x[r][j];
      out[v][r] = sum;
    }
  }
}

template <int WROWS, typename W, __m256 (*Load8)(const W*), float (*Load1)(W)>
VOXTRAL_AVX2 void dot_rows_avx2_w(const W* const* w, const float* const* x, int rows, std::int64_t n, float* const* out) {
  switch (rows) {
    case 1: return dot_block_avx2<WROWS, 1, W, Load8, Load1>(w, x, n, out);
    case 2: return dot_block_avx2<WROWS, 2, W, Load8, Load1>(w, x, n, out);
    case 3: return dot_block_avx2<WROWS, 3, W, Load8, Load1>(w, x, n, out);
    default: return dot_block_avx2<WROWS, 4, W, Load8, Load1>(w, x, n, out);
  }
}

template <typename W, __m256 (*Load8)(const W*), float (*Load1)(W)>
VOXTRAL_AVX2 void dot_rows_avx2(const W* w, const float* const* x, int rows, std::int64_t n, float* out) {
  const W* ws[1] = {w};
  float* outs[1] = {out};
  dot_rows_avx2_w<1, W, Load8, Load1>(ws, x, rows, n, outs);
}

VOXTRAL_AVX2 void dot2_rows_bf16_avx2(const std::uint16_t* w0, const std::uint16_t* w1, const float* const* x, int rows,
                                      std::int64_t n, float* out0, float* out1) {
  const std::uint16_t* ws[2] = {w0, w1};
  float* outs[2] = {out0, out1};
  dot_rows_avx2_w<2, std::uint16_t, load8_bf16, bf16>(ws, x, rows, n, outs);
}

VOXTRAL_AVX2 void widen_avx2(const std::uint16_t* in, float* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8_bf16(in + i));
  for (; i < n; ++i) out[i] = bf16(in[i]);
}

// ---------------------------------------------------------------- AVX-512
#define VOXTRAL_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

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

VOXTRAL_AVX512 inline __m512 load16_bf16(const std::uint16_t* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

VOXTRAL_AVX512 inline __m512 load16_f32(const float* p) { return _mm512_loadu_ps(p); }

// Two 16-wide steps per iteration keep two independent weight loads in flight. The counts of
// weight rows (WROWS) and activation rows (ROWS) are template arguments so that the
// accumulators stay in registers; two weight rows share each activation load, which halves
// the activation traffic of a many-row step (the activations of a wide matrix outgrow L1).
// Every (weight row, activation row) pair is summed in the same order whatever the counts.
template <int WROWS, int ROWS, typename W, __m512 (*Load16)(const W*), float (*Load1)(W)>
VOXTRAL_AVX512 void dot_block_avx512(const W* const* w, const float* const* x, std::int64_t n, float* const* out) {
  __m512 acc[WROWS][ROWS][2];
  for (auto& a : acc) {
    for (auto& b : a) b[0] = b[1] = _mm512_setzero_ps();
  }
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m512 w0[WROWS], w1[WROWS];
    for (int v = 0; v < WROWS; ++v) {
      w0[v] = Load16(w[v] + i);
      w1[v] = Load16(w[v] + i + 16);
    }
    for (int r = 0; r < ROWS; ++r) {
      const __m512 x0 = _mm512_loadu_ps(x[r] + i), x1 = _mm512_loadu_ps(x[r] + i + 16);
      for (int v = 0; v < WROWS; ++v) {
        acc[v][r][0] = _mm512_fmadd_ps(w0[v], x0, acc[v][r][0]);
        acc[v][r][1] = _mm512_fmadd_ps(w1[v], x1, acc[v][r][1]);
      }
    }
  }
  for (; i + 16 <= n; i += 16) {
    for (int v = 0; v < WROWS; ++v) {
      const __m512 w0 = Load16(w[v] + i);
      for (int r = 0; r < ROWS; ++r) acc[v][r][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x[r] + i), acc[v][r][0]);
    }
  }
  for (int v = 0; v < WROWS; ++v) {
    for (int r = 0; r < ROWS; ++r) {
      float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc[v][r][0], acc[v][r][1]));
      for (std::int64_t j = i; j < n; ++j) sum += Load1(w[v][j]) * x[r][j];
      out[v][r] = sum;
    }
  }
}

template <int WROWS, typename W, __m512 (*Load16)(const W*), float (*Load1)(W)>
VOXTRAL_AVX512 void dot_rows_avx512_w(const W* const* w, const float* const* x, int rows, std::int64_t n, float* const* out) {
  switch (rows) {
    case 1: return dot_block_avx512<WROWS, 1, W, Load16, Load1>(w, x, n, out);
    case 2: return dot_block_avx512<WROWS, 2, W, Load16, Load1>(w, x, n, out);
    case 3: return dot_block_avx512<WROWS, 3, W, Load16, Load1>(w, x, n, out);
    default: return dot_block_avx512<WROWS, 4, W, Load16, Load1>(w, x, n, out);
  }
}

template <typename W, __m512 (*Load16)(const W*), float (*Load1)(W)>
VOXTRAL_AVX512 void dot_rows_avx512(const W* w, const float* const* x, int rows, std::int64_t n, float* out) {
  const W* ws[1] = {w};
  float* outs[1] = {out};
  dot_rows_avx512_w<1, W, Load16, Load1>(ws, x, rows, n, outs);
}

VOXTRAL_AVX512 void dot2_rows_bf16_avx512(const std::uint16_t* w0, const std::uint16_t* w1, const float* const* x, int rows,
                                          std::int64_t n, float* out0, float* out1) {
  const std::uint16_t* ws[2] = {w0, w1};
  float* outs[2] = {out0, out1};
  dot_rows_avx512_w<2, std::uint16_t, load16_bf16, bf16>(ws, x, rows, n, outs);
}

VOXTRAL_AVX512 void widen_avx512(const std::uint16_t* in, float* out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load16_bf16(in + i));
  for (; i < n; ++i) out[i] = bf16(in[i]);
}

Kernels choose() {
  __builtin_cpu_init();
  // VOXTRAL_CPU_KERNELS=avx2|generic forces a narrower set (the tests run each one).
  const char* forced = std::getenv("VOXTRAL_CPU_KERNELS");
  const std::string_view limit = forced != nullptr ? forced : "";
  const bool allow512 = limit.empty() || limit == "avx512";
  const bool allow2 = allow512 || limit == "avx2";
  if (allow512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) {
    return {dot_avx512, axpy_avx512, dot_rows_avx512<std::uint16_t, load16_bf16, bf16>, dot2_rows_bf16_avx512,
            dot_rows_avx512<float, load16_f32, load_f32>, widen_avx512, "avx512"};
  }
  if (allow2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    return {dot_avx2, axpy_avx2, dot_rows_avx2<std::uint16_t, load8_bf16, bf16>, dot2_rows_bf16_avx2,
            dot_rows_avx2<float, load8_f32, load_f32>, widen_avx2, "avx2"};
  }
  return {dot_generic, axpy_generic, dot_rows_generic<std::uint16_t, bf16>, dot2_rows_bf16_generic,
          dot_rows_generic<float, load_f32>,
          widen_generic, "generic"};
}

}  // namespace

const Kernels& kernels() {
  static const Kernels chosen = choose();
  return chosen;
}

}  // namespace voxtral::simd
