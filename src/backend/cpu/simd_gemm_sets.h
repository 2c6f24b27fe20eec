// The tile sets behind simd::gemm_kernels(), one file each, and the row blocking they share.
// Internal to the CPU backend.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/simd.h"
#include "backend/cpu/simd_gemm.h"

namespace voxtral::simd {

GemmKernels generic_gemm_kernels();
GemmKernels avx2_gemm_kernels();
// with_bf16_instruction: tile_pairs through vdpbf16ps (the CPU must have AVX512_BF16).
GemmKernels avx512_gemm_kernels(bool with_bf16_instruction);
// AMX-BF16 tiles for the fast products, the AVX-512 ones for exact (needs Kernels::amx).
GemmKernels amx_gemm_kernels();

// dequantize_q8/q4 then Kernels::round_bf16, through a buffer: the sets without a fused pass.
template <void (*Dequantize)(const std::uint8_t*, const std::uint16_t*, std::int64_t, float*)>
void dequantize_then_round(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n,
                           std::uint16_t* out) {
  thread_local std::vector<float> values;
  values.resize(static_cast<std::size_t>(n));
  Dequantize(codes, scales, n, values.data());
  kernels().round_bf16(values.data(), out, n);
}

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
