// RoPE with the K/V ring-cache append, and sliding-window attention over the cache.
//
// Attention is split along the keys (flash-decoding): a block takes a tile of query vectors
// (consecutive rows x the query heads that share one K/V head) and one slice of up to
// kKeysPerSplit keys of their windows, stages keys and values in shared memory, and writes
// an unnormalised partial result with its running max and sum; a second kernel merges the
// slices. The grid is sized for the largest window, and each block reads the positions
// from device memory, so one launch serves every step of a recorded decode graph. Keys are
// found through the page table (KvCacheLayout); a tile of rows shares its keys only when the
// rows are consecutive positions of one sequence, otherwise a block takes one row.
// All math is F32; BF16 caches are widened when staged.
#include <cfloat>
#include <cmath>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

namespace voxtral {

namespace {

constexpr int kKeysPerSplit = 64;  // keys of one block, staged at once
constexpr int kThreads = 128;

// Stages the keys (or values) of positions start..start+count-1 of one sequence, columns
// col..col+hd, into tile[t * (hd + 1) + d]. All loads of a thread are issued before any is used.
template <typename C>
__device__ __forceinline__ void stage_rows(const C* __restrict__ cache, long long ldc, const PagedRows& paged, int sequence,
                                           int start, int count, long long col, int hd, float* tile) {
  const int chunks_per_row = hd / 8;
  const int chunks = count * chunks_per_row;
  constexpr int kPerThread = 8;  // up to kKeysPerSplit * 128 / 8 / kThreads chunks
#pragma unroll
  for (int base = 0; base < kPerThread; ++base) {
    const int i = threadIdx.x + base * kThreads;
    if (i >= chunks) break;
    const int t = i / chunks_per_row, d = (i % chunks_per_row) * 8;
    float v[8];
    load8(cache + cache_row(paged, sequence, start + t) * ldc + col + d, v);
#pragma unroll
    for (int j = 0; j < 8; ++j) tile[t * (hd + 1) + d + j] = v[j];
  }
  for (int i = threadIdx.x + kPerThread * kThreads; i < chunks; i += kThreads) {  // head_dim above 128
    const int t = i / chunks_per_row, d = (i % chunks_per_row) * 8;
    float v[8];
    load8(cache + cache_row(paged, sequence, start + t) * ldc + col + d, v);
#pragma unroll
    for (int j = 0; j < 8; ++j) tile[t * (hd + 1) + d + j] = v[j];
  }
}

// The inverse frequencies travel as a kernel argument (computed on the host, as the CPU
// backend does), so a recorded graph needs no extra buffer.
struct InverseFrequencies {
  float values[128];
};

// One thread per rotated pair of q or k, or per copied value of v, so a single decode row
// still spreads over many blocks; each thread computes its own sine and cosine.
template <typename C>
__global__ void rope_kv_kernel(float* __restrict__ q, long long ldq, const float* __restrict__ k, long long ldk,
                               const float* __restrict__ v, long long ldv, const int* __restrict__ positions,
                               const int* __restrict__ sequences, PagedRows paged, int q_heads, int kv_heads,
                               int head_dim, InverseFrequencies inv, C* __restrict__ k_cache, long long ldkc,
                               C* __restrict__ v_cache, long long ldvc) {
  const int half = head_dim / 2;
  const int q_pairs = q_heads * half, k_pairs = kv_heads * half, v_values = kv_heads * head_dim;
  const long long row = blockIdx.y;
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item >= q_pairs + k_pairs + v_values) return;
  const int pos = positions[row];
  const long long slot = cache_row(paged, sequences[row], pos);
  if (item >= q_pairs + k_pairs) {
    const int i = item - q_pairs - k_pairs;
    store_as(v_cache + slot * ldvc + i, v[row * ldv + i]);
    return;
  }
  const bool is_q = item < q_pairs;
  const int pair = is_q ? item : item - q_pairs;
  const int h = pair / half, j = pair % half;
  // As the reference: the inverse frequency rounded to float, times the position as a float.
  float s, c;
  sincosf(static_cast<float>(pos) * inv.values[j], &s, &c);
  if (is_q) {
    float* p = q + row * ldq + h * head_dim + 2 * j;
    const float x0 = p[0], x1 = p[1];
    p[0] = x0 * c - x1 * s;
    p[1] = x1 * c + x0 * s;
  } else {
    const float* p = k + row * ldk + h * head_dim + 2 * j;
    const float x0 = p[0], x1 = p[1];
    C* out = k_cache + slot * ldkc + h * head_dim + 2 * j;
    store_as(out, x0 * c - x1 * s);
    store_as(out + 1, x1 * c + x0 * s);
  }
}

struct AttentionArgs {
  const float* q;
  long long ldq;
  const int* positions;
  const int* sequences;
  PagedRows paged;
  int rows;
  int n_heads;
  int group;      // query heads per K/V head
  int head_dim;
  int window;
  long long ldc;  // cache row stride
  int rows_per_block;  // 1 unless the rows are consecutive positions of one sequence
  int max_splits;
  float scale;
  float* partial_out;  // [rows][n_heads][max_splits][head_dim]
  float* partial_max;  // [rows][n_heads][max_splits]
  float* partial_sum;
};

template <typename C>
__global__ void __launch_bounds__(kThreads)
    attention_split_kernel(AttentionArgs a, const C* __restrict__ k_cache, const C* __restrict__ v_cache) {
  extern __shared__ float smem[];
  const int kv_head = blockIdx.x;
  const int split = blockIdx.y;
  const int row0 = blockIdx.z * a.rows_per_block;
  const int rows = min(a.rows_per_block, a.rows - row0);
  const int qvs = rows * a.group;  // query vectors of this block
  const int hd = a.head_dim;
  float* q_s = smem;                                    // [qvs][hd]
  float* tile = q_s + a.rows_per_block * a.group * hd;  // [kKeysPerSplit][hd + 1]: keys, then values
  float* scores = tile + kKeysPerSplit * (hd + 1);      // [qvs][kKeysPerSplit]
  __shared__ float row_max[32], row_sum[32];

  // The rows' windows: the rows of a block are consecutive positions of one sequence, so
  // their union is a contiguous range of keys.
  const int last_pos = a.positions[row0 + rows - 1];
  const int first_pos = a.positions[row0];
  const int sequence = a.sequences[row0];
  const int lo = max(0, first_pos - a.window + 1);
  const int start = lo + split * kKeysPerSplit;
  const int count = min(kKeysPerSplit, last_pos + 1 - start);
  const long long out_base = (static_cast<long long>(row0) * a.n_heads + kv_head * a.group) * a.max_splits + split;
  if (count <= 0) {
    for (int i = threadIdx.x; i < qvs; i += blockDim.x) {
      const int r = i / a.group, h = i % a.group;
      const long long at = out_base + (static_cast<long long>(r) * a.n_heads + h) * a.max_splits;
      a.partial_max[at] = -FLT_MAX;
      a.partial_sum[at] = 0.0f;
    }
    return;
  }

  const long long col = static_cast<long long>(kv_head) * hd;
  stage_rows(k_cache, a.ldc, a.paged, sequence, start, count, col, hd, tile);
  for (int i = threadIdx.x; i < qvs * hd; i += blockDim.x) {
    const int qv = i / hd, d = i % hd;
    const int r = qv / a.group, h = qv % a.group;
    q_s[i] = a.q[(row0 + r) * a.ldq + (kv_head * a.group + h) * hd + d] * a.scale;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < qvs * kKeysPerSplit; i += blockDim.x) {
    const int qv = i / kKeysPerSplit, t = i % kKeysPerSplit;
    if (t >= count) continue;
    const int key = start + t;
    const int pos = a.positions[row0 + qv / a.group];
    float s = -FLT_MAX;
    if (key <= pos && key > pos - a.window) {
      s = 0.0f;
      const float* qp = q_s + qv * hd;
      const float* kp = tile + t * (hd + 1);
      float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // independent chains (hd is a multiple of 8)
      for (int d = 0; d < hd; d += 4) {
#pragma unroll
        for (int u = 0; u < 4; ++u) part[u] += qp[d + u] * kp[d + u];
      }
      s = (part[0] + part[1]) + (part[2] + part[3]);
    }
    scores[qv * kKeysPerSplit + t] = s;
  }
  __syncthreads();
  stage_rows(v_cache, a.ldc, a.paged, sequence, start, count, col, hd, tile);  // values replace the keys

  // Softmax pieces per query vector: one warp each.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int qv = warp; qv < qvs; qv += blockDim.x / 32) {
    float* s = scores + qv * kKeysPerSplit;
    float m = -FLT_MAX;
    for (int t = lane; t < count; t += 32) m = fmaxf(m, s[t]);
    for (int off = 16; off > 0; off /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    float sum = 0.0f;
    for (int t = lane; t < count; t += 32) {
      const float p = s[t] == -FLT_MAX ? 0.0f : expf(s[t] - m);
      s[t] = p;
      sum += p;
    }
    for (int off = 16; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) {
      row_max[qv] = m;
      row_sum[qv] = sum;
    }
  }
  __syncthreads();

  for (int i = threadIdx.x; i < qvs * hd; i += blockDim.x) {
    const int qv = i / hd, d = i % hd;
    const float* p = scores + qv * kKeysPerSplit;
    float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int t = 0;
    for (; t + 4 <= count; t += 4) {
#pragma unroll
      for (int u = 0; u < 4; ++u) part[u] += p[t + u] * tile[(t + u) * (hd + 1) + d];
    }
    for (; t < count; ++t) part[0] += p[t] * tile[t * (hd + 1) + d];
    const float acc = (part[0] + part[1]) + (part[2] + part[3]);
    const int r = qv / a.group, h = qv % a.group;
    const long long at = out_base + (static_cast<long long>(r) * a.n_heads + h) * a.max_splits;
    a.partial_out[at * hd + d] = acc;
    if (d == 0) {
      a.partial_max[at] = row_max[qv];
      a.partial_sum[at] = row_sum[qv];
    }
  }
}

__global__ void attention_merge_kernel(const float* __restrict__ partial_out, const float* __restrict__ partial_max,
                                       const float* __restrict__ partial_sum, int n_heads, int max_splits, int head_dim,
                                       float* __restrict__ out, long long ldo) {
  const long long row = blockIdx.x;
  const int head = blockIdx.y;
  const long long base = (row * n_heads + head) * max_splits;
  float m = -FLT_MAX;
  for (int s = 0; s < max_splits; ++s) m = fmaxf(m, partial_max[base + s]);
  float total = 0.0f;
  for (int s = 0; s < max_splits; ++s) {
    if (partial_sum[base + s] > 0.0f) total += partial_sum[base + s] * expf(partial_max[base + s] - m);
  }
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < max_splits; ++s) {
      if (partial_sum[base + s] > 0.0f) v += partial_out[(base + s) * head_dim + d] * expf(partial_max[base + s] - m);
    }
    out[row * ldo + static_cast<long long>(head) * head_dim + d] = v / total;
  }
}

PagedRows paged_rows(const KvCacheLayout& cache, const KvRows& rows) {
  return {rows.page_table.ptr<int>(), cache.pages_per_sequence(), cache.rows_per_page(), cache.capacity};
}

}  // namespace

void launch_rope_kv_append(cudaStream_t stream, const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                           const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                           const Tensor& k_cache, const Tensor& v_cache) {
  check_rope_kv_shapes("cuda", q, k, v, rows, q_rope, k_rope, cache, k_cache, v_cache);
  if (q.rows == 0) return;
  if (cache.head_dim > 256) fail("cuda", "rope: head_dim above 256");
  InverseFrequencies inv{};
  for (int j = 0; j < cache.head_dim / 2; ++j) inv.values[j] = rope_inverse_frequency(q_rope.theta, cache.head_dim, j);
  const int items = (q_rope.n_heads + cache.n_kv_heads) * (cache.head_dim / 2) + cache.n_kv_heads * cache.head_dim;
  const dim3 grid(static_cast<unsigned>((items + kThreads - 1) / kThreads), static_cast<unsigned>(q.rows));
  auto go = [&](auto* kc, auto* vc) {
    rope_kv_kernel<<<grid, kThreads, 0, stream>>>(
        q.ptr<float>(), q.stride, k.ptr<float>(), k.stride, v.ptr<float>(), v.stride, rows.positions.ptr<int>(),
        rows.sequences.ptr<int>(), paged_rows(cache, rows), q_rope.n_heads, cache.n_kv_heads, cache.head_dim, inv, kc,
        k_cache.stride, vc, v_cache.stride);
  };
  if (cache.type == ElemType::BF16) {
    go(k_cache.ptr<__nv_bfloat16>(), v_cache.ptr<__nv_bfloat16>());
  } else {
    go(k_cache.ptr<float>(), v_cache.ptr<float>());
  }
  VOXTRAL_CUDA_LAUNCHED("rope_kv_append");
}

void launch_attention(CudaBackend::Impl& impl, const Tensor& q, const KvRows& rows, int n_heads,
                      const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache, const Tensor& out,
                      bool one_sequence) {
  const int hd = cache.head_dim;
  const int group = n_heads / cache.n_kv_heads;
  if (q.cols != static_cast<std::int64_t>(n_heads) * hd || out.cols != q.cols || out.rows != q.rows || group > 32 ||
      hd > 256 || hd % 8 != 0 || k_cache.type != cache.type || k_cache.stride % 8 != 0) {
    fail("cuda", "attention: unsupported shape");
  }
  if (q.rows == 0) return;
  if (one_sequence && launch_attention_mma(impl, q, rows, n_heads, cache, k_cache, v_cache, out)) return;
  // Query vectors per block: enough to share each staged key tile, few enough for shared
  // memory.
  const int max_qvs = std::max(group, std::min(32, 2048 / hd));
  AttentionArgs a{};
  a.q = q.ptr<float>();
  a.ldq = q.stride;
  a.positions = rows.positions.ptr<int>();
  a.sequences = rows.sequences.ptr<int>();
  a.paged = paged_rows(cache, rows);
  a.rows = static_cast<int>(q.rows);
  a.n_heads = n_heads;
  a.group = group;
  a.head_dim = hd;
  a.window = cache.window;
  a.ldc = k_cache.stride;
  a.rows_per_block = one_sequence ? std::max(1, std::min<int>(max_qvs / group, a.rows)) : 1;
  if (a.rows_per_block * group * hd > 4096) fail("cuda", "attention: too many query heads per K/V head");
  const int span = std::min(cache.window, cache.capacity) + a.rows_per_block - 1;
  a.max_splits = (span + kKeysPerSplit - 1) / kKeysPerSplit;
  a.scale = 1.0f / sqrtf(static_cast<float>(hd));
  const std::size_t partials = static_cast<std::size_t>(a.rows) * n_heads * a.max_splits;
  auto* scratch = static_cast<float*>(impl.scratch(impl.attention_partials, partials * (hd + 2) * sizeof(float)));
  a.partial_out = scratch;
  a.partial_max = scratch + partials * hd;
  a.partial_sum = a.partial_max + partials;

  const std::size_t smem = (static_cast<std::size_t>(a.rows_per_block) * group * hd + kKeysPerSplit * (hd + 1) +
                            static_cast<std::size_t>(a.rows_per_block) * group * kKeysPerSplit) * sizeof(float);
  const dim3 grid(static_cast<unsigned>(cache.n_kv_heads), static_cast<unsigned>(a.max_splits),
                  static_cast<unsigned>((a.rows + a.rows_per_block - 1) / a.rows_per_block));
  if (smem > 48 * 1024) fail("cuda", "attention: shared memory tile too large");
  if (cache.type == ElemType::BF16) {
    attention_split_kernel<<<grid, kThreads, smem, impl.stream>>>(a, k_cache.ptr<__nv_bfloat16>(),
                                                                   v_cache.ptr<__nv_bfloat16>());
  } else {
    attention_split_kernel<<<grid, kThreads, smem, impl.stream>>>(a, k_cache.ptr<float>(), v_cache.ptr<float>());
  }
  VOXTRAL_CUDA_LAUNCHED("attention_split");
  attention_merge_kernel<<<dim3(static_cast<unsigned>(a.rows), static_cast<unsigned>(n_heads)), std::min(hd, 256), 0,
                           impl.stream>>>(a.partial_out, a.partial_max, a.partial_sum, n_heads, a.max_splits, hd,
                                          out.ptr<float>(), out.stride);
  VOXTRAL_CUDA_LAUNCHED("attention_merge");
}

}  // namespace voxtral
