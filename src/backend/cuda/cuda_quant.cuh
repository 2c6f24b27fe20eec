// Device decoding of the quantized weight formats (core/quant.h): codes to the exact floats
// they stand for, eight consecutive inputs at a time, without integer-to-float conversions
// (a quarter-rate instruction): a byte placed in the low bits of 2^23's float is 2^23 + byte,
// and one subtraction leaves the code.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

namespace voxtral {

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

// One weight of a quantized matrix, scale applied (the reference formula: d * code in float).
// codes/scales as CudaWeight holds them; row r, input c of `cols`.
__device__ __forceinline__ float q8_weight(const signed char* codes, const unsigned short* scales, long long r, long long c,
                                           long long cols) {
  return f16_bits_to_float(scales[r * (cols / 32) + c / 32]) * static_cast<float>(codes[r * cols + c]);
}

__device__ __forceinline__ float q4_weight(const unsigned char* codes, const unsigned short* scales, long long r, long long c,
                                           long long cols) {
  const long long block = c / 32;
  const int j = static_cast<int>(c % 32);
  const unsigned char byte = codes[r * (cols / 2) + block * 16 + j % 16];
  const int code = j < 16 ? (byte & 0x0f) : (byte >> 4);
  return f16_bits_to_float(scales[r * (cols / 32) + block]) * static_cast<float>(code - 8);
}

__device__ __forceinline__ float fp8_weight(const unsigned char* codes, const float* scales, long long r, long long c,
                                            long long cols) {
  const __half_raw h = __nv_cvt_fp8_to_halfraw(codes[r * cols + c], __NV_E4M3);
  return __half2float(__half(h)) * scales[r];
}

}  // namespace voxtral
