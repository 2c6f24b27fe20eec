// Attention of the decode step: N query rows, each its own sequence (stream) and position,
// over its sequence's keys in the paged K/V cache. The step's other kernels (the products
// with RMSNorm, RoPE and the K/V append, SiLU-gate fused) are in cuda_streamed.cu.
#include <algorithm>
#include <cfloat>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

namespace voxtral {

namespace {

// Block (K/V head, split, row) takes slices of the row's window lo..pos for all query heads
// of that K/V head. Its keys and values come into shared memory by cp.async all at once, so a block
// waits for memory once (the first version loaded tile after tile and was a chain of ~10
// dependent loads: ~12 us a layer at short context, 3x the bandwidth's time at long
// context). A window of at most policy.max_keys keys takes one block (no merge); a longer one
// takes slices of 32 keys while that gives at most policy.splits of them (32 for one row, fewer
// for many), then longer, up to policy.max_keys: one row's long window spreads over ~130-260
// blocks. The last
// block of a (row, K/V head) to finish merges the slices' partial results. The grid has at
// most as many splits per row as the full window needs, fewer when many rows fill the GPU:
// a block then takes every gridDim.y-th slice. Splits past a row's window return at once,
// so the grid serves every step of a recorded graph. Scores are kept in log2 units (exp2 in
// the softmax and the merge).

// Threads of a block (CudaKernelChoices::decode_attention_threads): 256, 512 or 1024; more
// threads give a short window's one block per K/V head more warps in its dependent phases
// (measured, BENCHMARKS.md, issue 17).
constexpr int kMaxGroup = 4;       // query heads per K/V head (the real model's GQA)
constexpr int kMinKeysPerBlock = 32;
constexpr int kMaxKeysPerBlock = 128;  // the policy's largest slice
constexpr int kMaxSplits = 256;    // partial results the merge takes
constexpr int kRowPadBytes = 16;   // per shared K/V row: spreads the rows over the banks

__host__ __device__ __forceinline__ int keys_per_block(int n_keys, DecodeAttentionPolicy policy) {
  int keys = kMinKeysPerBlock;
  // A window that fits one slice takes one block: the merge's extra round trips cost more than
  // the slices' parallel work at short context (BENCHMARKS.md, issue 17).
  if (n_keys <= policy.max_keys) {
    while (keys < n_keys) keys *= 2;
    return keys;
  }
  while (keys < policy.max_keys && (n_keys + keys - 1) / keys > policy.splits) keys *= 2;
  return keys;
}

template <typename C>
__host__ __device__ constexpr int row_elems(int hd) {  // a shared K or V row with its padding
  return hd + kRowPadBytes / static_cast<int>(sizeof(C));
}

template <typename C>
std::size_t attention_shared_bytes(int keys, int hd, int threads) {
  const std::size_t slices = 2 * static_cast<std::size_t>(keys) * row_elems<C>(hd) * sizeof(C) +
                             static_cast<std::size_t>(kMaxGroup) * (hd + keys) * sizeof(float);
  const std::size_t merge = sizeof(float) * kMaxGroup * kMaxSplits + sizeof(float4) * threads;
  return std::max(slices, merge);
}

struct DecodeAttentionArgs {
  const float* q;
  long long ldq;
  const int* positions;
  const int* sequences;
  PagedRows paged;
  DecodeAttentionPolicy policy;
  int group, head_dim, window, max_splits, n_heads, n_kv_heads;
  long long ldc;
  float scale;      // 1/sqrt(head_dim) * log2(e)
  float* part_out;  // [rows][n_heads][max_splits][head_dim]
  float* part_max;  // [rows][n_heads][max_splits]
  float* part_sum;
  int* finished;    // per row and K/V head: blocks done (the last one merges, then resets it)
  float* out;
  long long ldo;
};

__device__ __forceinline__ void copy16_async(void* shared, const void* global) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(global));
}

__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

template <typename C, int kThreads>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(const DecodeAttentionArgs a, const C* __restrict__ k_cache, const C* __restrict__ v_cache) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  __shared__ float stat[kMaxGroup][2];              // per query head: max, sum
  __shared__ long long key_rows[kMaxKeysPerBlock];  // the slice's keys' first elements in the cache
  __shared__ bool merges;
  const int kv_head = blockIdx.x, G = a.group, hd = a.head_dim;
  const int t = threadIdx.x, lane = t % 32, warp = t / 32;
  const int q_row = blockIdx.z;
  // The row's position, sequence and pages are the step's inputs, copied before its first kernel
  // and never written by a kernel of the step (launch_decode_attention's contract): so they are
  // read, and the first slice's keys found, before waiting for the q|k|v product.
  const int pos = a.positions[q_row], sequence = a.sequences[q_row];
  const int lo = max(0, pos - a.window + 1);
  const int per_block = keys_per_block(pos - lo + 1, a.policy);
  const int splits = (pos - lo + per_block) / per_block;
  auto find_keys = [&](int start, int count) {
    for (int key = t; key < count; key += kThreads) {
      key_rows[key] = cache_row(a.paged, sequence, start + key) * a.ldc + static_cast<long long>(kv_head) * hd;
    }
  };
  if (static_cast<int>(blockIdx.y) < splits) {
    const int start = lo + static_cast<int>(blockIdx.y) * per_block;
    find_keys(start, min(per_block, pos + 1 - start));
  }
#if __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent of the q|k|v product (where the backend does): wait for
  // it before reading q or the cache. The next product (also one) may start loading its
  // weights now; it reads this kernel's output only after this grid has finished.
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  if (static_cast<int>(blockIdx.y) >= splits) return;
  const long long col = static_cast<long long>(kv_head) * hd;
  const int row = row_elems<C>(hd);
  C* k_s = reinterpret_cast<C*>(shared_bytes);
  C* v_s = k_s + static_cast<long long>(per_block) * row;
  float* q_s = reinterpret_cast<float*>(v_s + static_cast<long long>(per_block) * row);
  float* p_s = q_s + kMaxGroup * hd;  // [G][per_block]
  const float* q = a.q + q_row * a.ldq;
  float* out = a.out + q_row * a.ldo;
  const long long first_head = static_cast<long long>(q_row) * a.n_heads + static_cast<long long>(kv_head) * G;
  // q comes with the first slice's keys and values (one wait for both), scaled in the scores.
  for (int i = 4 * t; i < G * hd; i += 4 * kThreads) copy16_async(q_s + i, q + col * G + i);

  for (int split = blockIdx.y; split < splits; split += gridDim.y) {
    const int start = lo + split * per_block;
    const int count = min(per_block, pos + 1 - start);

    // Each key's place in the cache once (the page lookup's divisions cost more than the
    // copies; the first slice's were found before the wait), then every key and value row of
    // the slice in flight at once: consecutive threads take the 16-byte chunks of one key's
    // row of K, then of V.
    if (split != static_cast<int>(blockIdx.y)) find_keys(start, count);
    __syncthreads();
    const int chunks_per_row = hd * static_cast<int>(sizeof(C)) / 16, per_key = 2 * chunks_per_row;
    const bool pow2 = (per_key & (per_key - 1)) == 0;
    const int shift = __ffs(per_key) - 1;
    for (int i = t; i < count * per_key; i += kThreads) {
      const int key = pow2 ? i >> shift : i / per_key, rest = i - key * per_key;
      const int which = rest >= chunks_per_row, chunk = rest - which * chunks_per_row;
      const C* src = (which == 0 ? k_cache : v_cache) + key_rows[key];
      C* dst = (which == 0 ? k_s : v_s) + key * row;
      copy16_async(reinterpret_cast<char*>(dst) + chunk * 16, reinterpret_cast<const char*>(src) + chunk * 16);
    }
    asm volatile("cp.async.commit_group;");
    asm volatile("cp.async.wait_group 0;");
    __syncthreads();

    // Scores: threads_per_key threads share a key, each taking interleaved pairs of dimensions.
    const int threads_per_key = kThreads / per_block;
    {
      const int key = t / threads_per_key, part = t % threads_per_key;
      float s[kMaxGroup] = {};
      if (key < count) {
        const C* kp = k_s + key * row;
        for (int d = 2 * part; d < hd; d += 2 * threads_per_key) {
          const float2 kv = load2(kp + d);
  #pragma unroll
          for (int g = 0; g < kMaxGroup; ++g) {
            if (g < G) s[g] += kv.x * q_s[g * hd + d] + kv.y * q_s[g * hd + d + 1];
          }
        }
      }
  #pragma unroll
      for (int g = 0; g < kMaxGroup; ++g) {
        for (int offset = threads_per_key / 2; offset > 0; offset /= 2) s[g] += __shfl_xor_sync(0xffffffffu, s[g], offset);
        if (g < G && part == 0 && key < count) p_s[g * per_block + key] = s[g] * a.scale;
      }
    }
    __syncthreads();
    // Softmax pieces: warp g takes query head g.
    if (warp < G) {
      float* ps = p_s + warp * per_block;
      float m = -FLT_MAX;
      for (int k = lane; k < count; k += 32) m = fmaxf(m, ps[k]);
      m = warp_max(m);
      float total = 0.0f;
      for (int k = lane; k < count; k += 32) {
        const float e = exp2f(ps[k] - m);
        ps[k] = e;
        total += e;
      }
      total = warp_sum(total);
      if (lane == 0) stat[warp][0] = m, stat[warp][1] = total;
    }
    __syncthreads();

    // Values: a thread takes two dimensions of one query head over a share of the keys (four
    // chains); where the block has more threads than pairs of dimensions, `parts` threads share
    // a pair's keys and their sums meet in shared memory (in the K and V tiles, once read).
    // parts * pairs float2 sums must fit in the K and V tiles (2 * per_block rows of `row` elements).
    const int pairs = G * hd / 2;
    const int fit = static_cast<int>(2 * per_block * row * sizeof(C) / (pairs * sizeof(float2)));
    const int parts = max(1, min(kThreads / pairs, fit));
    const int pair = t % pairs, part = t / pairs;
    const int g = 2 * pair / hd, d = 2 * pair % hd;
    const int per_part = (count + parts - 1) / parts, k0 = min(count, part * per_part), k1 = min(count, k0 + per_part);
    float2 sum = make_float2(0.0f, 0.0f);
    if (part < parts) {
      const float* ps = p_s + g * per_block;
      float2 acc[4] = {};
      int k = k0;
      for (; k + 3 < k1; k += 4) {
  #pragma unroll
        for (int u = 0; u < 4; ++u) {
          const float2 v = load2(v_s + (k + u) * row + d);
          acc[u].x += ps[k + u] * v.x, acc[u].y += ps[k + u] * v.y;
        }
      }
      for (; k < k1; ++k) {
        const float2 v = load2(v_s + k * row + d);
        acc[0].x += ps[k] * v.x, acc[0].y += ps[k] * v.y;
      }
      sum = make_float2(acc[0].x + acc[1].x + acc[2].x + acc[3].x, acc[0].y + acc[1].y + acc[2].y + acc[3].y);
    }
    if (parts > 1) {
      // [parts][pairs], within the K and V tiles (`fit`), which every thread has finished reading
      // after the sync.
      auto* part_sums = reinterpret_cast<float2*>(shared_bytes);
      __syncthreads();
      if (part < parts) part_sums[part * pairs + pair] = sum;
      __syncthreads();
      if (part == 0) {
        for (int p = 1; p < parts; ++p) sum.x += part_sums[p * pairs + pair].x, sum.y += part_sums[p * pairs + pair].y;
      }
    }
    if (part == 0) {
      if (splits == 1) {
        const float inv = 1.0f / stat[g][1];
        *reinterpret_cast<float2*>(out + (col * G + g * hd) + d) = make_float2(sum.x * inv, sum.y * inv);
      } else {
        const long long at = (first_head + g) * a.max_splits + split;
        *reinterpret_cast<float2*>(a.part_out + at * hd + d) = sum;
        if (d == 0) a.part_max[at] = stat[g][0], a.part_sum[at] = stat[g][1];
      }
    }
    __syncthreads();  // the next slice reuses the shared tiles and statistics
  }
  if (splits == 1) return;

  // The last block of this row and K/V head to finish merges every split's partial result: one
  // warp per query head turns the splits' maxima and sums into factors, then the threads
  // sum the outputs over the splits, four outputs per thread and the splits shared among
  // thread groups, eight independent loads in flight per thread.
  __threadfence();
  __syncthreads();
  int* finished = a.finished + static_cast<long long>(q_row) * a.n_kv_heads + kv_head;
  const int blocks = min(splits, static_cast<int>(gridDim.y));
  if (t == 0) merges = atomicAdd(finished, 1) == blocks - 1;
  __syncthreads();
  if (!merges) return;
  __threadfence();
  // The merge's per-split factors and partial sums take the slices' shared memory (small
  // static shared memory lets three blocks share a multiprocessor at 128-key slices).
  auto* weight_s = reinterpret_cast<float (*)[kMaxSplits]>(shared_bytes);
  auto* group_totals = reinterpret_cast<float4*>(shared_bytes + sizeof(float) * kMaxGroup * kMaxSplits);
  if (warp < G) {
    const long long base = (first_head + warp) * a.max_splits;
    float m = -FLT_MAX;
    for (int sp = lane; sp < splits; sp += 32) m = fmaxf(m, __ldcg(a.part_max + base + sp));
    m = warp_max(m);
    float total = 0.0f;
    for (int sp = lane; sp < splits; sp += 32) {
      const float f = exp2f(__ldcg(a.part_max + base + sp) - m);
      weight_s[warp][sp] = f;
      total += __ldcg(a.part_sum + base + sp) * f;
    }
    total = warp_sum(total);
    if (lane == 0) stat[warp][1] = total;
  }
  __syncthreads();
  const int quads = G * hd / 4;   // at most kMaxGroup * 256 / 4 = 256 <= kThreads
  const int groups = kThreads / quads;    // thread groups sharing out the splits
  const int quad = t % quads, group = t / quads;
  const int g = quad * 4 / hd, d = quad * 4 % hd;
  const long long head = first_head + g;
  float4 total = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (group < groups) {
    const float4* part = reinterpret_cast<const float4*>(a.part_out + head * a.max_splits * hd + d);
    const int stride = hd / 4;  // float4s from one split's outputs to the next's
    constexpr int kLoads = 8;
    float4 acc[kLoads];
#pragma unroll
    for (int u = 0; u < kLoads; ++u) acc[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    int sp = group;
    for (; sp + (kLoads - 1) * groups < splits; sp += kLoads * groups) {
      float4 v[kLoads];
#pragma unroll
      for (int u = 0; u < kLoads; ++u) v[u] = __ldcg(part + static_cast<long long>(sp + u * groups) * stride);
#pragma unroll
      for (int u = 0; u < kLoads; ++u) {
        const float f = weight_s[g][sp + u * groups];
        acc[u].x += v[u].x * f, acc[u].y += v[u].y * f, acc[u].z += v[u].z * f, acc[u].w += v[u].w * f;
      }
    }
    for (; sp < splits; sp += groups) {
      const float4 v = __ldcg(part + static_cast<long long>(sp) * stride);
      const float f = weight_s[g][sp];
      acc[0].x += v.x * f, acc[0].y += v.y * f, acc[0].z += v.z * f, acc[0].w += v.w * f;
    }
#pragma unroll
    for (int u = 0; u < kLoads; ++u) total.x += acc[u].x, total.y += acc[u].y, total.z += acc[u].z, total.w += acc[u].w;
  }
  if (group < groups) group_totals[group * quads + quad] = total;
  __syncthreads();
  if (t < quads) {
    float4 v = group_totals[t];
    for (int gr = 1; gr < groups; ++gr) {
      const float4 w = group_totals[gr * quads + t];
      v.x += w.x, v.y += w.y, v.z += w.z, v.w += w.w;
    }
    const float inv = 1.0f / stat[g][1];
    *reinterpret_cast<float4*>(out + (col * G + g * hd) + d) = make_float4(v.x * inv, v.y * inv, v.z * inv, v.w * inv);
  }
  if (t == 0) *finished = 0;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace

bool launch_decode_attention(CudaBackend::Impl& impl, const Tensor& q, const KvRows& rows, int n_heads,
                             const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) {
  const int hd = cache.head_dim, group = n_heads / cache.n_kv_heads;
  const std::size_t es = cache.type == ElemType::BF16 ? 2 : 4;
  if (!impl.fused_attention || out.rows != q.rows || group > kMaxGroup || hd > 256 || hd % 32 != 0 ||
      group * hd / 2 > 256 || k_cache.stride * es % 16 != 0 || v_cache.stride != k_cache.stride ||
      q.stride % 4 != 0 || out.stride % 4 != 0 || q.rows > 65535 || !aligned16(k_cache.data) ||
      !aligned16(v_cache.data) || !aligned16(q.data) || !aligned16(out.data)) {
    return false;
  }
  if (q.rows == 0) return true;
  DecodeAttentionArgs a{};
  a.q = q.ptr<float>(), a.ldq = q.stride;
  a.positions = rows.positions.ptr<int>(), a.sequences = rows.sequences.ptr<int>();
  a.paged = {rows.page_table.ptr<int>(), cache.pages_per_sequence(), cache.rows_per_page(), cache.capacity};
  a.group = group, a.head_dim = hd, a.window = cache.window, a.n_heads = n_heads, a.n_kv_heads = cache.n_kv_heads;
  a.policy = impl.attention_policy;
  // One row spreads its window over up to 32 slices; many rows fill the GPU by themselves, so
  // each takes fewer, longer slices (a short window then needs no merge).
  const std::int64_t per_row = cache.n_kv_heads * q.rows;
  a.policy.splits =
      static_cast<int>(std::clamp<std::int64_t>(4LL * impl.props.multiProcessorCount / per_row, 1, a.policy.splits));
  a.max_splits = 1;  // the most slices any window length up to the full one uses (runs once per graph capture)
  int max_keys = kMinKeysPerBlock;
  for (int n = 1; n <= std::min(cache.window, cache.capacity); ++n) {
    const int per_block = keys_per_block(n, a.policy);
    a.max_splits = std::max(a.max_splits, (n + per_block - 1) / per_block);
    max_keys = std::max(max_keys, per_block);  // the kernel lays a slice out by per_block, also past a short window
  }
  if (a.max_splits > kMaxSplits) return false;  // the merge's factors would not fit
  a.ldc = k_cache.stride;
  a.scale = 1.0f / sqrtf(static_cast<float>(hd)) * 1.4426950408889634f;
  const std::size_t partials = static_cast<std::size_t>(q.rows) * n_heads * a.max_splits;
  auto* scratch = static_cast<float*>(impl.scratch(impl.attention_partials, partials * (hd + 2) * sizeof(float)));
  a.part_out = scratch;
  a.part_max = scratch + partials * hd;
  a.part_sum = a.part_max + partials;
  const std::size_t counter_bytes = static_cast<std::size_t>(q.rows) * cache.n_kv_heads * sizeof(int);
  if (counter_bytes > impl.attention_counters.bytes) {
    impl.scratch(impl.attention_counters, counter_bytes);
    VOXTRAL_CUDA_CHECK(cudaMemsetAsync(impl.attention_counters.data, 0, impl.attention_counters.bytes, impl.stream));
  }
  a.finished = static_cast<int*>(impl.attention_counters.data);
  a.out = out.ptr<float>(), a.ldo = out.stride;
  // One or two rows fill the GPU only with their slices: up to 2048 threads per multiprocessor.
  // More rows take about one wave of resident blocks (3 per multiprocessor at 75 KB of shared
  // memory) and a block walks several slices: blocks past a short window still take a slot
  // of a wave before they return (a 64-row step at context 64: 4.57 -> 4.35 ms).
  const int threads = impl.options.kernels.decode_attention_threads;
  const std::int64_t target = (q.rows <= 2 ? 2048LL / threads : 3LL) * impl.props.multiProcessorCount;
  const auto splits = static_cast<unsigned>(std::clamp<std::int64_t>((target + per_row - 1) / per_row, 1, a.max_splits));
  const dim3 grid(static_cast<unsigned>(cache.n_kv_heads), splits, static_cast<unsigned>(q.rows));
  // Past 48 KB of shared memory a kernel must ask; asked once per size (never inside a graph
  // capture: the eager run before it asks first).
  auto launch = [&](auto kernel, auto elem, std::size_t& allowed) {
    using C = decltype(elem);
    const std::size_t shared = attention_shared_bytes<C>(max_keys, hd, threads);
    if (shared > allowed) {
      VOXTRAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
      VOXTRAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                              cudaSharedmemCarveoutMaxShared));
      allowed = shared;
    }
    VOXTRAL_CUDA_CHECK(launch_programmatic(kernel, grid, dim3(static_cast<unsigned>(threads)), shared, impl.stream,
                                           programmatic_launch(impl), a, k_cache.ptr<const C>(), v_cache.ptr<const C>()));
  };
  auto* allowed = impl.decode_attention_shared;  // [cache type][256, 512, 1024 threads]
  if (cache.type == ElemType::BF16) {
    if (threads == 1024) launch(decode_attention_kernel<__nv_bfloat16, 1024>, __nv_bfloat16{}, allowed[2]);
    else if (threads == 512) launch(decode_attention_kernel<__nv_bfloat16, 512>, __nv_bfloat16{}, allowed[1]);
    else launch(decode_attention_kernel<__nv_bfloat16, 256>, __nv_bfloat16{}, allowed[0]);
  } else {
    if (threads == 1024) launch(decode_attention_kernel<float, 1024>, float{}, allowed[5]);
    else if (threads == 512) launch(decode_attention_kernel<float, 512>, float{}, allowed[4]);
    else launch(decode_attention_kernel<float, 256>, float{}, allowed[3]);
  }  // the constructor allows 256, 512 or 1024 threads only
  VOXTRAL_CUDA_LAUNCHED("decode_attention");
  return true;
}

}  // namespace voxtral
