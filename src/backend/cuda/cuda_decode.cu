// The one-row kernels of the decode step: five launches per decoder layer.
//
//   norm_qkv_rope   RMSNorm + q|k|v projection + RoPE + K/V append     (here)
//   attention       all query heads of a K/V head over its window      (here, merged in-kernel)
//   wo              projection + residual add                          (cuda_linear.cu)
//   norm_swiglu     RMSNorm + gate|up projection + SiLU-gate           (here)
//   w2              projection + residual add                          (cuda_linear.cu)
// and the LM head with its final RMSNorm (here).
//
// The step is bound by reading the weights (6.9 GB per token at full size): the matrix
// kernels stream them with 16-byte loads that bypass L1, two rows per warp sharing the
// activation loads, four loads per lane in flight. The small ops that used to be launches
// of their own (RMSNorm, RoPE with the K/V append, SiLU-gate, the attention merge) ride in
// prologues and epilogues, which takes ~130 launches out of a step.
//
// Numerics are those of the separate ops: the norm is applied element-wise as rms_norm does
// (w * (x * inv_rms)), products accumulate in F32, RoPE uses the same float angles; only
// summation order differs.
#include <cfloat>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

namespace voxtral {

namespace {

constexpr int kWarps = 8;  // per block of the matrix kernels

// Weights are read once per step: bypass L1 so they do not evict the activations.
__device__ __forceinline__ uint4 load_weights(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

enum Mode : int {
  kStore = 0,     // rows 2u, 2u+1: y[row] = v (+ bias)
  kSiluPair = 1,  // rows u and u + m/2 of [gate; up]: y[u] = silu(gate) * up
  kRopePair = 2,  // rows 2u, 2u+1 of [q; k; v]: RoPE on q and k, k and v into the caches
};

struct RopeAppend {
  const int* position = nullptr;
  int q_width = 0, kv_width = 0, head_dim = 0, capacity = 0;
  long long ld_cache = 0;
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  bool cache_bf16 = false;
  float inverse_frequency[128] = {};
};

struct GemvArgs {
  const void* w = nullptr;
  int m = 0, k = 0;
  const float* x = nullptr;
  const float* norm = nullptr;  // null: x is used as it is
  float eps = 0;
  const float* bias = nullptr;
  float* y = nullptr;
  int splits = 1;  // warps sharing one unit of rows, each over its own stripes of k
  int chunks = 1;  // 256-column stripes per warp
  int units = 0;
  RopeAppend rope;
};

template <typename W, int MODE>
__global__ void __launch_bounds__(kWarps * 32, 5) decode_gemv_kernel(const __grid_constant__ GemvArgs a) {
  constexpr int R = 2;  // rows per warp: they share the activation loads, and pairs make the epilogues
  __shared__ float partial[kWarps][R];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int unit = blockIdx.x * (kWarps / a.splits) + warp / a.splits;
  const int part = warp % a.splits;
  const bool active = unit < a.units;
  int rows[R];
  bool row_ok[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rows[r] = MODE == kSiluPair ? unit + r * (a.m / 2) : 2 * unit + r;
    row_ok[r] = active && rows[r] < a.m;
  }

  float inv_rms = 1.0f;
  if (a.norm != nullptr) {
    float ss = 0.0f;
    for (int c = lane * 4; c < a.k; c += 128) {
      const float4 v = *reinterpret_cast<const float4*>(a.x + c);
      ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    inv_rms = 1.0f / sqrtf(warp_sum(ss) / static_cast<float>(a.k) + a.eps);
  }
  const W* w = static_cast<const W*>(a.w);
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = 0.0f;
  const int first = part * a.chunks, last = min(first + a.chunks, (a.k + 255) / 256);
  constexpr int kInFlight = 2;  // stripes whose loads (of each row) are issued before any is used
  for (int base = first; base < last; base += kInFlight) {
    uint4 wv[R][kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int c = (base + u) * 256 + lane * 8;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        wv[r][u] = make_uint4(0, 0, 0, 0);
        if (row_ok[r] && base + u < last && c < a.k) wv[r][u] = load_weights(w + static_cast<long long>(rows[r]) * a.k + c);
      }
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int c = (base + u) * 256 + lane * 8;
      if (base + u >= last || c >= a.k) break;
      const float4 x0 = *reinterpret_cast<const float4*>(a.x + c), x1 = *reinterpret_cast<const float4*>(a.x + c + 4);
      float xs[8] = {x0.x, x0.y, x0.z, x0.w, x1.x, x1.y, x1.z, x1.w};
      if (a.norm != nullptr) {
        const float4 g0 = *reinterpret_cast<const float4*>(a.norm + c), g1 = *reinterpret_cast<const float4*>(a.norm + c + 4);
        const float gs[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
#pragma unroll
        for (int j = 0; j < 8; ++j) xs[j] = gs[j] * (xs[j] * inv_rms);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        float wf[8];
        widen8(wv[r][u], wf, W{});
        acc[r] += wf[0] * xs[0] + wf[1] * xs[1] + wf[2] * xs[2] + wf[3] * xs[3] + wf[4] * xs[4] + wf[5] * xs[5] +
                  wf[6] * xs[6] + wf[7] * xs[7];
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
  if (a.splits > 1) {
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) partial[warp][r] = acc[r];
    }
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      acc[r] = 0.0f;
      for (int p = 0; p < a.splits; ++p) acc[r] += partial[warp + p][r];
    }
  }
  if (lane != 0 || !active) return;

  if constexpr (MODE == kSiluPair) {
    const float g = acc[0], u = acc[1];
    a.y[unit] = (g / (1.0f + expf(-g))) * u;
  } else if constexpr (MODE == kRopePair) {
    const RopeAppend& rp = a.rope;
    const int col = 2 * unit;
    float v0 = acc[0], v1 = acc[1];
    const int pos = *rp.position;
    const long long slot = pos % rp.capacity;
    if (col < rp.q_width + rp.kv_width) {
      float s, c;
      sincosf(static_cast<float>(pos) * rp.inverse_frequency[(col % rp.head_dim) / 2], &s, &c);
      const float r0 = v0 * c - v1 * s, r1 = v1 * c + v0 * s;
      v0 = r0, v1 = r1;
    }
    a.y[col] = v0;
    a.y[col + 1] = v1;
    if (col >= rp.q_width) {
      const bool is_k = col < rp.q_width + rp.kv_width;
      const long long at = slot * rp.ld_cache + col - rp.q_width - (is_k ? 0 : rp.kv_width);
      void* cache = is_k ? rp.k_cache : rp.v_cache;
      if (rp.cache_bf16) {
        store_as(static_cast<__nv_bfloat16*>(cache) + at, v0);
        store_as(static_cast<__nv_bfloat16*>(cache) + at + 1, v1);
      } else {
        store_as(static_cast<float*>(cache) + at, v0);
        store_as(static_cast<float*>(cache) + at + 1, v1);
      }
    }
  } else {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (!row_ok[r]) continue;
      a.y[rows[r]] = acc[r] + (a.bias != nullptr ? a.bias[rows[r]] : 0.0f);
    }
  }
}

// ---- attention of one query row
//
// Block (K/V head, split) takes one slice of the window lo..pos for all query heads of that
// K/V head. Its keys and values come into shared memory by cp.async all at once, so a block
// waits for memory once (the first version loaded tile after tile and was a chain of ~10
// dependent loads: ~12 us a layer at short context, 3x the bandwidth's time at long
// context). Slices are 32 keys while that gives at most 32 of them, then longer, up to
// policy.max_keys: short windows spread over 8-32 blocks, long ones over ~130-260. The last
// block of a K/V head to finish merges the slices' partial results. Splits past the window
// return at once, so the grid (sized for the full window) serves every step of a recorded
// graph. Scores are kept in log2 units (exp2 in the softmax and the merge).

constexpr int kAttentionThreads = 256;
constexpr int kMaxGroup = 4;       // query heads per K/V head (the real model's GQA)
constexpr int kMinKeysPerBlock = 32;
constexpr int kMaxSplits = 256;    // partial results the merge takes
constexpr int kRowPadBytes = 16;   // per shared K/V row: spreads the rows over the banks

__host__ __device__ __forceinline__ int keys_per_block(int n_keys, DecodeAttentionPolicy policy) {
  int keys = kMinKeysPerBlock;
  while (keys < policy.max_keys && (n_keys + keys - 1) / keys > 32) keys *= 2;
  return keys;
}

template <typename C>
__host__ __device__ constexpr int row_elems(int hd) {  // a shared K or V row with its padding
  return hd + kRowPadBytes / static_cast<int>(sizeof(C));
}

template <typename C>
std::size_t attention_shared_bytes(int keys, int hd) {
  return 2 * static_cast<std::size_t>(keys) * row_elems<C>(hd) * sizeof(C) +
         static_cast<std::size_t>(kMaxGroup) * (hd + keys) * sizeof(float);
}

struct DecodeAttentionArgs {
  const float* q;
  const int* position;
  DecodeAttentionPolicy policy;
  int group, head_dim, window, capacity, max_splits;
  long long ldc;
  float scale;      // 1/sqrt(head_dim) * log2(e)
  float* part_out;  // [n_heads][max_splits][head_dim]
  float* part_max;  // [n_heads][max_splits]
  float* part_sum;
  int* finished;    // per K/V head: blocks done (the last one merges, then resets it)
  float* out;
};

__device__ __forceinline__ void copy16_async(void* shared, const void* global) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(global));
}

__device__ __forceinline__ float2 load2(const float* p) { return *reinterpret_cast<const float2*>(p); }
__device__ __forceinline__ float2 load2(const __nv_bfloat16* p) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(p));
}

template <typename C>
__global__ void __launch_bounds__(kAttentionThreads)
    decode_attention_kernel(const DecodeAttentionArgs a, const C* __restrict__ k_cache, const C* __restrict__ v_cache) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  __shared__ float stat[kMaxGroup][2];              // per query head: max, sum
  __shared__ float weight_s[kMaxGroup][kMaxSplits];  // the merge's per-split factors
  __shared__ float4 group_totals[kAttentionThreads];
  __shared__ bool merges;
  const int kv_head = blockIdx.x, split = blockIdx.y, G = a.group, hd = a.head_dim;
  const int t = threadIdx.x, lane = t % 32, warp = t / 32;
  const int pos = *a.position;
  const int lo = max(0, pos - a.window + 1);
  const int per_block = keys_per_block(pos - lo + 1, a.policy);
  const int splits = (pos - lo + per_block) / per_block;
  if (split >= splits) return;
  const int start = lo + split * per_block;
  const int count = min(per_block, pos + 1 - start);
  const long long col = static_cast<long long>(kv_head) * hd;
  const int row = row_elems<C>(hd);
  C* k_s = reinterpret_cast<C*>(shared_bytes);
  C* v_s = k_s + static_cast<long long>(per_block) * row;
  float* q_s = reinterpret_cast<float*>(v_s + static_cast<long long>(per_block) * row);
  float* p_s = q_s + kMaxGroup * hd;  // [G][per_block]

  // Every key and value row of the slice in flight at once.
  const int chunks_per_row = hd * static_cast<int>(sizeof(C)) / 16;
  for (int i = t; i < 2 * count * chunks_per_row; i += kAttentionThreads) {
    const int which = i / (count * chunks_per_row), rest = i % (count * chunks_per_row);
    const int key = rest / chunks_per_row, chunk = rest % chunks_per_row;
    const long long at = static_cast<long long>((start + key) % a.capacity) * a.ldc + col;
    const C* src = (which == 0 ? k_cache : v_cache) + at;
    C* dst = (which == 0 ? k_s : v_s) + key * row;
    copy16_async(reinterpret_cast<char*>(dst) + chunk * 16, reinterpret_cast<const char*>(src) + chunk * 16);
  }
  asm volatile("cp.async.commit_group;");
  for (int i = t; i < G * hd; i += kAttentionThreads) q_s[i] = a.q[col * G + i] * a.scale;
  asm volatile("cp.async.wait_group 0;");
  __syncthreads();

  // Scores: threads_per_key threads share a key, each taking interleaved pairs of dimensions.
  const int threads_per_key = kAttentionThreads / per_block;
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
      if (g < G && part == 0 && key < count) p_s[g * per_block + key] = s[g];
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

  // Values: a thread takes two dimensions of one query head, over all keys (four chains).
  for (int i = t; i < G * hd / 2; i += kAttentionThreads) {
    const int g = 2 * i / hd, d = 2 * i % hd;
    const float* ps = p_s + g * per_block;
    float2 acc[4] = {};
    int k = 0;
    for (; k + 3 < count; k += 4) {
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const float2 v = load2(v_s + (k + u) * row + d);
        acc[u].x += ps[k + u] * v.x, acc[u].y += ps[k + u] * v.y;
      }
    }
    for (; k < count; ++k) {
      const float2 v = load2(v_s + k * row + d);
      acc[0].x += ps[k] * v.x, acc[0].y += ps[k] * v.y;
    }
    const float ox = acc[0].x + acc[1].x + acc[2].x + acc[3].x, oy = acc[0].y + acc[1].y + acc[2].y + acc[3].y;
    const long long head = static_cast<long long>(kv_head) * G + g;
    if (splits == 1) {
      const float inv = 1.0f / stat[g][1];
      *reinterpret_cast<float2*>(a.out + head * hd + d) = make_float2(ox * inv, oy * inv);
    } else {
      const long long at = head * a.max_splits + split;
      *reinterpret_cast<float2*>(a.part_out + at * hd + d) = make_float2(ox, oy);
      if (d == 0) a.part_max[at] = stat[g][0], a.part_sum[at] = stat[g][1];
    }
  }
  if (splits == 1) return;

  // The last block of this K/V head to finish merges every split's partial result: one
  // warp per query head turns the splits' maxima and sums into factors, then the threads
  // sum the outputs over the splits, four outputs per thread and the splits shared among
  // thread groups, eight independent loads in flight per thread.
  __threadfence();
  __syncthreads();
  if (t == 0) merges = atomicAdd(a.finished + kv_head, 1) == splits - 1;
  __syncthreads();
  if (!merges) return;
  __threadfence();
  if (warp < G) {
    const long long base = (static_cast<long long>(kv_head) * G + warp) * a.max_splits;
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
  const int quads = G * hd / 4;                    // at most kMaxGroup * 256 / 4 = kAttentionThreads
  const int groups = kAttentionThreads / quads;    // thread groups sharing out the splits
  const int quad = t % quads, group = t / quads;
  const int g = quad * 4 / hd, d = quad * 4 % hd;
  const long long head = static_cast<long long>(kv_head) * G + g;
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
    *reinterpret_cast<float4*>(a.out + head * hd + d) = make_float4(v.x * inv, v.y * inv, v.z * inv, v.w * inv);
  }
  if (t == 0) a.finished[kv_head] = 0;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <typename W>
void launch_gemv_mode(const CudaBackend::Impl& impl, int mode, const GemvArgs& a) {
  const unsigned blocks = static_cast<unsigned>((a.units + kWarps / a.splits - 1) / (kWarps / a.splits));
  const unsigned threads = kWarps * 32;
  switch (mode) {
    case kStore: decode_gemv_kernel<W, kStore><<<blocks, threads, 0, impl.stream>>>(a); break;
    case kSiluPair: decode_gemv_kernel<W, kSiluPair><<<blocks, threads, 0, impl.stream>>>(a); break;
    default: decode_gemv_kernel<W, kRopePair><<<blocks, threads, 0, impl.stream>>>(a); break;
  }
}

// Plans and launches one fused matrix-vector product; false when the shapes do not suit it
// (the caller then runs the separate ops).
bool run_decode_gemv(const CudaBackend::Impl& impl, int mode, GemvArgs a, ElemType type) {
  if ((type != ElemType::BF16 && type != ElemType::F16) || a.k % 8 != 0 || !aligned16(a.w) || !aligned16(a.x) ||
      (a.norm != nullptr && !aligned16(a.norm))) {
    return false;
  }
  // Long rows are shared by several warps: shorter chains of loads per warp.
  a.splits = a.k >= 8192 ? 4 : (a.k >= 4096 ? 2 : 1);
  const int stripes = (a.k + 255) / 256;
  a.chunks = (stripes + a.splits - 1) / a.splits;
  a.units = mode == kSiluPair ? a.m / 2 : (a.m + 1) / 2;
  if (a.units == 0) return true;
  type == ElemType::BF16 ? launch_gemv_mode<__nv_bfloat16>(impl, mode, a) : launch_gemv_mode<__half>(impl, mode, a);
  VOXTRAL_CUDA_LAUNCHED("decode_gemv");
  return true;
}

}  // namespace

bool launch_decode_norm_linear(const CudaBackend::Impl& impl, const float* x, const float* norm, float eps,
                               const CudaWeight& w, const float* bias, float* y, Epilogue epilogue) {
  if (!impl.fused_decode || epilogue != Epilogue::Store) return false;
  GemvArgs a;
  a.w = w.data, a.m = static_cast<int>(w.rows), a.k = static_cast<int>(w.cols);
  a.x = x, a.norm = norm, a.eps = eps, a.bias = bias, a.y = y;
  return run_decode_gemv(impl, kStore, a, w.type);
}

bool launch_decode_norm_swiglu(const CudaBackend::Impl& impl, const float* x, const float* norm, float eps,
                               const CudaWeight& w, float* act) {
  if (!impl.fused_decode || w.rows % 2 != 0) return false;
  GemvArgs a;
  a.w = w.data, a.m = static_cast<int>(w.rows), a.k = static_cast<int>(w.cols);
  a.x = x, a.norm = norm, a.eps = eps, a.y = act;
  return run_decode_gemv(impl, kSiluPair, a, w.type);
}

bool launch_decode_norm_qkv_rope(const CudaBackend::Impl& impl, const float* x, const float* norm, float eps,
                                 const CudaWeight& w, float* qkv, const int* position, const RopeParams& q_rope,
                                 const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache) {
  // The caller has checked the shapes as rope_kv_append does; these are the kernel's limits.
  const int hd = cache.head_dim;
  const int q_width = q_rope.n_heads * hd, kv_width = cache.n_kv_heads * hd;
  if (!impl.fused_decode || hd % 2 != 0 || hd > 256 || k_cache.stride != v_cache.stride) return false;
  GemvArgs a;
  a.w = w.data, a.m = static_cast<int>(w.rows), a.k = static_cast<int>(w.cols);
  a.x = x, a.norm = norm, a.eps = eps, a.y = qkv;
  RopeAppend& r = a.rope;
  r.position = position, r.q_width = q_width, r.kv_width = kv_width, r.head_dim = hd, r.capacity = cache.capacity;
  r.ld_cache = k_cache.stride, r.k_cache = k_cache.data, r.v_cache = v_cache.data;
  r.cache_bf16 = cache.type == ElemType::BF16;
  for (int j = 0; j < hd / 2; ++j) r.inverse_frequency[j] = rope_inverse_frequency(q_rope.theta, hd, j);
  return run_decode_gemv(impl, kRopePair, a, w.type);
}

bool launch_decode_attention(CudaBackend::Impl& impl, const Tensor& q, const int* position, int n_heads,
                             const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) {
  const int hd = cache.head_dim, group = n_heads / cache.n_kv_heads;
  const std::size_t es = cache.type == ElemType::BF16 ? 2 : 4;
  if (!impl.fused_attention || q.rows != 1 || out.rows != 1 || group > kMaxGroup || hd > 256 || hd % 32 != 0 ||
      group * hd / 2 > kAttentionThreads || k_cache.stride * es % 16 != 0 || v_cache.stride != k_cache.stride ||
      !aligned16(k_cache.data) || !aligned16(v_cache.data) || !aligned16(q.data) || !aligned16(out.data)) {
    return false;
  }
  DecodeAttentionArgs a{};
  a.q = q.ptr<float>();
  a.position = position;
  a.group = group, a.head_dim = hd, a.window = cache.window, a.capacity = cache.capacity;
  a.policy = impl.attention_policy;
  a.max_splits = 1;  // the most slices any window length up to the full one uses (runs once per graph capture)
  int max_keys = kMinKeysPerBlock;
  for (int n = 1; n <= std::min(cache.window, cache.capacity); ++n) {
    const int per_block = keys_per_block(n, a.policy);
    a.max_splits = std::max(a.max_splits, (n + per_block - 1) / per_block);
    max_keys = std::max(max_keys, std::min(per_block, n));
  }
  if (a.max_splits > kMaxSplits) return false;  // the merge's factors would not fit
  a.ldc = k_cache.stride;
  a.scale = 1.0f / sqrtf(static_cast<float>(hd)) * 1.4426950408889634f;
  const std::size_t partials = static_cast<std::size_t>(n_heads) * a.max_splits;
  auto* scratch = static_cast<float*>(impl.scratch(impl.attention_partials, partials * (hd + 2) * sizeof(float)));
  a.part_out = scratch;
  a.part_max = scratch + partials * hd;
  a.part_sum = a.part_max + partials;
  const std::size_t counter_bytes = static_cast<std::size_t>(cache.n_kv_heads) * sizeof(int);
  if (counter_bytes > impl.attention_counters.bytes) {
    impl.scratch(impl.attention_counters, counter_bytes);
    VOXTRAL_CUDA_CHECK(cudaMemsetAsync(impl.attention_counters.data, 0, impl.attention_counters.bytes, impl.stream));
  }
  a.finished = static_cast<int*>(impl.attention_counters.data);
  a.out = out.ptr<float>();
  const dim3 grid(static_cast<unsigned>(cache.n_kv_heads), static_cast<unsigned>(a.max_splits));
  // Past 48 KB of shared memory a kernel must ask; asked once per size (never inside a graph
  // capture: the eager run before it asks first).
  auto launch = [&](auto kernel, auto elem, std::size_t& allowed) {
    using C = decltype(elem);
    const std::size_t shared = attention_shared_bytes<C>(max_keys, hd);
    if (shared > allowed) {
      VOXTRAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
      allowed = shared;
    }
    kernel<<<grid, kAttentionThreads, shared, impl.stream>>>(a, k_cache.ptr<const C>(), v_cache.ptr<const C>());
  };
  if (cache.type == ElemType::BF16) {
    launch(decode_attention_kernel<__nv_bfloat16>, __nv_bfloat16{}, impl.decode_attention_shared[0]);
  } else {
    launch(decode_attention_kernel<float>, float{}, impl.decode_attention_shared[1]);
  }
  VOXTRAL_CUDA_LAUNCHED("decode_attention");
  return true;
}

}  // namespace voxtral
