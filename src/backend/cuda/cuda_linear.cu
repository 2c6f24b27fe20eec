// Matrix-vector products for the decode step, and the helpers of the cuBLAS path.
//
// The decode step is bound by reading the weights: every decoder matrix is read once per
// token. One warp owns one weight row and streams it with 16-byte loads (8 BF16 values per
// lane, several loads in flight), against up to 8 activation rows kept in F32; the F32
// accumulation makes these products exact up to summation order.
#include "backend/cuda/cuda_common.cuh"

namespace voxtral {

namespace {

constexpr int kWarpsPerBlock = 8;

__device__ __forceinline__ void unpack8(const uint4& raw, float (&out)[8], __nv_bfloat16) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ void unpack8(const uint4& raw, float (&out)[8], __half) {
  const auto* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    out[2 * i] = f.x;
    out[2 * i + 1] = f.y;
  }
}

__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

template <int N, typename W, bool kVector>
__global__ void gemv_kernel(const W* __restrict__ weights, int m, int k, const float* __restrict__ x, long long ldx,
                            const float* __restrict__ bias, float* __restrict__ y, long long ldy, int epilogue) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  if (row >= m) return;
  const W* w = weights + static_cast<long long>(row) * k;
  float acc[N];
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = 0.0f;

  int c = 0;
  if (kVector) {
    const int vec_end = k & ~255;  // whole 256-element stripes (32 lanes x 8)
#pragma unroll 4
    for (c = lane * 8; c < vec_end; c += 256) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(w + c));
      float wf[8];
      unpack8(raw, wf, W{});
#pragma unroll
      for (int r = 0; r < N; ++r) {
        const float4 x0 = __ldg(reinterpret_cast<const float4*>(x + r * ldx + c));
        const float4 x1 = __ldg(reinterpret_cast<const float4*>(x + r * ldx + c + 4));
        acc[r] += wf[0] * x0.x + wf[1] * x0.y + wf[2] * x0.z + wf[3] * x0.w + wf[4] * x1.x + wf[5] * x1.y +
                  wf[6] * x1.z + wf[7] * x1.w;
      }
    }
    c = vec_end + lane;
  } else {
    c = lane;
  }
  for (; c < k; c += 32) {  // the tail (or everything, for unaligned inputs)
    const float wv = to_float(w[c]);
#pragma unroll
    for (int r = 0; r < N; ++r) acc[r] += wv * x[r * ldx + c];
  }
#pragma unroll
  for (int r = 0; r < N; ++r) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], offset);
  }
  if (lane == 0) {
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

// The staged form: the block first writes its input rows into shared memory, prepared as
// the fused op needs (a plain copy, the RMS-normalised rows, or silu(gate) * up), while the
// first weight loads of every lane are already in flight; then each warp streams one
// weight row against the staged inputs, keeping two groups of loads in flight.
enum class Input { Plain, Norm, Swiglu };

constexpr int kGroup = 4;  // 16-byte weight loads per lane per group

template <int N, typename W, Input M>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    gemv_staged_kernel(const W* __restrict__ weights, int m, int k, const float* __restrict__ x, long long ldx,
                       const float* __restrict__ norm, float eps, const float* __restrict__ bias, float* __restrict__ y,
                       long long ldy, int epilogue) {
  extern __shared__ float xs[];  // [N][k]
  __shared__ float reduce[kWarpsPerBlock][N];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int row = blockIdx.x * kWarpsPerBlock + warp;
  const bool active = row < m;
  const W* w = weights + static_cast<long long>(active ? row : 0) * k;
  const int stripes = k / 256;  // whole stripes of 32 lanes x 8 values

  uint4 current[kGroup];
#pragma unroll
  for (int u = 0; u < kGroup; ++u) {
    if (u < stripes) current[u] = __ldg(reinterpret_cast<const uint4*>(w + lane * 8 + u * 256));
  }

  if constexpr (M == Input::Norm) {
    float partial[N];
#pragma unroll
    for (int r = 0; r < N; ++r) {
      partial[r] = 0.0f;
      for (int c = threadIdx.x; c < k; c += blockDim.x) {
        const float v = x[r * ldx + c];
        partial[r] += v * v;
      }
#pragma unroll
      for (int offset = 16; offset > 0; offset /= 2) partial[r] += __shfl_xor_sync(0xffffffffu, partial[r], offset);
      if (lane == 0) reduce[warp][r] = partial[r];
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < N; ++r) {
      float total = 0.0f;
#pragma unroll
      for (int i = 0; i < kWarpsPerBlock; ++i) total += reduce[i][r];
      const float inv = 1.0f / sqrtf(total / static_cast<float>(k) + eps);
      for (int c = threadIdx.x; c < k; c += blockDim.x) xs[r * k + c] = norm[c] * (x[r * ldx + c] * inv);
    }
  } else if constexpr (M == Input::Swiglu) {
#pragma unroll
    for (int r = 0; r < N; ++r) {
      for (int c = threadIdx.x; c < k; c += blockDim.x) {
        const float g = x[r * ldx + c], up = x[r * ldx + k + c];
        xs[r * k + c] = (g / (1.0f + expf(-g))) * up;
      }
    }
  } else {
#pragma unroll
    for (int r = 0; r < N; ++r) {
      for (int c = threadIdx.x; c < k; c += blockDim.x) xs[r * k + c] = x[r * ldx + c];
    }
  }
  __syncthreads();
  if (!active) return;

  float acc[N];
#pragma unroll
  for (int r = 0; r < N; ++r) acc[r] = 0.0f;
  auto consume = [&](const uint4& raw, int c) {
    float wf[8];
    unpack8(raw, wf, W{});
#pragma unroll
    for (int r = 0; r < N; ++r) {
      const float4 x0 = *reinterpret_cast<const float4*>(xs + r * k + c);
      const float4 x1 = *reinterpret_cast<const float4*>(xs + r * k + c + 4);
      acc[r] += wf[0] * x0.x + wf[1] * x0.y + wf[2] * x0.z + wf[3] * x0.w + wf[4] * x1.x + wf[5] * x1.y +
                wf[6] * x1.z + wf[7] * x1.w;
    }
  };
  for (int s0 = 0; s0 < stripes; s0 += kGroup) {
    uint4 next[kGroup];
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      if (s0 + kGroup + u < stripes) next[u] = __ldg(reinterpret_cast<const uint4*>(w + lane * 8 + (s0 + kGroup + u) * 256));
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      if (s0 + u < stripes) consume(current[u], lane * 8 + (s0 + u) * 256);
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) current[u] = next[u];
  }
  // A last partial stripe (k is a multiple of 8 here).
  const int c = stripes * 256 + lane * 8;
  if (c < k) consume(__ldg(reinterpret_cast<const uint4*>(w + c)), c);

#pragma unroll
  for (int r = 0; r < N; ++r) {
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], offset);
  }
  if (lane == 0) {
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

constexpr std::int64_t kMaxStagedFloats = 12288;  // 48 KiB of shared memory

bool staged_fits(const CudaWeight& w, int rows) {
  return w.cols % 8 == 0 && rows * w.cols <= kMaxStagedFloats && reinterpret_cast<std::uintptr_t>(w.data) % 16 == 0;
}

template <int N, typename W, Input M>
void gemv_staged(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, const float* norm, float eps,
                 const float* bias, float* y, std::int64_t ldy, Epilogue epilogue) {
  const int blocks = static_cast<int>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const std::size_t smem = static_cast<std::size_t>(N) * w.cols * sizeof(float);
  gemv_staged_kernel<N, W, M><<<blocks, kWarpsPerBlock * 32, smem, stream>>>(
      static_cast<const W*>(w.data), static_cast<int>(w.rows), static_cast<int>(w.cols), x, ldx, norm, eps, bias, y, ldy,
      static_cast<int>(epilogue));
  VOXTRAL_CUDA_LAUNCHED("gemv_staged");
}

template <typename W, Input M>
void staged_dispatch(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, int rows, const float* norm,
                     float eps, const float* bias, float* y, std::int64_t ldy, Epilogue epilogue) {
  switch (rows) {
    case 1: gemv_staged<1, W, M>(stream, w, x, ldx, norm, eps, bias, y, ldy, epilogue); break;
    case 2: gemv_staged<2, W, M>(stream, w, x, ldx, norm, eps, bias, y, ldy, epilogue); break;
    case 3: gemv_staged<3, W, M>(stream, w, x, ldx, norm, eps, bias, y, ldy, epilogue); break;
    case 4: gemv_staged<4, W, M>(stream, w, x, ldx, norm, eps, bias, y, ldy, epilogue); break;
    default: fail("cuda", "staged gemv: at most 4 rows");
  }
}

template <int N, typename W>
void gemv_rows(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, const float* bias, float* y,
               std::int64_t ldy, Epilogue epilogue) {
  const int blocks = static_cast<int>((w.rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const bool vector = w.cols % 8 == 0 && ldx % 4 == 0 && reinterpret_cast<std::uintptr_t>(x) % 16 == 0 &&
                      reinterpret_cast<std::uintptr_t>(w.data) % 16 == 0;
  auto* weights = static_cast<const W*>(w.data);
  if (vector) {
    gemv_kernel<N, W, true><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(weights, static_cast<int>(w.rows),
                                                                         static_cast<int>(w.cols), x, ldx, bias, y, ldy,
                                                                         static_cast<int>(epilogue));
  } else {
    gemv_kernel<N, W, false><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(weights, static_cast<int>(w.rows),
                                                                          static_cast<int>(w.cols), x, ldx, bias, y, ldy,
                                                                          static_cast<int>(epilogue));
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

template <typename H>
__global__ void split_kernel(const float* __restrict__ x, long long ldx, long long rows, long long cols, H* hi, H* lo) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  const float v = x[r * ldx + c];
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

__global__ void bias_activation_kernel(float* y, long long ldy, long long rows, long long cols, const float* bias, bool gelu_act) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  float v = y[r * ldy + c] + (bias != nullptr ? bias[c] : 0.0f);
  y[r * ldy + c] = gelu_act ? gelu(v) : v;
}

}  // namespace

bool launch_fused_gemv(cudaStream_t stream, GemvInput input, const CudaWeight& w, const float* x, std::int64_t ldx,
                       int rows, const float* norm, float eps, const float* bias, float* y, std::int64_t ldy,
                       Epilogue epilogue) {
  if (rows < 1 || rows > 4 || !staged_fits(w, rows) || (w.type != ElemType::BF16 && w.type != ElemType::F16)) return false;
  auto go = [&](auto weight_tag) {
    using W = decltype(weight_tag);
    switch (input) {
      case GemvInput::Plain: staged_dispatch<W, Input::Plain>(stream, w, x, ldx, rows, norm, eps, bias, y, ldy, epilogue); break;
      case GemvInput::Norm: staged_dispatch<W, Input::Norm>(stream, w, x, ldx, rows, norm, eps, bias, y, ldy, epilogue); break;
      case GemvInput::Swiglu: staged_dispatch<W, Input::Swiglu>(stream, w, x, ldx, rows, norm, eps, bias, y, ldy, epilogue); break;
    }
  };
  if (w.type == ElemType::BF16) {
    go(__nv_bfloat16{});
  } else {
    go(__half{});
  }
  return true;
}

void launch_gemv(cudaStream_t stream, const CudaWeight& w, const float* x, std::int64_t ldx, int rows, const float* bias,
                 float* y, std::int64_t ldy, Epilogue epilogue) {
  if (launch_fused_gemv(stream, GemvInput::Plain, w, x, ldx, rows, nullptr, 0.0f, bias, y, ldy, epilogue)) return;
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

void launch_bias_activation(cudaStream_t stream, float* y, std::int64_t ldy, std::int64_t rows, std::int64_t cols,
                            const float* bias, bool gelu_act) {
  const long long n = rows * cols;
  const int threads = 256;
  bias_activation_kernel<<<static_cast<unsigned>((n + threads - 1) / threads), threads, 0, stream>>>(y, ldy, rows, cols,
                                                                                                    bias, gelu_act);
  VOXTRAL_CUDA_LAUNCHED("bias_activation");
}

}  // namespace voxtral
