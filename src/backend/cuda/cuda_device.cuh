// Device helpers shared by the CUDA backend's kernels: widening 16-bit values to F32,
// warp reductions, stores that round to the destination's type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace voxtral {

// Eight 16-bit values from one 16-byte load, widened to F32 (the last argument picks the type).
__device__ __forceinline__ void widen8(const uint4& raw, float (&out)[8], __nv_bfloat16) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void widen8(const uint4& raw, float (&out)[8], __half) {
  const auto* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x, out[2 * i + 1] = f.y;
  }
}

// Eight consecutive values as F32 (16-byte aligned loads).
__device__ __forceinline__ void load8(const float* p, float (&out)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(p), b = *reinterpret_cast<const float4*>(p + 4);
  out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}
__device__ __forceinline__ void load8(const __nv_bfloat16* p, float (&out)[8]) {
  widen8(*reinterpret_cast<const uint4*>(p), out, __nv_bfloat16{});
}

__device__ __forceinline__ void store_as(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_as(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// An L2 policy for what a step reads once (the weights): evicted first, so that what it reads
// again (activations, the K/V cache) can stay in L2 while gigabytes of weights stream through.
__device__ __forceinline__ unsigned long long evict_first_policy() {
  unsigned long long policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Where the keys of (sequence, position) live in a paged K/V cache (KvCacheLayout).
struct PagedRows {
  const int* page_table = nullptr;  // [sequences, pages_per_sequence]
  int pages_per_sequence = 1, page_size = 1, capacity = 1;
};

__device__ __forceinline__ long long cache_row(const PagedRows& p, int sequence, int position) {
  const int ring = position % p.capacity;
  const int page = p.page_table[static_cast<long long>(sequence) * p.pages_per_sequence + ring / p.page_size];
  return static_cast<long long>(page) * p.page_size + ring % p.page_size;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024).
__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[32];
  v = warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? partial[lane] : 0.0f;
  v = warp_sum(v);
  __syncthreads();
  return v;
}

}  // namespace voxtral
