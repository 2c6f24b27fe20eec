// The weight-streaming product of a few rows: y[n, m] = x[n, k] W[m, k]^T for n up to
// streamed_max_rows, the kernel of the decode step (one row per stream). The step is bound by
// reading the weights (6.9 GB at full size), so one pass over them serves up to 8 rows: each
// warp streams two weight rows with 16-byte loads that bypass L1 (four loads in flight per
// lane) and multiplies them with up to 8 activation rows kept in F32. More rows take another
// pass per 8; above the crossover (measured, BENCHMARKS.md) cuBLASLt reads the weights once
// for all rows. One kernel serves every product of the step (the epilogues of
// cuda_streamed.cuh), with RMSNorm of x in the prologue (a norm weight per row: the FFN norms of each stream's
// delay). Numerics are those of the separate ops: the norm is applied element-wise as rms_norm
// does (w * (x * inv_rms)), products accumulate in F32, RoPE uses the same float angles; only
// summation order differs.
//
// Q8/Q4/FP8 weights take their own kernel (cuda_quantized_streamed.cu); this file plans the
// passes for every format.
#include "backend/cuda/cuda_streamed.cuh"

namespace voxtral {

namespace {

constexpr int kWarps = 8;  // per block
constexpr int R = 2;             // weight rows per warp: they share the activation loads, and pairs make the epilogues

__device__ __forceinline__ uint4 load_weights(const void* p, unsigned long long policy) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p), "l"(policy));
  return v;
}

__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

// How one 16-byte load of a weight row becomes floats: group(raw, q, out) gives inputs
// 8q..8q+7 of the load's kPerLoad.
template <typename T>
struct PlainWeights {  // BF16 or F16 values
  using Elem = T;
  __device__ static const void* at(const void* w, long long row, int k, int c) { return static_cast<const T*>(w) + row * k + c; }
  __device__ static void group(const uint4& raw, int, float (&out)[8]) { widen8(raw, out, T{}); }
};

// Registers grow with N: fewer resident blocks for more rows, so that none spill.
template <int N>
constexpr int kMinBlocks = N == 1 ? 5 : N == 2 ? 4 : N == 4 ? 3 : 2;

template <int N, typename F, int MODE, bool kVector>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks<N>) streamed_kernel(const __grid_constant__ StreamArgs a) {
  __shared__ float partial[kWarps][R][N];
  __shared__ float inv_rms_s[N];
  __shared__ int positions_s[N];  // RopePair: what the epilogue needs, fetched before the wait
  __shared__ long long cache_rows_s[N];
#if __CUDA_ARCH__ >= 900
  // Launched as a programmatic dependent (where the backend does): the next kernel may be
  // scheduled now, and this one reads x, y and the caches only once the kernel before it is done.
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
  if constexpr (MODE == kRopePair) fetch_rope_rows<N>(a, positions_s, cache_rows_s);
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int part = warp % a.splits;
  const int unit = blockIdx.x * (kWarps / a.splits) + warp / a.splits;
  const bool active = unit < a.units;
  int rows[R];
  bool row_ok[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    rows[r] = MODE == kSiluPair ? unit + r * (a.m / 2) : 2 * unit + r;
    row_ok[r] = active && rows[r] < a.m;
  }

  // The norm of each activation row; its weight row.
  const float* g[N];
#pragma unroll
  for (int i = 0; i < N; ++i) g[i] = a.norm;
  if (a.norm != nullptr) {
    for (int i = warp; i < a.n; i += kWarps) {
      float ss = 0.0f;
      for (int c = lane * 4; c < a.k; c += 128) {
        const float4 v = *reinterpret_cast<const float4*>(a.x + i * a.ldx + c);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
      ss = warp_sum(ss);
      if (lane == 0) {
        inv_rms_s[i] = norm_row_known(a, i) ? 1.0f / sqrtf(ss / static_cast<float>(a.k) + a.eps) : __int_as_float(0x7fc00000);
      }
    }
    __syncthreads();
    if (a.norm_rows != nullptr) {
#pragma unroll
      for (int i = 0; i < N; ++i) g[i] = i < a.n ? norm_row(a, i) : a.norm;
    }
  }

  const unsigned long long policy = evict_first_policy();  // the weights, read once a step
  float acc[R][N];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < N; ++i) acc[r][i] = 0.0f;
  }
  if constexpr (kVector) {
    constexpr int kStripe = 256;
    const int first = part * a.chunks, last = min(first + a.chunks, (a.k + kStripe - 1) / kStripe);
    constexpr int kInFlight = 2;  // stripes whose loads (of each row) are issued before any is used
    for (int base = first; base < last; base += kInFlight) {
      uint4 wv[R][kInFlight];
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) {
        const int c = (base + u) * kStripe + lane * 8;
#pragma unroll
        for (int r = 0; r < R; ++r) {
          wv[r][u] = make_uint4(0, 0, 0, 0);
          if (row_ok[r] && base + u < last && c < a.k) wv[r][u] = load_weights(F::at(a.w, rows[r], a.k, c), policy);
        }
      }
#pragma unroll
      for (int u = 0; u < kInFlight; ++u) {
        const int c = (base + u) * kStripe + lane * 8;
        if (base + u >= last || c >= a.k) break;
        float wf[R][8];
#pragma unroll
        for (int r = 0; r < R; ++r) F::group(wv[r][u], 0, wf[r]);
#pragma unroll
        for (int i = 0; i < N; ++i) {
          if (i >= a.n) break;
          float xs[8];
          load8(a.x + i * a.ldx + c, xs);
          if (a.norm != nullptr) {
            float gs[8];
            load8(g[i] + c, gs);
            const float inv = inv_rms_s[i];
#pragma unroll
            for (int j = 0; j < 8; ++j) xs[j] = gs[j] * (xs[j] * inv);
          }
#pragma unroll
          for (int r = 0; r < R; ++r) {
            acc[r][i] += wf[r][0] * xs[0] + wf[r][1] * xs[1] + wf[r][2] * xs[2] + wf[r][3] * xs[3] + wf[r][4] * xs[4] +
                         wf[r][5] * xs[5] + wf[r][6] * xs[6] + wf[r][7] * xs[7];
          }
        }
      }
    }
  } else {  // unaligned or odd widths (never fused with a norm): one value per lane at a time
    using W = typename F::Elem;
    const W* w = static_cast<const W*>(a.w);
    if (part == 0) {
      for (int c = lane; c < a.k; c += 32) {
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const float wv = row_ok[r] ? to_float(w[static_cast<long long>(rows[r]) * a.k + c]) : 0.0f;
#pragma unroll
          for (int i = 0; i < N; ++i) {
            if (i < a.n) acc[r][i] += wv * a.x[i * a.ldx + c];
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int i = 0; i < N; ++i) acc[r][i] = warp_sum(acc[r][i]);
  }
  if (a.splits > 1) {
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int i = 0; i < N; ++i) partial[warp][r][i] = acc[r][i];
      }
    }
    __syncthreads();
    if (part == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int i = 0; i < N; ++i) {
          acc[r][i] = 0.0f;
          for (int p = 0; p < a.splits; ++p) acc[r][i] += partial[warp + p][r][i];
        }
      }
    }
  }
  if constexpr (MODE == kRopePair) __syncthreads();  // positions_s and cache_rows_s, for every warp
  if (lane != 0 || !active || part != 0) return;
  UnitPrefetch ready;
  if constexpr (MODE == kRopePair) ready.positions = positions_s, ready.cache_rows = cache_rows_s;
  write_unit<MODE, R, N>(a, unit, rows, row_ok, acc, ready);
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

template <int N, typename F, int MODE, bool kVector>
void launch_pass(const CudaBackend::Impl& impl, const StreamArgs& a) {
  const auto blocks = static_cast<unsigned>((a.units + kWarps / a.splits - 1) / (kWarps / a.splits));
  VOXTRAL_CUDA_CHECK(launch_programmatic(streamed_kernel<N, F, MODE, kVector>, dim3(blocks), dim3(kWarps * 32), 0,
                                         impl.stream, programmatic_launch(impl), a));
}

template <typename W, int MODE, bool kVector>
void launch_rows(const CudaBackend::Impl& impl, const StreamArgs& a) {
  if (a.n <= 1) {
    launch_pass<1, W, MODE, kVector>(impl, a);
  } else if (a.n <= 2) {
    launch_pass<2, W, MODE, kVector>(impl, a);
  } else if (a.n <= 4) {
    launch_pass<4, W, MODE, kVector>(impl, a);
  } else {
    launch_pass<8, W, MODE, kVector>(impl, a);
  }
}

template <int MODE>
void launch_typed(const CudaBackend::Impl& impl, const StreamArgs& a, const CudaWeight& w, bool vector) {
  using Bf16 = PlainWeights<__nv_bfloat16>;
  using F16 = PlainWeights<__half>;
  if constexpr (MODE == kStore) {
    if (!vector) {
      w.type == ElemType::BF16 ? launch_rows<Bf16, MODE, false>(impl, a) : launch_rows<F16, MODE, false>(impl, a);
      return;
    }
  }
  w.type == ElemType::BF16 ? launch_rows<Bf16, MODE, true>(impl, a) : launch_rows<F16, MODE, true>(impl, a);
}

// Plans the passes (8 rows each) and launches them; false when the shapes do not suit the
// kernel. Only the Store mode without a norm on BF16/F16 weights has a path for unaligned inputs.
bool run(const CudaBackend::Impl& impl, int mode, StreamArgs a, const CudaWeight& w, std::int64_t n) {
  const int pass_rows = static_cast<int>(std::min<std::int64_t>(std::max<std::int64_t>(n, 1), kMaxPassRows));
  bool vector = true;  // BF16/F16: 16-byte loads of weights and inputs
  if (w.quantized()) {
    a.activations = impl.options.exact_matmul ? kF32Activations
                    : w.format == WeightFormat::FP8 ? kF16Activations
                                                    : kInt8Activations;
    if (!quantized_pass_fits(impl, a, w, pass_rows)) return false;
    a.units = mode == kStore ? a.m : mode == kSiluPair ? a.m / 2 : (a.m + 1) / 2;
  } else {
    vector = a.k % 8 == 0 && a.ldx % 4 == 0 && aligned16(a.w) && aligned16(a.x) &&
                        (a.norm == nullptr || (aligned16(a.norm) && a.norm_stride % 4 == 0));
    const bool plain = w.type == ElemType::BF16 || w.type == ElemType::F16;
    if (!plain || (!vector && (mode != kStore || a.norm != nullptr))) return false;
    // Long rows are shared by several warps: shorter chains of loads per warp.
    const int stripes = (a.k + 255) / 256;
    a.splits = stripes >= 32 ? 4 : (stripes >= 16 ? 2 : 1);
    a.chunks = (stripes + a.splits - 1) / a.splits;
    a.units = mode == kSiluPair ? a.m / 2 : (a.m + 1) / 2;
  }
  if (n <= 0 || a.m == 0) return true;
  for (std::int64_t first = 0; first < n; first += kMaxPassRows) {
    StreamArgs pass = a;
    pass.n = static_cast<int>(std::min<std::int64_t>(kMaxPassRows, n - first));
    pass.x = a.x + first * a.ldx;
    pass.y = a.y + first * a.ldy;
    if (a.norm_rows != nullptr) pass.norm_rows = a.norm_rows + first;
    if (mode == kRopePair) pass.rope.positions = a.rope.positions + first, pass.rope.sequences = a.rope.sequences + first;
    if (w.quantized()) {
      launch_quantized_pass(impl, mode, pass, w);
    } else {
      switch (mode) {
        case kStore: launch_typed<kStore>(impl, pass, w, vector); break;
        case kSiluPair: launch_typed<kSiluPair>(impl, pass, w, vector); break;
        default: launch_typed<kRopePair>(impl, pass, w, vector); break;
      }
    }
    VOXTRAL_CUDA_LAUNCHED("streamed product");
  }
  return true;
}

StreamArgs args_for(const CudaWeight& w, const float* x, std::int64_t ldx, const RowNorms* norm, float* y,
                    std::int64_t ldy) {
  StreamArgs a;
  a.w = w.data, a.scales = w.scales, a.row_bytes = w.row_bytes, a.m = static_cast<int>(w.rows), a.k = static_cast<int>(w.cols);
  a.x = x, a.ldx = ldx, a.y = y, a.ldy = ldy;
  if (norm != nullptr) {
    a.norm = norm->table, a.norm_stride = norm->stride, a.norm_rows = norm->rows, a.eps = norm->eps;
    a.norm_count = static_cast<int>(norm->count);
  }
  return a;
}

}  // namespace

bool launch_streamed_linear(const CudaBackend::Impl& impl, const CudaWeight& w, const float* x, std::int64_t ldx,
                            std::int64_t n, const RowNorms* norm, const float* bias, float* y, std::int64_t ldy,
                            Epilogue epilogue) {
  if (norm != nullptr && !impl.fused_decode) return false;
  StreamArgs a = args_for(w, x, ldx, norm, y, ldy);
  a.bias = bias, a.epilogue = static_cast<int>(epilogue);
  return run(impl, kStore, a, w, n);
}

bool launch_streamed_norm_swiglu(const CudaBackend::Impl& impl, const CudaWeight& w, const float* x, std::int64_t ldx,
                                 std::int64_t n, const RowNorms* norm, float* act, std::int64_t ld_act) {
  if (!impl.fused_decode || w.rows % 2 != 0) return false;
  return run(impl, kSiluPair, args_for(w, x, ldx, norm, act, ld_act), w, n);
}

bool launch_streamed_norm_qkv_rope(const CudaBackend::Impl& impl, const CudaWeight& w, const float* x, std::int64_t ldx,
                                   std::int64_t n, const RowNorms* norm, const Tensor& qkv, const KvRows& rows,
                                   const RopeParams& q_rope, const KvCacheLayout& cache, const Tensor& k_cache,
                                   const Tensor& v_cache) {
  // The caller has checked the shapes as rope_kv_append does; these are the kernel's limits.
  const int hd = cache.head_dim;
  if (!impl.fused_decode || hd % 2 != 0 || hd > 256 || k_cache.stride != v_cache.stride) return false;
  StreamArgs a = args_for(w, x, ldx, norm, qkv.ptr<float>(), qkv.stride);
  RopeAppend& r = a.rope;
  r.positions = rows.positions.ptr<int>(), r.sequences = rows.sequences.ptr<int>();
  r.paged = {rows.page_table.ptr<int>(), cache.pages_per_sequence(), cache.rows_per_page(), cache.capacity};
  r.q_width = q_rope.n_heads * hd, r.kv_width = cache.n_kv_heads * hd, r.head_dim = hd;
  r.ld_cache = k_cache.stride, r.k_cache = k_cache.data, r.v_cache = v_cache.data;
  r.cache_bf16 = cache.type == ElemType::BF16;
  for (int j = 0; j < hd / 2; ++j) r.inverse_frequency[j] = rope_inverse_frequency(q_rope.theta, hd, j);
  return run(impl, kRopePair, a, w, n);
}

}  // namespace voxtral
