// The fast (integer) Q8/Q4 products of simd_quant.h: the activation layout every kernel set
// shares, the integer formulas, and the sets. Internal to the CPU backend.
//
// Layout of a quantized activation row, the same for Q8 and Q4 weights. Inputs go in groups
// of 4 blocks (128 inputs), the last group padded with a = 0, s = 0 where n is not a
// multiple of 128:
//   values: one byte a + 128 per input (1..255; 128 in the padding): inputs 0..15 of each of
//     the group's 4 blocks, then inputs 16..31 of each. That is the order of the low, then
//     the high nibbles of a group's 64 bytes of Q4 codes, so a nibble plane multiplies a run
//     of activation bytes as it is. Q8's 128 code bytes take the same order with two 128-bit
//     lane shuffles per group, shared by all the rows; so a row's products of a group land
//     in 16 int32 lanes, 4 per block, for one conversion and one FMA per row and group.
//   scales: per block, its s repeated 4 times (its 4 lanes), so a group's lane sums are
//     scaled by one load. (AVX2 works on half groups: 2 blocks, 8 lanes.)
//
// Integer sums, exact in int32 (a lane sums 8 products of at most 255 * 128):
//   vpdpbusd (AVX512-VNNI) multiplies unsigned bytes by signed ones and adds each 4 into an
//   int32 lane. The unsigned side is the activation byte a + 128 and the signed side the
//   weight q (Q4: c - 8), so a lane gets  sum (a + 128) q = sum a q + 128 sum q; it starts
//   from -128 sum q, worked out once per group of weights for all the activation rows.
//   vpmaddubsw (AVX2, AVX-512BW) makes saturating int16 sums of two such products, then
//   vpmaddwd adds pairs into int32 lanes. Q4 as above (a pair is at most 2 * 255 * 8);
//   Q8's pairs could pass 32767, so Q8 takes |q| as the unsigned side and a, negated where
//   q < 0, as the signed one: |q| a' = q a, at most 2 * 128 * 127 a pair.
#pragma once

#include <cstdint>

#include "backend/cpu/simd_quant.h"

namespace voxtral::simd {

inline constexpr int kGroupBlocks = 4;
inline constexpr std::int64_t kGroupInputs = kGroupBlocks * kQuantBlock;
inline constexpr float kInt8Max = 127.0f;
// Blocks whose largest magnitude is below this quantize to a = 0 (127 / m would overflow).
inline constexpr float kTinyBlock = 0x1p-120f;

inline constexpr int kScaleLanes = 4;  // scales per block

inline std::int64_t groups(std::int64_t n) { return (n + kGroupInputs - 1) / kGroupInputs; }
// How far ahead the int8 products prefetch their codes (Q4: simd_quant_int8_avx2.cc, _avx512.cc;
// Q8: _avx512.cc).
inline constexpr std::int64_t kCodePrefetchBytes = 4096;

// Where input i (< 32) of block k (< 4) of a group goes among the group's 128 value bytes.
constexpr int value_position(int k, int i) { return i < 16 ? k * 16 + i : 64 + k * 16 + (i - 16); }

struct Int8Kernels {
  decltype(QuantKernels::quantize_activations) quantize;
  decltype(QuantKernels::dot_rows_q8_int8) dot_q8;
  decltype(QuantKernels::dot_rows_q4_int8) dot_q4;
};

Int8Kernels int8_kernels_generic();
Int8Kernels int8_kernels_avx2();
// with_vnni: vpdpbusd (the CPU must have AVX512_VNNI); else vpmaddubsw.
Int8Kernels int8_kernels_avx512(bool with_vnni);

}  // namespace voxtral::simd
