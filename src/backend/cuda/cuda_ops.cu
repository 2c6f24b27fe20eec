// Row-wise and element-wise kernels: RMSNorm, SiLU-gate, embedding gather, im2col, argmax
// and weight conversion.
#include <cfloat>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

namespace voxtral {

namespace {

// Row i is normalized with norm row norm.rows[i] (row 0 for all without them); a row outside
// the table gives NaN, never another stream's norm.
__global__ void rms_norm_kernel(const float* __restrict__ x, long long ldx, const RowNorms norm, float* __restrict__ y,
                                long long ldy, int cols) {
  const float* in = x + blockIdx.x * ldx;
  float* out = y + blockIdx.x * ldy;
  const long long row = norm.rows != nullptr ? norm.rows[blockIdx.x] : 0;
  const bool known = row >= 0 && row < norm.count;
  const float* w = norm.table + (known ? row : 0) * norm.stride;
  float sum = 0.0f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += in[j] * in[j];
  const float total = block_sum(sum);
  const float inv = known ? 1.0f / sqrtf(total / static_cast<float>(cols) + norm.eps) : __int_as_float(0x7fc00000);
  for (int j = threadIdx.x; j < cols; j += blockDim.x) out[j] = w[j] * (in[j] * inv);
}

// dst[i] = src[indices[i]]; an index outside src gives a NaN row.
__global__ void gather_rows_kernel(const float* __restrict__ src, long long lds, long long src_rows,
                                   const int* __restrict__ indices, long long index_stride, float* __restrict__ dst,
                                   long long ldd, long long cols) {
  const long long r = indices[blockIdx.x * index_stride];
  const bool known = r >= 0 && r < src_rows;
  float* out = dst + blockIdx.x * ldd;
  for (long long j = threadIdx.x; j < cols; j += blockDim.x) out[j] = known ? src[r * lds + j] : __int_as_float(0x7fc00000);
}

__global__ void silu_mul_kernel(const float* __restrict__ gu, long long ld_in, float* __restrict__ y, long long ldy,
                                long long rows, long long half) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= rows * half) return;
  const long long r = i / half, c = i % half;
  const float g = gu[r * ld_in + c];
  const float u = gu[r * ld_in + half + c];
  y[r * ldy + c] = (g / (1.0f + expf(-g))) * u;
}

template <typename W>
__global__ void embed_kernel(const W* __restrict__ table, long long vocab, long long dim, const int* __restrict__ ids,
                             long long ids_stride, const float* __restrict__ add, long long ld_add, float* __restrict__ out,
                             long long ld_out) {
  const long long row = blockIdx.x;
  const int id = ids[row * ids_stride];
  const bool valid = id >= 0 && id < vocab;  // an invalid id embeds as zeros (ids are checked on the host)
  for (long long j = threadIdx.x; j < dim; j += blockDim.x) {
    float v = valid ? static_cast<float>(table[id * dim + j]) : 0.0f;
    if (add != nullptr) v = add[row * ld_add + j] + v;
    out[row * ld_out + j] = v;
  }
}

__global__ void im2col_kernel(const float* __restrict__ in, long long ld_in, long long channels, int kernel,
                              const int* __restrict__ rows, float* __restrict__ out, long long ld_out, long long out_rows) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i >= out_rows * channels * kernel) return;
  const long long t = i / (channels * kernel);
  const long long rest = i % (channels * kernel);
  const long long c = rest / kernel;
  const int k = static_cast<int>(rest % kernel);
  out[t * ld_out + rest] = in[static_cast<long long>(rows[t * kernel + k]) * ld_in + c];
}

// Argmax: many blocks per row fold their best (value, index) into one 64-bit key per row with
// atomicMax (value bits made order-preserving, index inverted so the lowest index wins ties);
// the row's last block turns the key into the id and clears it (argmax_kernel).
__device__ __forceinline__ unsigned long long argmax_key(float v, long long index) {
  unsigned bits = __float_as_uint(v);
  bits = (bits & 0x80000000u) != 0 ? ~bits : (bits | 0x80000000u);
  return (static_cast<unsigned long long>(bits) << 32) | (0xFFFFFFFFu - static_cast<unsigned>(index));
}

constexpr int kArgmaxThreads = 256;
constexpr int kArgmaxItems = 16;  // values per thread, loaded together

// Each block takes kArgmaxThreads * kArgmaxItems logits of one row and folds its best key into
// keys[row] (atomicMax); the row's last block to finish (counted in keys[rows + row]) writes the
// id and resets both words for the next call: one kernel, not a partial and a finishing one.
// Launched as a programmatic dependent where the backend does (it waits for the logits first).
__global__ void argmax_kernel(const float* __restrict__ logits, long long ld, long long cols, long long rows,
                              unsigned long long* __restrict__ keys, int* __restrict__ ids, long long ids_stride) {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  const long long row = blockIdx.y;
  const float* values = logits + row * ld;
  const long long base = static_cast<long long>(blockIdx.x) * kArgmaxThreads * kArgmaxItems + threadIdx.x;
  float v[kArgmaxItems];
#pragma unroll
  for (int i = 0; i < kArgmaxItems; ++i) {
    const long long c = base + static_cast<long long>(i) * kArgmaxThreads;
    v[i] = c < cols ? values[c] : -FLT_MAX;
  }
  unsigned long long best = 0;
#pragma unroll
  for (int i = 0; i < kArgmaxItems; ++i) {
    const long long c = base + static_cast<long long>(i) * kArgmaxThreads;
    if (c < cols) best = max(best, argmax_key(v[i], c));
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) best = max(best, __shfl_xor_sync(0xffffffffu, best, off));
  __shared__ unsigned long long warp_best[kArgmaxThreads / 32];
  if (threadIdx.x % 32 == 0) warp_best[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) best = max(best, warp_best[w]);
    atomicMax(keys + row, best);
    __threadfence();
    unsigned long long* finished = keys + rows + row;
    if (atomicAdd(finished, 1ull) == gridDim.x - 1) {  // every block's key is in
      __threadfence();
      const unsigned long long key = atomicExch(keys + row, 0ull);
      ids[row * ids_stride] = static_cast<int>(0xFFFFFFFFu - static_cast<unsigned>(key & 0xFFFFFFFFull));
      *finished = 0;
    }
  }
}

template <typename In, typename Out>
__global__ void convert_kernel(const In* __restrict__ in, Out* __restrict__ out, long long n) {
  const long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = static_cast<Out>(static_cast<float>(in[i]));
}

unsigned blocks_for(long long n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

void launch_rms_norm(cudaStream_t stream, const float* x, std::int64_t ldx, const RowNorms& norm, float* y,
                     std::int64_t ldy, std::int64_t rows, std::int64_t cols) {
  if (rows == 0) return;
  const int threads = cols >= 2048 ? 1024 : 256;
  rms_norm_kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(x, ldx, norm, y, ldy, static_cast<int>(cols));
  VOXTRAL_CUDA_LAUNCHED("rms_norm");
}

void launch_gather_rows(cudaStream_t stream, const float* src, std::int64_t lds, std::int64_t src_rows,
                        const std::int32_t* indices, std::int64_t index_stride, float* dst, std::int64_t ldd,
                        std::int64_t rows, std::int64_t cols) {
  if (rows == 0 || cols == 0) return;
  gather_rows_kernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(src, lds, src_rows, indices, index_stride, dst, ldd,
                                                                     cols);
  VOXTRAL_CUDA_LAUNCHED("gather_rows");
}

void launch_silu_mul(cudaStream_t stream, const float* gate_up, std::int64_t ld_in, float* y, std::int64_t ldy,
                     std::int64_t rows, std::int64_t half) {
  if (rows * half == 0) return;
  silu_mul_kernel<<<blocks_for(rows * half, 256), 256, 0, stream>>>(gate_up, ld_in, y, ldy, rows, half);
  VOXTRAL_CUDA_LAUNCHED("silu_mul");
}

void launch_embed(cudaStream_t stream, const CudaWeight& table, const std::int32_t* ids, std::int64_t ids_stride,
                  const float* add, std::int64_t ld_add, float* out, std::int64_t ld_out, std::int64_t rows) {
  if (rows == 0) return;
  if (table.type == ElemType::BF16) {
    embed_kernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(table.data), table.rows,
                                                                 table.cols, ids, ids_stride, add, ld_add, out, ld_out);
  } else {
    embed_kernel<<<static_cast<unsigned>(rows), 256, 0, stream>>>(static_cast<const __half*>(table.data), table.rows,
                                                                 table.cols, ids, ids_stride, add, ld_add, out, ld_out);
  }
  VOXTRAL_CUDA_LAUNCHED("embed");
}

void launch_im2col(cudaStream_t stream, const float* in, std::int64_t ld_in, std::int64_t channels, int kernel,
                   const int* rows, float* out, std::int64_t ld_out, std::int64_t out_rows) {
  const long long n = out_rows * channels * kernel;
  if (n == 0) return;
  im2col_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(in, ld_in, channels, kernel, rows, out, ld_out, out_rows);
  VOXTRAL_CUDA_LAUNCHED("im2col");
}

void launch_argmax(cudaStream_t stream, const float* logits, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                   std::int32_t* ids, std::int64_t ids_stride, unsigned long long* keys, bool programmatic) {
  if (rows == 0) return;
  const auto per_block = static_cast<long long>(kArgmaxThreads) * kArgmaxItems;
  const dim3 grid(static_cast<unsigned>((cols + per_block - 1) / per_block), static_cast<unsigned>(rows));
  VOXTRAL_CUDA_CHECK(launch_programmatic(argmax_kernel, grid, dim3(kArgmaxThreads), 0, stream, programmatic, logits,
                                         static_cast<long long>(ld), static_cast<long long>(cols),
                                         static_cast<long long>(rows), keys, ids, static_cast<long long>(ids_stride)));
  VOXTRAL_CUDA_LAUNCHED("argmax");
}

void launch_convert_weights(cudaStream_t stream, const void* src, DType src_type, void* dst, ElemType dst_type,
                            std::int64_t count) {
  const unsigned blocks = blocks_for(count, 256);
  auto to = [&](auto* typed_src) {
    if (dst_type == ElemType::BF16) {
      convert_kernel<<<blocks, 256, 0, stream>>>(typed_src, static_cast<__nv_bfloat16*>(dst), count);
    } else {
      convert_kernel<<<blocks, 256, 0, stream>>>(typed_src, static_cast<__half*>(dst), count);
    }
  };
  switch (src_type) {
    case DType::F32: to(static_cast<const float*>(src)); break;
    case DType::BF16: to(static_cast<const __nv_bfloat16*>(src)); break;
    case DType::F16: to(static_cast<const __half*>(src)); break;
    default: fail("cuda", cat("cannot convert weights of dtype ", dtype_name(src_type)));
  }
  VOXTRAL_CUDA_LAUNCHED("convert");
}

}  // namespace voxtral
