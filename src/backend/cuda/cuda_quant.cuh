// The quantized weight formats (core/quant.h) on the GPU: the layout of their codes in device
// memory, and their decoding to the exact floats they stand for.
//
// Device layout of the codes. The streamed product (cuda_streamed.cu) gives each lane of a
// warp one 16-byte load of a row per stripe of 32 x 16 bytes. Were those bytes consecutive
// codes, lane l would need inputs 16l.. (Q8) or 32l.. (Q4) and its activation loads across
// the warp would stride 64 or 128 bytes: 4 to 8 times the L1 traffic of the product itself.
// So the codes are re-laid at upload: in stripe s of kStripeInputs inputs, lane l's 16 bytes
// hold its chunks t = 0.. (4 inputs each) of inputs s * kStripeInputs + 128 t + 4 l + (0..3),
// and the warp's activation load of chunk t reads 128 consecutive floats; the 8 lanes of an
// octet share one 32-input block (one scale). Q8/FP8: word t of the 16 bytes is chunk t
// (4 chunks, 512 inputs a stripe). Q4: word w holds chunk w in its low nibbles and chunk w + 4
// in its high nibbles (8 chunks, 1024 inputs a stripe). Rows are padded to whole stripes
// (padding never read as a product's input). The F16 block scales keep their [rows, cols / 32]
// plane; FP8's F32 scales are one per row.
//
// Decoding avoids integer-to-float conversions (a quarter-rate instruction): a byte placed in
// the low bits of 2^23's float is 2^23 + byte, and one subtraction leaves the code.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "core/quant.h"

namespace voxtral {

// Inputs of one stripe of the device layout.
__host__ __device__ constexpr int stripe_inputs(WeightFormat format) { return format == WeightFormat::Q4 ? 1024 : 512; }

// Bytes of one row of codes in the device layout.
__host__ __device__ constexpr long long device_row_bytes(WeightFormat format, long long cols) {
  const long long stripes = (cols + stripe_inputs(format) - 1) / stripe_inputs(format);
  return stripes * 512;
}

// Where input i of a row lives in the row's codes: the byte, and for Q4 the nibble's shift.
struct CodePlace {
  long long byte;
  int shift;
};
__host__ __device__ inline CodePlace code_place(WeightFormat format, long long i) {
  const int per_stripe = stripe_inputs(format);
  const long long stripe = i / per_stripe;
  const int within = static_cast<int>(i % per_stripe);
  const int t = within / 128, lane = (within % 128) / 4, j = within % 4;
  if (format == WeightFormat::Q4) return {stripe * 512 + lane * 16 + 4 * (t % 4) + j, 4 * (t / 4)};
  return {stripe * 512 + lane * 16 + 4 * t + j, 0};
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
  return f16_bits_to_float(scales[r * (cols / 32) + c / 32]) *
         static_cast<float>(codes[r * device_row_bytes(WeightFormat::Q8, cols) + at.byte]);
}

__device__ __forceinline__ float q4_weight(const unsigned char* codes, const unsigned short* scales, long long r, long long c,
                                           long long cols) {
  const CodePlace at = code_place(WeightFormat::Q4, c);
  const int code = (codes[r * device_row_bytes(WeightFormat::Q4, cols) + at.byte] >> at.shift) & 0x0f;
  return f16_bits_to_float(scales[r * (cols / 32) + c / 32]) * static_cast<float>(code - 8);
}

__device__ __forceinline__ float fp8_weight(const unsigned char* codes, const float* scales, long long r, long long c,
                                            long long cols) {
  const CodePlace at = code_place(WeightFormat::FP8, c);
  const __half_raw h = __nv_cvt_fp8_to_halfraw(codes[r * device_row_bytes(WeightFormat::FP8, cols) + at.byte], __NV_E4M3);
  return __half2float(__half(h)) * scales[r];
}

}  // namespace voxtral
