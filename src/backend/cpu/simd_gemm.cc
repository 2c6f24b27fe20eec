// The portable tiles (8 activation rows by up to 4 weight rows, plain C++ the compiler may
// vectorise across the lanes) and the choice of a set.
#include <bit>
#include <span>
#include <string_view>

#include "backend/cpu/simd.h"
#include "backend/cpu/simd_gemm_sets.h"
#include "core/bf16.h"
#include "core/quant.h"

namespace voxtral::simd {

namespace {

constexpr int kLanes = 8;
constexpr int kRows = 4;

void tile_f32_generic(const float* const* w, int wrows, const float* panel, std::int64_t n, float* tile) {
  for (int v = 0; v < wrows; ++v) {
    float acc[kLanes] = {};
    for (std::int64_t k = 0; k < n; ++k) {
      const float b = w[v][k];
      for (int l = 0; l < kLanes; ++l) acc[l] += b * panel[k * kLanes + l];
    }
    for (int l = 0; l < kLanes; ++l) tile[v * kLanes + l] = acc[l];
  }
}

float low_half(std::uint32_t pair) { return std::bit_cast<float>(pair << 16); }
float high_half(std::uint32_t pair) { return std::bit_cast<float>(pair & 0xffff0000u); }

void tile_pairs_generic(const std::uint16_t* const* w, int wrows, const std::uint32_t* panel, std::int64_t pairs,
                        float* tile) {
  for (int v = 0; v < wrows; ++v) {
    float acc[kLanes] = {};
    for (std::int64_t p = 0; p < pairs; ++p) {
      const float even = bf16_to_float(w[v][2 * p]), odd = bf16_to_float(w[v][2 * p + 1]);
      for (int l = 0; l < kLanes; ++l) {
        const std::uint32_t x = panel[p * kLanes + l];
        acc[l] += odd * high_half(x);
        acc[l] += even * low_half(x);
      }
    }
    for (int l = 0; l < kLanes; ++l) tile[v * kLanes + l] = acc[l];
  }
}

std::size_t count(std::int64_t n) { return static_cast<std::size_t>(n); }

void dequantize_q8_generic(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n, float* out) {
  dequantize_row(WeightFormat::Q8, {codes, count(n)}, {scales, count(n / kQuantBlock)}, {out, count(n)});
}

void dequantize_q4_generic(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n, float* out) {
  dequantize_row(WeightFormat::Q4, {codes, count(n / 2)}, {scales, count(n / kQuantBlock)}, {out, count(n)});
}

// The same level as simd.h's kernels (one decision, VOXTRAL_CPU_KERNELS included).
GemmKernels choose() {
  const std::string_view level = kernels().name;
  if (kernels().amx) return amx_gemm_kernels();
  if (level.starts_with("avx512")) return avx512_gemm_kernels(level == "avx512bf16");
  if (level == "avx2") return avx2_gemm_kernels();
  return generic_gemm_kernels();
}

}  // namespace

GemmKernels generic_gemm_kernels() {
  return {kLanes,
          kRows,
          tile_f32_generic,
          tile_pairs_generic,
          dequantize_q8_generic,
          dequantize_q4_generic,
          dequantize_then_round<dequantize_q8_generic>,
          dequantize_then_round<dequantize_q4_generic>,
          "generic"};
}

const GemmKernels& gemm_kernels() {
  static const GemmKernels chosen = choose();
  return chosen;
}

}  // namespace voxtral::simd
