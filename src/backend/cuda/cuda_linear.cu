// The inputs of the many-row products (cuda_matmul.cu): the activations split into BF16/FP16
// halves, or quantized per row to FP8, from x as it is or from RMSNorm(x) or SiLU-gate
// computed on the way; and the epilogues that the library's products leave to us.
#include <cuda_fp8.h>

#include <algorithm>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_quant.cuh"

namespace voxtral {

namespace {

__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

// v as the next product's input: rounded to 16 bits (hi), and in exact mode the rounding
// error rounded again (lo), so that hi + lo carries ~16 bits of v's 24.
template <typename H>
__device__ __forceinline__ void store_split(float v, H* hi, H* lo, long long i) {
  if constexpr (std::is_same_v<H, __nv_bfloat16>) {
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    hi[i] = h;
    if (lo != nullptr) lo[i] = __float2bfloat16_rn(v - __bfloat162float(h));
  } else {
    const __half h = __float2half_rn(v);
    hi[i] = h;
    if (lo != nullptr) lo[i] = __float2half_rn(v - __half2float(h));
  }
}

// RMSNorm of row `row` of x as rms_norm_kernel computes it: the row's norm weights and
// 1 / rms (NaN for a norm row outside the table). Called by the whole block.
struct NormedRow {
  const float* in;
  const float* w;
  float inv;
  __device__ float operator()(long long j) const { return w[j] * (in[j] * inv); }
};
__device__ __forceinline__ NormedRow normed_row(const float* x, long long ldx, const RowNorms& norm, long long row, int cols) {
  const float* in = x + row * ldx;
  const long long which = norm.rows != nullptr ? norm.rows[row] : 0;
  const bool known = which >= 0 && which < norm.count;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += in[j] * in[j];
  const float total = block_sum(sum);
  const float inv = known ? 1.0f / sqrtf(total / static_cast<float>(cols) + norm.eps) : __int_as_float(0x7fc00000);
  return {in, norm.table + (known ? which : 0) * norm.stride, inv};
}

__device__ __forceinline__ float silu_gate(float g, float u) { return (g / (1.0f + expf(-g))) * u; }

// RMSNorm written straight as the product's 16-bit input: no F32 copy of the normed rows goes
// through memory. One block per row.
template <typename H>
__global__ void rms_norm_split_kernel(const float* __restrict__ x, long long ldx, const RowNorms norm, int cols, H* hi,
                                      H* lo) {
  const NormedRow normed = normed_row(x, ldx, norm, blockIdx.x, cols);
  const long long base = static_cast<long long>(blockIdx.x) * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) store_split(normed(j), hi, lo, base + j);
}

// SiLU-gate (as silu_mul_kernel computes it) written straight as the product's input.
template <typename H>
__global__ void silu_split_kernel(const float* __restrict__ gu, long long ld_in, long long rows, long long half, H* hi,
                                  H* lo) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * half) return;
  const long long r = i / half, c = i % half;
  store_split(silu_gate(gu[r * ld_in + c], gu[r * ld_in + half + c]), hi, lo, i);
}

template <typename H>
__global__ void split_kernel(const float* __restrict__ x, long long ldx, long long rows, long long cols, H* hi, H* lo) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  store_split(x[r * ldx + c], hi, lo, i);
}

__global__ void combine_halves_kernel(const float* __restrict__ halves, long long rows, long long cols,
                                      const float* __restrict__ bias, int epilogue, float* y, long long ldy) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  float v = halves[i] + halves[rows * cols + i] + (bias != nullptr ? bias[c] : 0.0f);
  if (epilogue == static_cast<int>(Epilogue::Gelu)) v = gelu(v);
  if (epilogue == static_cast<int>(Epilogue::Add)) v += y[r * ldy + c];
  y[r * ldy + c] = v;
}

__global__ void combine_silu_kernel(const float* __restrict__ halves, long long rows, long long cols, float* act,
                                    long long ld_act) {
  const long long half = cols / 2;
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * half) return;
  const long long r = i / half, c = i % half;
  const float* lo = halves + rows * cols;
  act[r * ld_act + c] = silu_gate(halves[r * cols + c] + lo[r * cols + c], halves[r * cols + half + c] + lo[r * cols + half + c]);
}

__global__ void bias_activation_kernel(float* y, long long ldy, long long rows, long long cols, const float* bias, bool gelu_act) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  float v = y[r * ldy + c] + (bias != nullptr ? bias[c] : 0.0f);
  y[r * ldy + c] = gelu_act ? gelu(v) : v;
}

// One activation row as E4M3 codes (Fp8Activations, cuda_common.cuh). One block per row of the
// padded rows. `Row` gives the row's values (recomputed in the second pass rather than kept).
// This general version serves rows that fp8_activations_registers_kernel below does not take
// (widths not a multiple of 4, unaligned rows, more than 12288 inputs).
constexpr float kE4m3Max = 448.0f;

__device__ __forceinline__ float block_max(float v) {
  __shared__ float partial[32];
  v = warp_max(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / 32) ? partial[lane] : 0.0f;
  v = warp_max(v);
  __syncthreads();
  return v;
}

template <typename Row>
__device__ void quantize_row_fp8(const Row& row, long long cols, unsigned char* out, float* scale_out) {
  float amax = 0.0f;
  bool nan = false;
  for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
    const float v = row(j);
    nan = nan || isnan(v);
    amax = fmaxf(amax, fabsf(v));
  }
  amax = block_max(amax);  // its barriers also order the row's zeros before the codes
  const bool any_nan = __syncthreads_or(nan) != 0;
  const float scale = any_nan ? __int_as_float(0x7fc00000) : amax / kE4m3Max;
  for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
    const float q = any_nan || scale == 0.0f ? 0.0f : __fdiv_rn(row(j), scale);
    out[code_place(WeightFormat::FP8, j).byte] = __nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3);
  }
  if (threadIdx.x == 0) *scale_out = scale;
}

struct PlainRow {
  const float* in;
  __device__ float operator()(long long j) const { return in[j]; }
};
struct SiluRow {
  const float* in;
  long long half;
  __device__ float operator()(long long j) const { return silu_gate(in[j], in[half + j]); }
};

// BiasRows' row r by the block. `vector`: 16-byte chunks (cols % 4 == 0, aligned rows), each
// thread's loads in flight together before its stores.
__device__ __forceinline__ void put_bias_row(const BiasRows& b, bool vector, long long r) {
  float* y = b.y + r * b.ldy;
  if (!vector) {
    for (long long c = threadIdx.x; c < b.cols; c += blockDim.x) y[c] = (b.add ? y[c] : 0.0f) + b.bias[c];
    return;
  }
  const int chunks = static_cast<int>(b.cols / 4), step = static_cast<int>(blockDim.x);
  auto* y4 = reinterpret_cast<float4*>(y);
  const auto* b4 = reinterpret_cast<const float4*>(b.bias);
  constexpr int kBatch = 4;
  for (int c0 = threadIdx.x; c0 < chunks; c0 += kBatch * step) {
    float4 v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int c = c0 + u * step;
      if (c >= chunks) break;
      v[u] = b4[c];
      if (b.add) {
        const float4 old = y4[c];
        v[u] = make_float4(old.x + v[u].x, old.y + v[u].y, old.z + v[u].z, old.w + v[u].w);
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (c0 + u * step < chunks) y4[c0 + u * step] = v[u];
    }
  }
}

__global__ void fp8_activations_kernel(const Fp8Activations in, const RowNorms norm, long long row_bytes,
                                       unsigned char* __restrict__ codes, float* __restrict__ scales,
                                       const BiasRows bias_rows, bool vector_bias) {
  const long long r = blockIdx.x;
  unsigned char* out = codes + r * row_bytes;
  for (long long b = 16LL * threadIdx.x; b < row_bytes; b += 16LL * blockDim.x) *reinterpret_cast<uint4*>(out + b) = uint4{};
  if (r >= in.rows) {  // padding rows: zeros
    if (threadIdx.x == 0) scales[r] = 0.0f;
    return;
  }
  switch (in.source) {
    case Fp8Source::Rows: quantize_row_fp8(PlainRow{in.x + r * in.ldx}, in.cols, out, scales + r); break;
    case Fp8Source::RmsNorm:
      quantize_row_fp8(normed_row(in.x, in.ldx, norm, r, static_cast<int>(in.cols)), in.cols, out, scales + r);
      break;
    case Fp8Source::Silu: quantize_row_fp8(SiluRow{in.x + r * in.ldx, in.cols}, in.cols, out, scales + r); break;
  }
  if (bias_rows.bias != nullptr) put_bias_row(bias_rows, vector_bias, r);
}

// The same codes and scale in one pass over the row, kept in registers: thread t takes the row's
// float4 chunks t, t + kFp8Threads, ... (at most kChunks of them), so the row is read once, with
// all of a thread's loads in flight together, and each thread writes its codes 4 bytes at a time
// (the three passes above, each a chain of strided loads, were most of an FP8 product of a few
// hundred rows: BENCHMARKS.md, issue 17). Needs cols % 4 == 0 and 16-byte aligned rows
// (fp8_rows_in_registers); padding bytes past cols are zeroed, the codes written once.
constexpr int kFp8Threads = 256;

template <int kChunks>
__global__ void __launch_bounds__(kFp8Threads) fp8_activations_registers_kernel(const Fp8Activations in, const RowNorms norm,
                                                                               long long row_bytes,
                                                                               unsigned char* __restrict__ codes,
                                                                               float* __restrict__ scales,
                                                                               const BiasRows bias_rows, bool vector_bias) {
  const long long r = blockIdx.x;
  unsigned char* out = codes + r * row_bytes;
  const int t = threadIdx.x, cols = static_cast<int>(in.cols), chunks = cols / 4;
  for (long long b = cols + 4LL * t; b < row_bytes; b += 4LL * kFp8Threads) *reinterpret_cast<unsigned*>(out + b) = 0u;
  if (r >= in.rows) {  // padding rows: zeros
    for (long long b = 4LL * t; b < cols; b += 4LL * kFp8Threads) *reinterpret_cast<unsigned*>(out + b) = 0u;
    if (t == 0) scales[r] = 0.0f;
    return;
  }
  const float* x = in.x + r * in.ldx;
  float4 v[kChunks];
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int c = t + i * kFp8Threads;
    if (c >= chunks) break;
    if (in.source == Fp8Source::Silu) {  // as silu_gate, from the gate and up halves
      const float4 g = reinterpret_cast<const float4*>(x)[c], u = reinterpret_cast<const float4*>(x + cols)[c];
      v[i] = make_float4(silu_gate(g.x, u.x), silu_gate(g.y, u.y), silu_gate(g.z, u.z), silu_gate(g.w, u.w));
    } else {
      v[i] = reinterpret_cast<const float4*>(x)[c];
    }
  }
  if (in.source == Fp8Source::RmsNorm) {  // as NormedRow: w[j] * (x[j] * inv)
    const long long which = norm.rows != nullptr ? norm.rows[r] : 0;
    const bool known = which >= 0 && which < norm.count;
    const float* w = norm.table + (known ? which : 0) * norm.stride;
    // The sum of squares in normed_row's order (thread t: x[t], x[t + 256], ...; the row is in
    // cache now), so that 1/rms has the bits the 16-bit paths' RMSNorm gives.
    float sum = 0.0f;
    for (int j = t; j < cols; j += kFp8Threads) sum += x[j] * x[j];
    const float total = block_sum(sum);
    const float inv = known ? 1.0f / sqrtf(total / static_cast<float>(cols) + norm.eps) : __int_as_float(0x7fc00000);
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int c = t + i * kFp8Threads;
      if (c >= chunks) break;
      const float4 g = reinterpret_cast<const float4*>(w)[c];
      v[i] = make_float4(g.x * (v[i].x * inv), g.y * (v[i].y * inv), g.z * (v[i].z * inv), g.w * (v[i].w * inv));
    }
  }
  float amax = 0.0f;
  bool nan = false;
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    if (t + i * kFp8Threads >= chunks) break;
    nan = nan || isnan(v[i].x) || isnan(v[i].y) || isnan(v[i].z) || isnan(v[i].w);
    amax = fmaxf(amax, fmaxf(fmaxf(fabsf(v[i].x), fabsf(v[i].y)), fmaxf(fabsf(v[i].z), fabsf(v[i].w))));
  }
  amax = block_max(amax);
  const bool any_nan = __syncthreads_or(nan) != 0;
  const float scale = any_nan ? __int_as_float(0x7fc00000) : amax / kE4m3Max;
  const bool zero = any_nan || scale == 0.0f;
  auto code = [&](float e) {
    return static_cast<unsigned>(__nv_cvt_float_to_fp8(zero ? 0.0f : __fdiv_rn(e, scale), __NV_SATFINITE, __NV_E4M3));
  };
#pragma unroll
  for (int i = 0; i < kChunks; ++i) {
    const int c = t + i * kFp8Threads;
    if (c >= chunks) break;
    const unsigned word = code(v[i].x) | code(v[i].y) << 8 | code(v[i].z) << 16 | code(v[i].w) << 24;
    reinterpret_cast<unsigned*>(out)[c] = word;
  }
  if (t == 0) scales[r] = scale;
  if (bias_rows.bias != nullptr) put_bias_row(bias_rows, vector_bias, r);  // after the codes: their stores go first
}

// Block (x, r) takes outputs 4 * (x * 256 + t).. of row r, four a thread: float4 loads and stores
// where the rows allow them (kVector), else one element after another. (One output a thread with
// a 64-bit division each took 8 us for the encoder's 256 x 6144 q|k|v: BENCHMARKS.md.)
template <bool kVector>
__global__ void fp8_epilogue_kernel(const float* __restrict__ sums, long long ld_sums, const float* __restrict__ x_scales,
                                    const float* __restrict__ w_scales, long long cols, const float* __restrict__ bias,
                                    int epilogue, float* y, long long ldy) {
  const long long r = blockIdx.y, c0 = 4 * (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (c0 >= cols) return;
  const float xs = x_scales[r];
  float v[4] = {};
  float* out = y + r * ldy + c0;
  const float* in = sums + r * ld_sums + c0;
  if constexpr (kVector) {
    const float4 s = *reinterpret_cast<const float4*>(in), w = *reinterpret_cast<const float4*>(w_scales + c0);
    v[0] = s.x * (xs * w.x), v[1] = s.y * (xs * w.y), v[2] = s.z * (xs * w.z), v[3] = s.w * (xs * w.w);
    if (bias != nullptr) {
      const float4 b = *reinterpret_cast<const float4*>(bias + c0);
      v[0] += b.x, v[1] += b.y, v[2] += b.z, v[3] += b.w;
    }
  } else {
    for (int j = 0; j < 4 && c0 + j < cols; ++j) {
      v[j] = in[j] * (xs * w_scales[c0 + j]) + (bias != nullptr ? bias[c0 + j] : 0.0f);
    }
  }
  const int n = static_cast<int>(cols - c0 < 4 ? cols - c0 : 4);
  if (epilogue == static_cast<int>(Epilogue::Gelu)) {
    for (int j = 0; j < 4; ++j) v[j] = gelu(v[j]);
  }
  if constexpr (kVector) {
    if (epilogue == static_cast<int>(Epilogue::Add)) {
      const float4 old = *reinterpret_cast<const float4*>(out);
      v[0] += old.x, v[1] += old.y, v[2] += old.z, v[3] += old.w;
    }
    *reinterpret_cast<float4*>(out) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    for (int j = 0; j < n; ++j) out[j] = epilogue == static_cast<int>(Epilogue::Add) ? v[j] + out[j] : v[j];
  }
}

}  // namespace

void launch_split_activations(cudaStream_t stream, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t cols,
                              ElemType type, void* hi, void* lo) {
  const long long n = rows * cols;
  const int threads = 256;
  const auto blocks = static_cast<unsigned>((n + threads - 1) / threads);
  if (type == ElemType::BF16) {
    split_kernel<<<blocks, threads, 0, stream>>>(x, ldx, rows, cols, static_cast<__nv_bfloat16*>(hi),
                                                 static_cast<__nv_bfloat16*>(lo));
  } else {
    split_kernel<<<blocks, threads, 0, stream>>>(x, ldx, rows, cols, static_cast<__half*>(hi), static_cast<__half*>(lo));
  }
  VOXTRAL_CUDA_LAUNCHED("split");
}

void launch_rms_norm_split(cudaStream_t stream, const float* x, std::int64_t ldx, const RowNorms& norm,
                           std::int64_t rows, std::int64_t cols, ElemType type, void* hi, void* lo) {
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(rows);
  if (type == ElemType::BF16) {
    rms_norm_split_kernel<<<blocks, threads, 0, stream>>>(x, ldx, norm, static_cast<int>(cols),
                                                          static_cast<__nv_bfloat16*>(hi), static_cast<__nv_bfloat16*>(lo));
  } else {
    rms_norm_split_kernel<<<blocks, threads, 0, stream>>>(x, ldx, norm, static_cast<int>(cols), static_cast<__half*>(hi),
                                                          static_cast<__half*>(lo));
  }
  VOXTRAL_CUDA_LAUNCHED("rms_norm_split");
}

void launch_silu_split(cudaStream_t stream, const float* gate_up, std::int64_t ld_in, std::int64_t rows, std::int64_t half,
                       ElemType type, void* hi, void* lo) {
  const long long n = rows * half;
  const int threads = 256;
  const auto blocks = static_cast<unsigned>((n + threads - 1) / threads);
  if (type == ElemType::BF16) {
    silu_split_kernel<<<blocks, threads, 0, stream>>>(gate_up, ld_in, rows, half, static_cast<__nv_bfloat16*>(hi),
                                                      static_cast<__nv_bfloat16*>(lo));
  } else {
    silu_split_kernel<<<blocks, threads, 0, stream>>>(gate_up, ld_in, rows, half, static_cast<__half*>(hi),
                                                      static_cast<__half*>(lo));
  }
  VOXTRAL_CUDA_LAUNCHED("silu_split");
}

void launch_bias_activation(cudaStream_t stream, float* y, std::int64_t ldy, std::int64_t rows, std::int64_t cols,
                            const float* bias, bool gelu_act) {
  const long long n = rows * cols;
  const int threads = 256;
  bias_activation_kernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, stream>>>(y, ldy, rows, cols,
                                                                                                    bias, gelu_act);
  VOXTRAL_CUDA_LAUNCHED("bias_activation");
}

void launch_combine_halves(cudaStream_t stream, const float* halves, std::int64_t rows, std::int64_t cols,
                           const float* bias, Epilogue epilogue, float* y, std::int64_t ldy) {
  const long long n = rows * cols;
  const int threads = 256;
  combine_halves_kernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, stream>>>(
      halves, rows, cols, bias, static_cast<int>(epilogue), y, ldy);
  VOXTRAL_CUDA_LAUNCHED("combine_halves");
}

void launch_combine_silu(cudaStream_t stream, const float* halves, std::int64_t rows, std::int64_t cols, float* act,
                         std::int64_t ld_act) {
  const long long n = rows * (cols / 2);
  const int threads = 256;
  combine_silu_kernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, stream>>>(halves, rows, cols, act,
                                                                                                ld_act);
  VOXTRAL_CUDA_LAUNCHED("combine_silu");
}

void launch_fp8_activations(cudaStream_t stream, const Fp8Activations& in, std::int64_t padded_rows,
                            std::int64_t row_bytes, unsigned char* codes, float* scales, const BiasRows& bias_rows) {
  if (padded_rows == 0) return;
  if (row_bytes % 16 != 0 || reinterpret_cast<std::uintptr_t>(codes) % 16 != 0) fail("cuda", "fp8 activations: rows not on 16 bytes");
  const RowNorms norm = in.norm != nullptr ? *in.norm : RowNorms{};
  const unsigned blocks = static_cast<unsigned>(padded_rows);
  const std::int64_t per_thread = (in.cols / 4 + kFp8Threads - 1) / kFp8Threads;
  auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  const bool vector_bias =
      bias_rows.cols % 4 == 0 && bias_rows.ldy % 4 == 0 && aligned(bias_rows.y) && aligned(bias_rows.bias);
  const bool registers = in.cols % 4 == 0 && in.ldx % 4 == 0 && aligned(in.x) && per_thread <= 12 &&
                         (in.source != Fp8Source::RmsNorm || (norm.stride % 4 == 0 && aligned(norm.table)));
  if (!registers) {
    fp8_activations_kernel<<<blocks, 256, 0, stream>>>(in, norm, row_bytes, codes, scales, bias_rows, vector_bias);
  } else if (per_thread <= 2) {
    fp8_activations_registers_kernel<2><<<blocks, kFp8Threads, 0, stream>>>(in, norm, row_bytes, codes, scales, bias_rows,
                                                                           vector_bias);
  } else if (per_thread <= 4) {
    fp8_activations_registers_kernel<4><<<blocks, kFp8Threads, 0, stream>>>(in, norm, row_bytes, codes, scales, bias_rows,
                                                                           vector_bias);
  } else if (per_thread <= 8) {
    fp8_activations_registers_kernel<8><<<blocks, kFp8Threads, 0, stream>>>(in, norm, row_bytes, codes, scales, bias_rows,
                                                                           vector_bias);
  } else {
    fp8_activations_registers_kernel<12><<<blocks, kFp8Threads, 0, stream>>>(in, norm, row_bytes, codes, scales, bias_rows,
                                                                            vector_bias);
  }
  VOXTRAL_CUDA_LAUNCHED("fp8_activations");
}

void launch_fp8_epilogue(cudaStream_t stream, const float* sums, std::int64_t ld_sums, const float* x_scales,
                         const float* w_scales, std::int64_t rows, std::int64_t cols, const float* bias,
                         Epilogue epilogue, float* y, std::int64_t ldy) {
  if (rows == 0 || cols == 0) return;
  constexpr int kThreads = 256;
  constexpr std::int64_t kMaxGridY = 65535;
  const dim3 grid(static_cast<unsigned>((cols + 4 * kThreads - 1) / (4 * kThreads)), 1);
  auto aligned = [](const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; };
  const bool vector = cols % 4 == 0 && ld_sums % 4 == 0 && ldy % 4 == 0 && aligned(sums) && aligned(w_scales) &&
                      aligned(y) && (bias == nullptr || aligned(bias));
  for (std::int64_t first = 0; first < rows; first += kMaxGridY) {  // a grid's y extent is at most 65535
    const std::int64_t n = std::min<std::int64_t>(kMaxGridY, rows - first);
    const dim3 part(grid.x, static_cast<unsigned>(n));
    const float* s = sums + first * ld_sums;
    float* out = y + first * ldy;
    if (vector) {
      fp8_epilogue_kernel<true><<<part, kThreads, 0, stream>>>(s, ld_sums, x_scales + first, w_scales, cols, bias,
                                                               static_cast<int>(epilogue), out, ldy);
    } else {
      fp8_epilogue_kernel<false><<<part, kThreads, 0, stream>>>(s, ld_sums, x_scales + first, w_scales, cols, bias,
                                                                static_cast<int>(epilogue), out, ldy);
    }
  }
  VOXTRAL_CUDA_LAUNCHED("fp8_epilogue");
}

}  // namespace voxtral
