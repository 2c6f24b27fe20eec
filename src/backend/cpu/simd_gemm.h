// The register tiles of the CPU's many-row products (cpu_gemm.cc), at the level simd.h's
// kernels chose (AMX-BF16 tiles for fast precision, AVX-512 with or without AVX512_BF16,
// AVX2+FMA, or portable;
// VOXTRAL_CPU_KERNELS forces a narrower set for these too).
//
// A product y = x W^T is cut into tiles of `rows` weight rows by `lanes` activation rows. The
// activation rows of a tile are packed once per product into a panel, input-major, so that
// one vector load gives one input of all `lanes` rows; each weight is broadcast from its row,
// read in place (the memory map) or from a row widened or dequantized for the tile. A
// weight row is thus never copied as a whole matrix, in either precision:
//  * exact: F32 activations, F32 weights (BF16 widened exactly), F32 FMAs: every output is
//    one running sum over the inputs in order, sum_k fma(w[k], x[k], acc);
//  * fast: activations and weights in BF16 (nearest even), products taken two inputs at a
//    time into F32 lanes as AVX512_BF16's vdpbf16ps does (the odd input's product is added
//    first, then the even one's; products of two BF16 values are exact in F32). The sets
//    without the instruction compute the same sums with F32 FMAs; vdpbf16ps differs from
//    them only in flushing denormals.
// Each output's sum is taken in one order that depends neither on the tile's other rows nor
// on where the row sits in its panel, so a row's result is the same alone and in a batch.
#pragma once

#include <cstdint>

namespace voxtral::simd {

struct GemmKernels {
  int lanes;  // activation rows of one panel
  int rows;   // most weight rows of one tile call

  // Exact mode: tile[v * lanes + l] = sum_k w[v][k] * panel[k * lanes + l] for v < wrows <= rows,
  // k < n; the panel holds the F32 activations input-major.
  void (*tile_f32)(const float* const* w, int wrows, const float* panel, std::int64_t n, float* tile);
  // Fast mode: the same with pairs. panel[p * lanes + l] holds input 2p of activation row l in
  // its low half and input 2p + 1 in its high half, both BF16; w[v] holds 2 * pairs BF16 values.
  void (*tile_pairs)(const std::uint16_t* const* w, int wrows, const std::uint32_t* panel, std::int64_t pairs,
                     float* tile);

  // One Q8 or Q4 row (core/quant.h) to its exact floats, f16(d) * q; n a multiple of 32.
  void (*dequantize_q8)(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n, float* out);
  void (*dequantize_q4)(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n, float* out);
  // The same values rounded to BF16 (nearest even) in one pass: the fast tiles' weight rows.
  // Bit for bit dequantize_q8/q4 followed by Kernels::round_bf16.
  void (*dequantize_q8_bf16)(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n,
                             std::uint16_t* out);
  void (*dequantize_q4_bf16)(const std::uint8_t* codes, const std::uint16_t* scales, std::int64_t n,
                             std::uint16_t* out);

  // as simd::kernels().name, "avx512bf16" only where tile_pairs uses vdpbf16ps; "amx" where it
  // uses AMX-BF16 tiles (simd_gemm_amx.cc), whose sums round in the hardware's own order
  const char* name;
};

const GemmKernels& gemm_kernels();

}  // namespace voxtral::simd
