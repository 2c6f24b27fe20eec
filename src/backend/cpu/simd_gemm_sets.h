// The tile sets behind simd::gemm_kernels(), one file each, and the row blocking they share.
// Internal to the CPU backend.
#pragma once

#include "backend/cpu/simd_gemm.h"

namespace voxtral::simd {

GemmKernels generic_gemm_kernels();
GemmKernels avx2_gemm_kernels();
// with_bf16_instruction: tile_pairs through vdpbf16ps (the CPU must have AVX512_BF16).
GemmKernels avx512_gemm_kernels(bool with_bf16_instruction);
// AMX-BF16 tiles for the fast products, the AVX-512 ones for exact (needs Kernels::amx).
GemmKernels amx_gemm_kernels();

// Calls Block::template run<W>(args...) with W = wrows, for 1 <= wrows <= MaxRows: a tile's
// accumulators are registers, so each row count is its own instantiation.
template <class Block, int MaxRows, int W = MaxRows, class... Args>
inline void with_rows(int wrows, Args... args) {
  if constexpr (W >= 1) {
    if (wrows == W) return Block::template run<W>(args...);
    with_rows<Block, MaxRows, W - 1>(wrows, args...);
  }
}

}  // namespace voxtral::simd
