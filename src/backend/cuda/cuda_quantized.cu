// Quantized weights outside the streamed product: FP8 quantization at load, widening a
// quantized matrix to F16 for the many-row products (cuBLASLt), and embedding rows of a
// quantized table.
#include <cfloat>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_quant.cuh"

namespace voxtral {

namespace {

constexpr float kE4m3Max = 448.0f;  // the largest finite E4M3 value

__device__ __forceinline__ float as_float(float v) { return v; }
__device__ __forceinline__ float as_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float as_float(__half v) { return __half2float(v); }

// One block per row: the row's largest magnitude, its scale, then the codes (round to nearest
// even, saturating at 448: w / s can round to a hair above it).
template <typename T>
__global__ void quantize_fp8_kernel(const T* __restrict__ src, long long cols, unsigned char* __restrict__ codes,
                                    float* __restrict__ scales, int* first_bad_row) {
  const long long row = blockIdx.x;
  const T* in = src + row * cols;
  float amax = 0.0f;
  bool finite = true;
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
    const float v = as_float(in[c]);
    finite = finite && isfinite(v);
    amax = fmaxf(amax, fabsf(v));
  }
  __shared__ float partial[32];
  __shared__ int any_bad;
  if (threadIdx.x == 0) any_bad = 0;
  __syncthreads();
  if (!finite) any_bad = 1;
  amax = warp_max(amax);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = amax;
  __syncthreads();
  amax = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) amax = fmaxf(amax, partial[w]);
  if (any_bad != 0) {
    if (threadIdx.x == 0) atomicMin(first_bad_row, static_cast<int>(row));
    return;
  }
  const float scale = amax / kE4m3Max;
  if (threadIdx.x == 0) scales[row] = scale;
  unsigned char* out = codes + row * device_row_bytes(WeightFormat::FP8, cols);
  for (long long c = threadIdx.x; c < cols; c += blockDim.x) {
    const float q = scale == 0.0f ? 0.0f : __fdiv_rn(as_float(in[c]), scale);
    out[code_place(WeightFormat::FP8, c).byte] = __nv_cvt_float_to_fp8(q, __NV_SATFINITE, __NV_E4M3);
  }
}

template <int FORMAT>
__device__ __forceinline__ float weight_at(const CudaWeight& w, long long r, long long c) {
  if constexpr (FORMAT == static_cast<int>(WeightFormat::Q8)) {
    return q8_weight(static_cast<const signed char*>(w.data), static_cast<const unsigned short*>(w.scales), r, c, w.cols);
  } else if constexpr (FORMAT == static_cast<int>(WeightFormat::Q4)) {
    return q4_weight(static_cast<const unsigned char*>(w.data), static_cast<const unsigned short*>(w.scales), r, c, w.cols);
  } else {
    return fp8_weight(static_cast<const unsigned char*>(w.data), static_cast<const float*>(w.scales), r, c, w.cols);
  }
}

template <int FORMAT>
__global__ void dequantize_kernel(const CudaWeight w, __half* __restrict__ out) {
  for (long long r = blockIdx.x; r < w.rows; r += gridDim.x) {
    for (long long c = threadIdx.x; c < w.cols; c += blockDim.x) out[r * w.cols + c] = __float2half_rn(weight_at<FORMAT>(w, r, c));
  }
}

template <int FORMAT>
__global__ void embed_quantized_kernel(const CudaWeight table, const int* __restrict__ ids, long long ids_stride,
                                       const float* __restrict__ add, long long ld_add, float* __restrict__ out,
                                       long long ld_out) {
  const long long row = blockIdx.x;
  const int id = ids[row * ids_stride];
  const bool valid = id >= 0 && id < table.rows;  // an invalid id embeds as zeros (ids are checked on the host)
  for (long long j = threadIdx.x; j < table.cols; j += blockDim.x) {
    float v = valid ? weight_at<FORMAT>(table, id, j) : 0.0f;
    if (add != nullptr) v = add[row * ld_add + j] + v;
    out[row * ld_out + j] = v;
  }
}

template <template <int> class Kernel, typename Launch>
void by_format(WeightFormat format, Launch&& launch) {
  switch (format) {
    case WeightFormat::Q8: launch(Kernel<static_cast<int>(WeightFormat::Q8)>{}); break;
    case WeightFormat::Q4: launch(Kernel<static_cast<int>(WeightFormat::Q4)>{}); break;
    case WeightFormat::FP8: launch(Kernel<static_cast<int>(WeightFormat::FP8)>{}); break;
    default: fail("cuda", cat("no kernel for ", weight_format_name(format), " weights"));
  }
}

template <int F>
struct Format {
  static constexpr int value = F;
};

}  // namespace

void launch_quantize_fp8(cudaStream_t stream, const void* src, DType src_type, std::int64_t rows, std::int64_t cols,
                         void* codes, float* scales, int* first_bad_row) {
  if (rows == 0) return;
  const auto blocks = static_cast<unsigned>(rows);
  auto* c = static_cast<unsigned char*>(codes);
  switch (src_type) {
    case DType::F32:
      quantize_fp8_kernel<<<blocks, 256, 0, stream>>>(static_cast<const float*>(src), cols, c, scales, first_bad_row);
      break;
    case DType::BF16:
      quantize_fp8_kernel<<<blocks, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(src), cols, c, scales, first_bad_row);
      break;
    case DType::F16:
      quantize_fp8_kernel<<<blocks, 256, 0, stream>>>(static_cast<const __half*>(src), cols, c, scales, first_bad_row);
      break;
    default: fail("cuda", cat("cannot quantize weights of dtype ", dtype_name(src_type), " to fp8"));
  }
  VOXTRAL_CUDA_LAUNCHED("quantize fp8");
}

void launch_dequantize(cudaStream_t stream, const CudaWeight& w, __half* out) {
  if (w.rows * w.cols == 0) return;
  const auto blocks = static_cast<unsigned>(std::min<long long>(w.rows, 65536));
  by_format<Format>(w.format, [&](auto f) {
    dequantize_kernel<decltype(f)::value><<<blocks, 256, 0, stream>>>(w, out);
  });
  VOXTRAL_CUDA_LAUNCHED("dequantize");
}

void launch_embed_quantized(cudaStream_t stream, const CudaWeight& table, const std::int32_t* ids,
                            std::int64_t ids_stride, const float* add, std::int64_t ld_add, float* out,
                            std::int64_t ld_out, std::int64_t rows) {
  if (rows == 0) return;
  by_format<Format>(table.format, [&](auto f) {
    embed_quantized_kernel<decltype(f)::value>
        <<<static_cast<unsigned>(rows), 256, 0, stream>>>(table, ids, ids_stride, add, ld_add, out, ld_out);
  });
  VOXTRAL_CUDA_LAUNCHED("embed");
}

}  // namespace voxtral
