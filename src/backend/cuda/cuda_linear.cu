// The 16-bit inputs of the many-row products (cuda_matmul.cu): the activations split into
// BF16/FP16 halves, from x as it is or from RMSNorm(x) or SiLU-gate computed on the way; and
// the epilogues that the library's products leave to us.
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

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

// RMSNorm (as rms_norm_kernel computes it) written straight as the product's 16-bit input:
// no F32 copy of the normed rows goes through memory. One block per row.
template <typename H>
__global__ void rms_norm_split_kernel(const float* __restrict__ x, long long ldx, const RowNorms norm, int cols, H* hi,
                                      H* lo) {
  const float* in = x + blockIdx.x * ldx;
  const long long row = norm.rows != nullptr ? norm.rows[blockIdx.x] : 0;
  const bool known = row >= 0 && row < norm.count;
  const float* w = norm.table + (known ? row : 0) * norm.stride;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += in[j] * in[j];
  const float total = block_sum(sum);
  const float inv = known ? 1.0f / sqrtf(total / static_cast<float>(cols) + norm.eps) : __int_as_float(0x7fc00000);
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
  const float g = halves[r * cols + c] + lo[r * cols + c];
  const float u = halves[r * cols + half + c] + lo[r * cols + half + c];
  act[r * ld_act + c] = (g / (1.0f + expf(-g))) * u;
}

__global__ void bias_activation_kernel(float* y, long long ldy, long long rows, long long cols, const float* bias, bool gelu_act) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * cols) return;
  const long long r = i / cols, c = i % cols;
  float v = y[r * ldy + c] + (bias != nullptr ? bias[c] : 0.0f);
  y[r * ldy + c] = gelu_act ? gelu(v) : v;
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

}  // namespace voxtral
