// The quantized weight formats (core/quant.h) on the GPU: the layout of their codes in device
// memory, and their decoding to the exact floats they stand for.
//
// Device layout: the codes as stored (core/quant.h: Q8 and FP8 one byte an input, Q4 16 bytes a
// block of 32 with codes j and j + 16 in byte j), each row padded with zero bytes to a whole
// number of kStageBytes, so that the streamed product (cuda_quantized_streamed.cu) moves whole
// 512-byte stages (one 16-byte piece a lane) of a row without guards. Q8/Q4 keep their F16 block
// scales in a [rows, device_scale_stride] plane, each row padded with zero scales to whole stages
// (a stage's scales are then one aligned copy, and padded blocks weigh nothing). FP8's F32 scales
// are one per row.
//
// Decoding avoids integer-to-float conversions (a quarter-rate instruction): a byte placed in
// the low bits of 2^23's float is 2^23 + byte, and one subtraction leaves the code.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "core/quant.h"

namespace voxtral {

constexpr int kStageBytes = 512;  // bytes of a row that one warp moves at once: 16 a lane

// Inputs of one stage: 512 one-byte codes, or 1024 Q4 codes (16 blocks or 32 of them).
__host__ __device__ constexpr int stage_inputs(WeightFormat format) { return format == WeightFormat::Q4 ? 1024 : 512; }

// Bytes of one row of codes in the device layout.
__host__ __device__ constexpr long long device_row_bytes(WeightFormat format, long long cols) {
  const long long stages = (cols + stage_inputs(format) - 1) / stage_inputs(format);
  return stages * kStageBytes;
}

// F16 scales of one row in the device layout (Q8/Q4): whole stages of blocks.
__host__ __device__ constexpr long long device_scale_stride(WeightFormat format, long long cols) {
  return device_row_bytes(format, cols) / kStageBytes * (stage_inputs(format) / 32);
}

// Where input i of a row lives in the row's codes: the byte, and for Q4 the nibble's shift.
struct CodePlace {
  long long byte;
  int shift;
};
__host__ __device__ inline CodePlace code_place(WeightFormat format, long long i) {
  if (format == WeightFormat::Q4) return {i / 32 * 16 + i % 16, static_cast<int>(i % 32 / 16) * 4};
  return {i, 0};
}

// Byte j of `word` as the float 2^23 + byte.
template <int J>
__device__ __forceinline__ float byte_plus_2p23(unsigned word) {
  return __uint_as_float(__byte_perm(word, 0x4b000000u, 0x7540u | J));
}

// Four int8 codes (two's complement) of `word` as floats: flipping the sign bit makes them
// b + 128 as unsigned bytes.
__device__ __forceinline__ void q8x4_to_float(unsigned word, float* out) {
  const unsigned biased = word ^ 0x80808080u;
  out[0] = byte_plus_2p23<0>(biased) - 8388736.0f;
  out[1] = byte_plus_2p23<1>(biased) - 8388736.0f;
  out[2] = byte_plus_2p23<2>(biased) - 8388736.0f;
  out[3] = byte_plus_2p23<3>(biased) - 8388736.0f;
}

// Four Q4 codes c (one per byte of `nibbles`, each 0..15) as the floats c - 8.
__device__ __forceinline__ void q4x4_to_float(unsigned nibbles, float* out) {
  out[0] = byte_plus_2p23<0>(nibbles) - 8388616.0f;
  out[1] = byte_plus_2p23<1>(nibbles) - 8388616.0f;
  out[2] = byte_plus_2p23<2>(nibbles) - 8388616.0f;
  out[3] = byte_plus_2p23<3>(nibbles) - 8388616.0f;
}

// Four E4M3 codes of `word` (lowest byte first) as floats (one instruction per pair on sm_89+).
__device__ __forceinline__ void e4m3x4_to_float(unsigned word, float* out) {
  const __half2_raw lo = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word & 0xffffu), __NV_E4M3);
  const __half2_raw hi = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(word >> 16), __NV_E4M3);
  const float2 a = __half22float2(__half2(lo)), b = __half22float2(__half2(hi));
  out[0] = a.x, out[1] = a.y, out[2] = b.x, out[3] = b.y;
}

__device__ __forceinline__ float f16_bits_to_float(unsigned short bits) { return __half2float(__ushort_as_half(bits)); }

// One weight of a quantized matrix in the device layout, scale applied (the reference
// formula: d * code in float). Row r, input c of `cols`.
__device__ __forceinline__ float q8_weight(const signed char* codes, const unsigned short* scales, long long r, long long c,
                                           long long cols) {
  const CodePlace at = code_place(WeightFormat::Q8, c);
  return f16_bits_to_float(scales[r * device_scale_stride(WeightFormat::Q8, cols) + c / 32]) *
         static_cast<float>(codes[r * device_row_bytes(WeightFormat::Q8, cols) + at.byte]);
}

__device__ __forceinline__ float q4_weight(const unsigned char* codes, const unsigned short* scales, long long r, long long c,
                                           long long cols) {
  const CodePlace at = code_place(WeightFormat::Q4, c);
  const int code = (codes[r * device_row_bytes(WeightFormat::Q4, cols) + at.byte] >> at.shift) & 0x0f;
  return f16_bits_to_float(scales[r * device_scale_stride(WeightFormat::Q4, cols) + c / 32]) * static_cast<float>(code - 8);
}

__device__ __forceinline__ float fp8_weight(const unsigned char* codes, const float* scales, long long r, long long c,
                                            long long cols) {
  const CodePlace at = code_place(WeightFormat::FP8, c);
  const __half_raw h = __nv_cvt_fp8_to_halfraw(codes[r * device_row_bytes(WeightFormat::FP8, cols) + at.byte], __NV_E4M3);
  return __half2float(__half(h)) * scales[r];
}

}  // namespace voxtral
