// Matrix-vector products (up to 8 rows), and the 16-bit inputs of the many-row products
// (cuda_matmul.cu): the activations split into BF16/FP16 halves, from x as it is or from
// RMSNorm(x) or SiLU-gate computed on the way.
//
// The decode step is bound by reading the weights: every decoder matrix is read once per
// token. One warp owns one weight row and streams it with 16-byte loads (8 BF16 values per
// lane, several loads in flight), against up to 8 activation rows kept in F32; the F32
// accumulation makes these products exact up to summation order.
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

namespace voxtral {

namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

// S warps share one weight row when rows are long (k of 4096 and more), each taking a
// contiguous share of its 256-value stripes: shorter chains of dependent loads per warp,
// the same bytes in flight. Their partial sums meet in shared memory.
template <int N, typename W, bool kVector, int S>
__global__ void gemv_kernel(const W* __restrict__ weights, int m, int k, const float* __restrict__ x, long long ldx,
                            const float* __restrict__ bias, float* __restrict__ y, long long ldy, int epilogue) {
  __shared__ float partial[kWarpsPerBlock][N];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int row = blockIdx.x * (kWarpsPerBlock / S) + warp / S;
  const int part = warp % S;
  const bool active = row < m;
  const W* w = weights + static_cast<long long>(active ? row : 0) * k;
  float acc[N];
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = 0.0f;

  if (active) {
    int c = 0;
    if (kVector) {
      const int stripes = k / 256;  // whole stripes of 32 lanes x 8 values
      const int first = stripes * part / S, last = stripes * (part + 1) / S;
#pragma unroll 4
      for (int stripe = first; stripe < last; ++stripe) {
        c = stripe * 256 + lane * 8;
        const uint4 raw = __ldg(reinterpret_cast<const uint4*>(w + c));
        float wf[8];
        widen8(raw, wf, W{});
#pragma unroll
        for (int r = 0; r < N; ++r) {
          const float4 x0 = __ldg(reinterpret_cast<const float4*>(x + r * ldx + c));
          const float4 x1 = __ldg(reinterpret_cast<const float4*>(x + r * ldx + c + 4));
          acc[r] += wf[0] * x0.x + wf[1] * x0.y + wf[2] * x0.z + wf[3] * x0.w + wf[4] * x1.x + wf[5] * x1.y +
                    wf[6] * x1.z + wf[7] * x1.w;
        }
      }
      c = part == S - 1 ? stripes * 256 + lane : k;  // the last share also takes the tail
    } else {
      c = lane;
    }
    for (; c < k; c += 32) {  // the tail (or everything, for unaligned inputs)
      const float wv = to_float(w[c]);
#pragma unroll
      for (int r = 0; r < N; ++r) acc[r] += wv * x[r * ldx + c];
    }
  }
#pragma unroll
  for (int r = 0; r < N; ++r) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], offset);
  }
  if constexpr (S > 1) {
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < N; ++r) partial[warp][r] = acc[r];
    }
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int r = 0; r < N; ++r) {
      acc[r] = 0.0f;
#pragma unroll
      for (int p = 0; p < S; ++p) acc[r] += partial[warp + p][r];
    }
  }
  if (lane == 0 && active) {
#pragma unroll
    for (int r = 0; r < N; ++r) {
      float v = acc[r] + (bias != nullptr ? bias[row] : 0.0f);
      float* out = y + r * ldy + row;
      if (epilogue == static_cast<int>(Epilogue::Gelu)) v = gelu(v);
      if (epilogue == static_cast<int>(Epilogue::Add)) v += *out;
      *out = v;
    }
  }
}

template <int N, typename W, bool kVector, int S>
void launch_rows(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, const float* bias, float* y,
                 std::int64_t ldy, Epilogue epilogue) {
  const int rows_per_block = kWarpsPerBlock / S;
  const int blocks = static_cast<int>((w.rows + rows_per_block - 1) / rows_per_block);
  gemv_kernel<N, W, kVector, S><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(
      static_cast<const W*>(w.data), static_cast<int>(w.rows), static_cast<int>(w.cols), x, ldx, bias, y, ldy,
      static_cast<int>(epilogue));
}

template <int N, typename W>
void gemv_rows(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, const float* bias, float* y,
               std::int64_t ldy, Epilogue epilogue) {
  const bool vector = w.cols % 8 == 0 && ldx % 4 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(w.data) % 16 == 0;
  if (!vector) {
    launch_rows<N, W, false, 1>(stream, w, x, ldx, bias, y, ldy, epilogue);
  } else if (w.cols >= 8192) {
    launch_rows<N, W, true, 4>(stream, w, x, ldx, bias, y, ldy, epilogue);
  } else if (w.cols >= 4096) {
    launch_rows<N, W, true, 2>(stream, w, x, ldx, bias, y, ldy, epilogue);
  } else {
    launch_rows<N, W, true, 1>(stream, w, x, ldx, bias, y, ldy, epilogue);
  }
  VOXTRAL_CUDA_LAUNCHED("gemv");
}

template <typename W>
void gemv_dispatch(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, int rows,
                   const float* bias, float* y, std::int64_t ldy, Epilogue epilogue) {
  // Up to 8 rows share one pass over the weights; larger counts go in groups of 8.
  for (int r0 = 0; r0 < rows; r0 += 8) {
    const int n = std::min(8, rows - r0);
    const float* xr = x + r0 * ldx;
    float* yr = y + r0 * ldy;
    switch (n) {
      case 1: gemv_rows<1, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
      case 2: gemv_rows<2, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
      case 3: gemv_rows<3, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
      case 4: gemv_rows<4, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
      case 5: gemv_rows<5, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
      case 6: gemv_rows<6, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
      case 7: gemv_rows<7, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
      default: gemv_rows<8, W>(stream, w, xr, ldx, bias, yr, ldy, epilogue); break;
    }
  }
}

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

// RMSNorm (as rms_norm_kernel computes it) written straight as the product's 16-bit input:
// no F32 copy of the normed rows goes through memory. One block per row.
template <typename H>
__global__ void rms_norm_split_kernel(const float* __restrict__ x, long long ldx, const float* __restrict__ w, float eps,
                                      int cols, H* hi, H* lo) {
  const float* in = x + blockIdx.x * ldx;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += in[j] * in[j];
  const float total = block_sum(sum);
  const float inv = 1.0f / sqrtf(total / static_cast<float>(cols) + eps);
  const long long base = static_cast<long long>(blockIdx.x) * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) store_split(w[j] * (in[j] * inv), hi, lo, base + j);
}

// SiLU-gate (as silu_mul_kernel computes it) written straight as the product's input.
template <typename H>
__global__ void silu_split_kernel(const float* __restrict__ gu, long long ld_in, long long rows, long long half, H* hi,
                                  H* lo) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * half) return;
  const long long r = i / half, c = i % half;
  const float g = gu[r * ld_in + c];
  const float u = gu[r * ld_in + half + c];
  store_split((g / (1.0f + expf(-g))) * u, hi, lo, i);
}

template <typename H>
__global__ void split_kernel(const float* __restrict__ x, long long ldx, long long rows, long long cols, H* hi, H* lo) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  store_split(x[r * ldx + c], hi, lo, i);
}

__global__ void bias_activation_kernel(float* y, long long ldy, long long rows, long long cols, const float* bias, bool gelu_act) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  float v = y[r * ldy + c] + (bias != nullptr ? bias[c] : 0.0f);
  y[r * ldy + c] = gelu_act ? gelu(v) : v;
}

}  // namespace

void launch_gemv(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, int rows, const float* bias,
                 float* y, std::int64_t ldy, Epilogue epilogue) {
  if (w.type == ElemType::BF16) {
    gemv_dispatch<__nv_bfloat16>(stream, w, x, ldx, rows, bias, y, ldy, epilogue);
  } else if (w.type == ElemType::F16) {
    gemv_dispatch<__half>(stream, w, x, ldx, rows, bias, y, ldy, epilogue);
  } else {
    fail("cuda", "gemv: weights must be BF16 or FP16");
  }
}

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

void launch_rms_norm_split(cudaStream_t stream, const float* x, std::int64_t ldx, const float* weight, float eps,
                           std::int64_t rows, std::int64_t cols, ElemType type, void* hi, void* lo) {
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(rows);
  if (type == ElemType::BF16) {
    rms_norm_split_kernel<<<blocks, threads, 0, stream>>>(x, ldx, weight, eps, static_cast<int>(cols),
                                                          static_cast<__nv_bfloat16*>(hi), static_cast<__nv_bfloat16*>(lo));
  } else {
    rms_norm_split_kernel<<<blocks, threads, 0, stream>>>(x, ldx, weight, eps, static_cast<int>(cols),
                                                          static_cast<__half*>(hi), static_cast<__half*>(lo));
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

}  // namespace voxtral
