// The kernel sets behind simd::kernels(), one file each, and the register blocking the
// vector sets share. Internal to the CPU backend.
#pragma once

#include "backend/cpu/simd.h"

namespace voxtral::simd {

Kernels generic_kernels();
Kernels avx2_kernels();
// with_bf16_instruction: dot_bf16_pairs through vdpbf16ps (the CPU must have AVX512_BF16).
Kernels avx512_kernels(bool with_bf16_instruction);
// The CPU has AMX-BF16 and the OS granted this process the tile state (simd_gemm_amx.cc).
bool amx_bf16_usable();

// Splits a dot_bf16 / dot_bf16_pairs call into register blocks. K::block<W, R> multiplies W
// weight rows by R activation rows with one accumulator register per pair, so each weight
// chunk is loaded (and widened) once for all R rows; W is the most weight rows whose
// accumulators fit (K::kAccumulators) up to K::kWeightRows. The sums do not depend on the
// blocking: each pair's accumulator sees the same chunks in the same order in every block.
template <class K, int W, int R = 1>
inline void run_block(const std::uint16_t* const* w, const typename K::X* const* x, int rows, std::int64_t n,
                      float* out, int ldo) {
  if constexpr (R <= kMaxRows && W * R <= K::kAccumulators) {
    if (rows == R) {
      K::template block<W, R>(w, x, n, out, ldo);
      return;
    }
    run_block<K, W, R + 1>(w, x, rows, n, out, ldo);
  }
}

template <class K>
void dot_blocks(const std::uint16_t* const* w, int wrows, const typename K::X* const* x, int rows, std::int64_t n,
                float* out) {
  int v = 0;
  if (K::kWeightRows >= 4 && 4 * rows <= K::kAccumulators) {
    for (; v + 4 <= wrows; v += 4) run_block<K, 4>(w + v, x, rows, n, out + v * rows, rows);
  }
  if (2 * rows <= K::kAccumulators) {
    for (; v + 2 <= wrows; v += 2) run_block<K, 2>(w + v, x, rows, n, out + v * rows, rows);
  }
  for (; v < wrows; ++v) run_block<K, 1>(w + v, x, rows, n, out + v * rows, rows);
}

}  // namespace voxtral::simd
