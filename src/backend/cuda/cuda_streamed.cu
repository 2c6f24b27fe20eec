// The weight-streaming product of a few rows: y[n, m] = x[n, k] W[m, k]^T for n up to
// streamed_max_rows, the kernel of the decode step (one row per stream). The step is bound by
// reading the weights (6.9 GB at full size), so one pass over them serves up to 8 rows: each
// warp streams two weight rows with 16-byte loads that bypass L1 (four loads in flight per
// lane) and multiplies them with up to 8 activation rows kept in F32. More rows take another
// pass per 8; above the crossover (measured, BENCHMARKS.md) cuBLASLt reads the weights once
// for all rows. One kernel serves every product of the step:
//
//   Store      y = x W^T (+ bias), then GELU or the residual add      (linear, LM head)
//   SiluPair   rows u and u + m/2 of [gate; up]: y[u] = silu(gate) * up (norm_swiglu)
//   RopePair   rows 2u, 2u+1 of [q; k; v]: RoPE at each row's position, k and v into the
//              paged cache at each row's sequence                      (norm_qkv_rope)
//
// with RMSNorm of x in the prologue (a norm weight per row: the FFN norms of each stream's
// delay). Numerics are those of the separate ops: the norm is applied element-wise as rms_norm
// does (w * (x * inv_rms)), products accumulate in F32, RoPE uses the same float angles; only
// summation order differs.
//
// The weights come in any format of core/quant.h; a 16-byte load holds 8 BF16/F16 values, 16
// Q8 or FP8 codes (half a block) or 32 Q4 codes (one block). Codes become the exact floats they
// stand for; a Q8/Q4 lane's sums over its block are multiplied by the block's F16 scale
// (loaded beside the codes), an FP8 row's sum by the row's F32 scale at the end.
// In the fast precision Q8/Q4 codes meet int8 activations instead (dp4a; the CPU's fast formula,
// docs/MODEL.md "Weight formats"), the rows quantized once per block into shared memory.
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"
#include "backend/cuda/cuda_quant.cuh"

namespace voxtral {

namespace {

constexpr int kWarps = 8;        // per block
constexpr int kMaxPassRows = 8;  // activation rows per pass over the weights
constexpr int R = 2;             // weight rows per warp: they share the activation loads, and pairs make the epilogues

__device__ __forceinline__ uint4 load_weights(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

// How one 16-byte load of a weight row becomes floats: group(raw, q, out) gives inputs
// 8q..8q+7 of the load's kPerLoad.
template <typename T>
struct PlainWeights {  // BF16 or F16 values
  using Elem = T;
  static constexpr int kPerLoad = 8;
  static constexpr bool kBlockScales = false, kRowScales = false, kInt8 = false;
  __device__ static const void* at(const void* w, long long row, int k, int c) { return static_cast<const T*>(w) + row * k + c; }
  __device__ static void group(const uint4& raw, int, float (&out)[8]) { widen8(raw, out, T{}); }
};

// The quantized formats in their device layout (cuda_quant.cuh): chunk(raw, t, out) gives the
// 4 inputs of chunk t of a lane's 16 bytes.
__device__ __forceinline__ unsigned word_of(const uint4& raw, int t) {
  return t == 0 ? raw.x : t == 1 ? raw.y : t == 2 ? raw.z : raw.w;
}

struct Q8Weights {
  static constexpr int kPerLoad = 16;
  static constexpr bool kBlockScales = true, kRowScales = false, kInt8 = false;
  __device__ static void chunk(const uint4& raw, int t, float* out) { q8x4_to_float(word_of(raw, t), out); }
};

struct Q4Weights {
  static constexpr int kPerLoad = 32;
  static constexpr bool kBlockScales = true, kRowScales = false, kInt8 = false;
  __device__ static void chunk(const uint4& raw, int t, float* out) {
    q4x4_to_float((word_of(raw, t % 4) >> (4 * (t / 4))) & 0x0f0f0f0fu, out);
  }
};

// The fast precision's integer products (--precision fast; docs/MODEL.md "Weight formats"):
// the activations quantized to int8 per block of 32, each chunk's 4 codes times its 4
// activation bytes in one dp4a. codes(raw, t) gives chunk t's 4 codes as signed bytes and
// kBias the code offset (Q4 codes are c, the weight c - 8).
struct Q8Int8Weights : Q8Weights {
  static constexpr bool kInt8 = true;
  static constexpr int kBias = 0;
  __device__ static int codes(const uint4& raw, int t) { return static_cast<int>(word_of(raw, t)); }
};

struct Q4Int8Weights : Q4Weights {
  static constexpr bool kInt8 = true;
  static constexpr int kBias = 8;
  __device__ static int codes(const uint4& raw, int t) {
    return static_cast<int>((word_of(raw, t % 4) >> (4 * (t / 4))) & 0x0f0f0f0fu);
  }
};

struct Fp8Weights {
  static constexpr int kPerLoad = 16;
  static constexpr bool kBlockScales = false, kRowScales = true, kInt8 = false;
  __device__ static void chunk(const uint4& raw, int t, float* out) { e4m3x4_to_float(word_of(raw, t), out); }
};

__device__ __forceinline__ float load_block_scale(const void* scales, long long at) {
  return f16_bits_to_float(__ldg(static_cast<const unsigned short*>(scales) + at));
}
__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

enum Mode : int { kStore = 0, kSiluPair = 1, kRopePair = 2 };

struct RopeAppend {
  const int* positions = nullptr;
  const int* sequences = nullptr;
  PagedRows paged;
  int q_width = 0, kv_width = 0, head_dim = 0;
  long long ld_cache = 0;
  void* k_cache = nullptr;
  void* v_cache = nullptr;
  bool cache_bf16 = false;
  float inverse_frequency[128] = {};
};

struct StreamArgs {
  const void* w = nullptr;
  const void* scales = nullptr;  // Q8/Q4: F16 per block; FP8: F32 per row
  long long row_bytes = 0;       // quantized formats: bytes of a row in the device layout
  int m = 0, k = 0;
  const float* x = nullptr;
  long long ldx = 0;
  int n = 0;                        // activation rows of this pass (at most the kernel's N)
  const float* norm = nullptr;      // null: x is used as it is
  long long norm_stride = 0;
  const int* norm_rows = nullptr;   // null: every row uses norm row 0
  int norm_count = 1;               // rows of the norm table (an index outside gives NaN)
  float eps = 0;
  const float* bias = nullptr;
  float* y = nullptr;
  long long ldy = 0;
  int epilogue = 0;
  int splits = 1;  // warps sharing one unit of rows, each over its own stripes of k
  int chunks = 1;  // 256-column stripes per warp
  int units = 0;
  bool int8 = false;  // the fast precision's integer products (Q8/Q4)
  RopeAppend rope;
};

// Registers grow with N: fewer resident blocks for more rows, so that none spill.
template <int N, typename F>
constexpr int kMinBlocks = F::kPerLoad == 8 ? (N == 1 ? 5 : N == 2 ? 4 : N == 4 ? 3 : 2) : (N == 1 ? 3 : 2);

template <int N, typename F, int MODE, bool kVector>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks<N, F>) streamed_kernel(const __grid_constant__ StreamArgs a) {
  __shared__ float partial[kWarps][R][N];
  __shared__ float inv_rms_s[N];
  extern __shared__ float normed_x[];  // quantized formats with a norm: the normalized rows [n, k]
  constexpr bool kQuantized = F::kPerLoad > 8;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int part = warp % a.splits;
  // A block works on per_block units at once, and where the grid is narrower than the units
  // (the quantized formats: one wave, so that the norm prologue runs once per block) on those
  // a grid's width further on, and so on.
  const int per_block = kWarps / a.splits;
  const int first_unit = blockIdx.x * per_block;
  int unit = 0;
  bool active = false;
  int rows[R];
  bool row_ok[R];
  auto take_unit = [&](int block_unit) {
    unit = block_unit + warp / a.splits;
    active = unit < a.units;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      rows[r] = MODE == kSiluPair ? unit + r * (a.m / 2) : 2 * unit + r;
      row_ok[r] = active && rows[r] < a.m;
    }
  };
  take_unit(first_unit);

  // Quantized formats: lane l's 16 bytes of a stripe hold its chunks t of inputs 128 t + 4 l +
  // (0..3) of the stripe (cuda_quant.cuh), so each chunk's activation load is 128 consecutive
  // floats. A warp's stripes (at most kInFlightQ: run() splits longer rows over more warps) are
  // all loaded at once, the first ones before the norm prologue, which runs while they arrive.
  constexpr int kInFlightQ = kQuantized ? 4 : 1;
  constexpr int kStripeQ = 32 * F::kPerLoad;  // inputs
  constexpr int kBlocksQ = kStripeQ / 32;     // 32-input blocks of a stripe
  const int first_q = part * a.chunks, last_q = min(first_q + a.chunks, (a.k + kStripeQ - 1) / kStripeQ);
  uint4 wv_q[R][kInFlightQ];
  float scale_q[R][kInFlightQ];  // block (lane % kBlocksQ) of the stripe; chunks take theirs by shuffle
  auto load_stripes = [&](int base) {
#pragma unroll
    for (int u = 0; u < kInFlightQ; ++u) {
      const int stripe = base + u;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        wv_q[r][u] = make_uint4(0, 0, 0, 0);
        scale_q[r][u] = 0.0f;
        if (row_ok[r] && stripe < last_q) {
          wv_q[r][u] = load_weights(static_cast<const char*>(a.w) + rows[r] * a.row_bytes + stripe * 512LL + lane * 16);
          if constexpr (F::kBlockScales) {
            const int block = stripe * kBlocksQ + lane % kBlocksQ;
            if (block < a.k / 32) scale_q[r][u] = load_block_scale(a.scales, static_cast<long long>(rows[r]) * (a.k / 32) + block);
          }
        }
      }
    }
  };
  if constexpr (kQuantized) load_stripes(first_q);

  // The norm of each activation row, once per block; its weight row.
  const float* g[N];
#pragma unroll
  for (int i = 0; i < N; ++i) g[i] = a.norm;
  if (a.norm != nullptr && kQuantized) {
    for (int i = 0; i < a.n; ++i) {  // all warps at once: the block waits for it
      float ss = 0.0f;
      for (int c = threadIdx.x * 4; c < a.k; c += kWarps * 32 * 4) {
        const float4 v = *reinterpret_cast<const float4*>(a.x + i * a.ldx + c);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
      ss = block_sum(ss);
      const int row = a.norm_rows != nullptr ? a.norm_rows[i] : 0;
      const bool known = row >= 0 && row < a.norm_count;
      if (threadIdx.x == 0) inv_rms_s[i] = known ? 1.0f / sqrtf(ss / static_cast<float>(a.k) + a.eps) : __int_as_float(0x7fc00000);
    }
  }
  if (a.norm != nullptr) {
    for (int i = warp; i < a.n && !kQuantized; i += kWarps) {
      float ss = 0.0f;
      for (int c = lane * 4; c < a.k; c += 128) {
        const float4 v = *reinterpret_cast<const float4*>(a.x + i * a.ldx + c);
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
      }
      ss = warp_sum(ss);
      const int row = a.norm_rows != nullptr ? a.norm_rows[i] : 0;
      const bool known = row >= 0 && row < a.norm_count;
      if (lane == 0) inv_rms_s[i] = known ? 1.0f / sqrtf(ss / static_cast<float>(a.k) + a.eps) : __int_as_float(0x7fc00000);
    }
    __syncthreads();
    if (a.norm_rows != nullptr) {
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const int row = i < a.n ? a.norm_rows[i] : 0;
        g[i] = a.norm + static_cast<long long>(row >= 0 && row < a.norm_count ? row : 0) * a.norm_stride;
      }
    }
    if constexpr (kQuantized && !F::kInt8) {  // as rms_norm computes it, once per block
      for (int i = 0; i < a.n; ++i) {
        const float inv = inv_rms_s[i];
        const float* gi = a.norm + (a.norm_rows != nullptr && a.norm_rows[i] >= 0 && a.norm_rows[i] < a.norm_count
                                        ? static_cast<long long>(a.norm_rows[i]) * a.norm_stride
                                        : 0);
        for (int c = threadIdx.x * 4; c < a.k; c += kWarps * 32 * 4) {
          const float4 v = *reinterpret_cast<const float4*>(a.x + i * a.ldx + c);
          const float4 w = *reinterpret_cast<const float4*>(gi + c);
          *reinterpret_cast<float4*>(normed_x + static_cast<long long>(i) * a.k + c) =
              make_float4(w.x * (v.x * inv), w.y * (v.y * inv), w.z * (v.z * inv), w.w * (v.w * inv));
        }
      }
      __syncthreads();
    }
  }
  // The fast precision: every activation row (normalized as rms_norm does) quantized once per
  // block into shared memory, as the CPU's fast products do: per block of 32 inputs m = max|x|,
  // a = round(x * (127 / m)) ties to even (0 where m < 2^-120 or not finite), s = m / 127.
  // An octet of lanes holds one block (4 inputs a lane); run() asks k % 128 == 0, so whole
  // warps stay in the loop together. The rounding adds 1.5 * 2^23 (round to nearest even
  // leaves the integer in the low bits; no contraction into the product: __fmul_rn).
  if constexpr (F::kInt8) {
    signed char* xq = reinterpret_cast<signed char*>(normed_x);
    float* xs = reinterpret_cast<float*>(xq + static_cast<long long>(a.n) * a.k);
    for (int i = 0; i < a.n; ++i) {
      const float* gi = nullptr;
      float inv = 1.0f;
      if (a.norm != nullptr) {
        inv = inv_rms_s[i];
        gi = a.norm + (a.norm_rows != nullptr && a.norm_rows[i] >= 0 && a.norm_rows[i] < a.norm_count
                           ? static_cast<long long>(a.norm_rows[i]) * a.norm_stride
                           : 0);
      }
      for (int c = threadIdx.x * 4; c < a.k; c += kWarps * 32 * 4) {
        float4 v = *reinterpret_cast<const float4*>(a.x + i * a.ldx + c);
        if (gi != nullptr) {
          const float4 w = *reinterpret_cast<const float4*>(gi + c);
          v = make_float4(w.x * (v.x * inv), w.y * (v.y * inv), w.z * (v.z * inv), w.w * (v.w * inv));
        }
        float m = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
        for (int o = 1; o < 8; o *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        const bool ok = m >= 0x1p-120f && m <= 3.402823466e38f;
        const float up = ok ? 127.0f / m : 0.0f;
        auto q = [&](float x) { return __float_as_uint(__fadd_rn(__fmul_rn(x, up), 12582912.0f)); };
        const unsigned lo = __byte_perm(q(v.x), q(v.y), 0x0040), hi = __byte_perm(q(v.z), q(v.w), 0x0040);
        *reinterpret_cast<unsigned*>(xq + static_cast<long long>(i) * a.k + c) = __byte_perm(lo, hi, 0x5410);
        if (lane % 8 == 0) xs[i * (a.k / 32) + c / 32] = ok ? m / 127.0f : 0.0f;
      }
    }
    __syncthreads();
  }
  // One unit of rows: its product, then its epilogue (an inlined lambda, so that the one-unit
  // grids of BF16/F16 keep the registers of straight-line code).
  auto process = [&](int block_unit) {
    if (block_unit != first_unit) {
      take_unit(block_unit);
      if constexpr (kQuantized) load_stripes(first_q);
    }
    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int i = 0; i < N; ++i) acc[r][i] = 0.0f;
    }
    if constexpr (F::kInt8) {
      // A lane's chunk is 4 inputs of one block: dp4a sums its 4 code-activation products
      // exactly; the block's F16 scale d and activation scale s then weigh that integer.
      constexpr int kChunks = F::kPerLoad / 4;
      const int nb = a.k / 32;
      const signed char* xq = reinterpret_cast<const signed char*>(normed_x);
      const float* xs = reinterpret_cast<const float*>(xq + static_cast<long long>(a.n) * a.k);
      for (int base = first_q; base < last_q; base += kInFlightQ) {
        if (base != first_q) load_stripes(base);
#pragma unroll
        for (int u = 0; u < kInFlightQ; ++u) {
          const int stripe = base + u;
          if (stripe >= last_q) break;
#pragma unroll
          for (int t = 0; t < kChunks; ++t) {
            const int c = stripe * kStripeQ + 128 * t + 4 * lane;
            float d[R];
#pragma unroll
            for (int r = 0; r < R; ++r) d[r] = __shfl_sync(0xffffffffu, scale_q[r][u], (4 * t + lane / 8) % kBlocksQ);
            if (c >= a.k) continue;  // past the row's end (its padding)
            int q[R];
#pragma unroll
            for (int r = 0; r < R; ++r) q[r] = F::codes(wv_q[r][u], t);
#pragma unroll
            for (int i = 0; i < N; ++i) {
              if (i >= a.n) break;
              const int av = *reinterpret_cast<const int*>(xq + static_cast<long long>(i) * a.k + c);
              const float s = xs[i * nb + c / 32];
              const int start = F::kBias != 0 ? __dp4a(av, -0x07070708, 0) : 0;  // bytes -8: -8 sum a
#pragma unroll
              for (int r = 0; r < R; ++r) acc[r][i] += (d[r] * s) * static_cast<float>(__dp4a(q[r], av, start));
            }
          }
        }
      }
    } else if constexpr (kQuantized) {
      constexpr int kChunks = F::kPerLoad / 4;
      constexpr int kInFlight = kInFlightQ;
      constexpr int kBlocks = kBlocksQ;
      constexpr int kStripe = kStripeQ;
      const float* xb = a.norm != nullptr ? normed_x : a.x;
      const long long ldx = a.norm != nullptr ? a.k : a.ldx;
      const int last = last_q;
      auto& wv = wv_q;
      auto& lane_scale = scale_q;
      for (int base = first_q; base < last; base += kInFlight) {
        if (base != first_q) load_stripes(base);
#pragma unroll
        for (int u = 0; u < kInFlight; ++u) {
          const int stripe = base + u;
          if (stripe >= last) break;
#pragma unroll
          for (int t = 0; t < kChunks; ++t) {
            float scale[R];
#pragma unroll
            for (int r = 0; r < R; ++r) {
              scale[r] = F::kBlockScales ? __shfl_sync(0xffffffffu, lane_scale[r][u], (4 * t + lane / 8) % kBlocks) : 1.0f;
            }
            const int c = stripe * kStripe + 128 * t + 4 * lane;
            if (c >= a.k) continue;  // past the row's end (its padding)
            float wf[R][4];
#pragma unroll
            for (int r = 0; r < R; ++r) F::chunk(wv[r][u], t, wf[r]);
#pragma unroll
            for (int i = 0; i < N; ++i) {
              if (i >= a.n) break;
              const float4 xv = *reinterpret_cast<const float4*>(xb + i * ldx + c);
#pragma unroll
              for (int r = 0; r < R; ++r) {
                const float dot = wf[r][0] * xv.x + wf[r][1] * xv.y + wf[r][2] * xv.z + wf[r][3] * xv.w;
                if constexpr (F::kBlockScales) {
                  acc[r][i] += scale[r] * dot;
                } else {
                  acc[r][i] += dot;
                }
              }
            }
          }
        }
      }
    } else if constexpr (kVector) {
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
            if (row_ok[r] && base + u < last && c < a.k) wv[r][u] = load_weights(F::at(a.w, rows[r], a.k, c));
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
    } else {  // unaligned or odd widths (never fused with a norm; BF16/F16 only): one value per lane at a time
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
      __syncthreads();  // the partial sums are read before the next unit's are written
    }
    if (lane != 0 || !active || part != 0) return;
    if constexpr (F::kRowScales) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float s = row_ok[r] ? static_cast<const float*>(a.scales)[rows[r]] : 0.0f;
#pragma unroll
        for (int i = 0; i < N; ++i) acc[r][i] *= s;
      }
    }

#pragma unroll
    for (int i = 0; i < N; ++i) {
      if (i >= a.n) break;
      float* y = a.y + i * a.ldy;
      if constexpr (MODE == kSiluPair) {
        const float gate = acc[0][i], up = acc[1][i];
        y[unit] = (gate / (1.0f + expf(-gate))) * up;
      } else if constexpr (MODE == kRopePair) {
        const RopeAppend& rp = a.rope;
        const int col = 2 * unit;
        float v0 = acc[0][i], v1 = acc[1][i];
        const int pos = rp.positions[i];
        if (col < rp.q_width + rp.kv_width) {
          float s, c;
          sincosf(static_cast<float>(pos) * rp.inverse_frequency[(col % rp.head_dim) / 2], &s, &c);
          const float r0 = v0 * c - v1 * s, r1 = v1 * c + v0 * s;
          v0 = r0, v1 = r1;
        }
        y[col] = v0;
        y[col + 1] = v1;
        if (col >= rp.q_width) {
          const bool is_k = col < rp.q_width + rp.kv_width;
          const long long at =
              cache_row(rp.paged, rp.sequences[i], pos) * rp.ld_cache + col - rp.q_width - (is_k ? 0 : rp.kv_width);
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
          float v = acc[r][i] + (a.bias != nullptr ? a.bias[rows[r]] : 0.0f);
          if (a.epilogue == static_cast<int>(Epilogue::Gelu)) v = gelu(v);
          if (a.epilogue == static_cast<int>(Epilogue::Add)) v += y[rows[r]];
          y[rows[r]] = v;
        }
      }
    }
  };
  if constexpr (kQuantized) {
    for (int block_unit = first_unit; block_unit < a.units; block_unit += gridDim.x * per_block) process(block_unit);
  } else {
    process(first_unit);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

// Shared memory of a pass's normalized rows (quantized formats with a norm), or of its int8
// rows and their block scales (the fast precision's Q8/Q4 products, with or without a norm).
std::size_t normed_bytes(bool quantized, const StreamArgs& a) {
  if (a.int8) return static_cast<std::size_t>(a.n) * (a.k + a.k / 32 * sizeof(float));
  return quantized && a.norm != nullptr ? static_cast<std::size_t>(a.n) * a.k * sizeof(float) : 0;
}
constexpr std::size_t kMaxNormedBytes = 44 << 10;  // with the static arrays, under 48 KB (no opt-in)

template <int N, typename F, int MODE, bool kVector>
void launch_pass(const CudaBackend::Impl& impl, const StreamArgs& a) {
  unsigned blocks = static_cast<unsigned>((a.units + kWarps / a.splits - 1) / (kWarps / a.splits));
  // Quantized formats: one wave of blocks, each over many units, so that the norm prologue (and
  // its shared normalized rows) is paid once per block, not once per 16 rows.
  if constexpr (F::kPerLoad > 8) blocks = std::min<unsigned>(blocks, impl.props.multiProcessorCount * kMinBlocks<N, F>);
  streamed_kernel<N, F, MODE, kVector><<<blocks, kWarps * 32, normed_bytes(F::kPerLoad > 8, a), impl.stream>>>(a);
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
  switch (w.format) {
    case WeightFormat::Q8: a.int8 ? launch_rows<Q8Int8Weights, MODE, true>(impl, a) : launch_rows<Q8Weights, MODE, true>(impl, a); return;
    case WeightFormat::Q4: a.int8 ? launch_rows<Q4Int8Weights, MODE, true>(impl, a) : launch_rows<Q4Weights, MODE, true>(impl, a); return;
    case WeightFormat::FP8: launch_rows<Fp8Weights, MODE, true>(impl, a); return;
    default: break;
  }
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

// Inputs of one 16-byte load of a row of `w`.
int per_load(const CudaWeight& w) {
  switch (w.format) {
    case WeightFormat::Q8:
    case WeightFormat::FP8: return 16;
    case WeightFormat::Q4: return 32;
    default: return 8;
  }
}

// Plans the passes (8 rows each) and launches them; false when the shapes do not suit the
// kernel. Only the Store mode without a norm on BF16/F16 weights has a path for unaligned inputs.
bool run(const CudaBackend::Impl& impl, int mode, StreamArgs a, const CudaWeight& w, std::int64_t n) {
  const int width = per_load(w);
  const bool vector = a.k % width == 0 && a.ldx % 4 == 0 && aligned16(a.w) && aligned16(a.x) &&
                      (a.norm == nullptr || (aligned16(a.norm) && a.norm_stride % 4 == 0));
  const bool plain = !w.quantized() && (w.type == ElemType::BF16 || w.type == ElemType::F16);
  if ((!plain && !w.quantized()) || (!vector && (mode != kStore || a.norm != nullptr || !plain))) return false;
  // The fast precision multiplies Q8/Q4 codes by int8 activations where a pass's rows fit in
  // shared memory; elsewhere (and in exact precision) the codes become floats.
  const std::size_t pass_rows = static_cast<std::size_t>(std::min<std::int64_t>(n, kMaxPassRows));
  a.int8 = vector && !impl.options.exact_matmul && (w.format == WeightFormat::Q8 || w.format == WeightFormat::Q4) &&
           a.k % 128 == 0 && pass_rows * (a.k + a.k / 32 * sizeof(float)) <= kMaxNormedBytes;
  if (w.quantized() && a.norm != nullptr && !a.int8 && pass_rows * a.k * sizeof(float) > kMaxNormedBytes) {
    return false;
  }
  if (n <= 0 || a.m == 0) return true;
  // Long rows are shared by several warps: shorter chains of loads per warp. A quantized row's
  // stripes are loaded at once, at most 4 a warp (kInFlightQ). (Not splitting quantized rows,
  // which spares the block-wide sync of each unit's partial sums, measured slower: 2.38 ms
  // against 2.20 for the Q4 step, the w2 and wo products then running on 1.5 blocks per SM.)
  const int stripes = (a.k + 32 * width - 1) / (32 * width);
  a.splits = stripes >= 32 ? 4 : (stripes >= 16 ? 2 : 1);
  if (w.quantized()) {
    a.splits = 1;
    while (a.splits < kWarps && (stripes + a.splits - 1) / a.splits > 4) a.splits *= 2;
  }
  a.chunks = (stripes + a.splits - 1) / a.splits;
  a.units = mode == kSiluPair ? a.m / 2 : (a.m + 1) / 2;
  for (std::int64_t first = 0; first < n; first += kMaxPassRows) {
    StreamArgs pass = a;
    pass.n = static_cast<int>(std::min<std::int64_t>(kMaxPassRows, n - first));
    pass.x = a.x + first * a.ldx;
    pass.y = a.y + first * a.ldy;
    if (a.norm_rows != nullptr) pass.norm_rows = a.norm_rows + first;
    if (mode == kRopePair) pass.rope.positions = a.rope.positions + first, pass.rope.sequences = a.rope.sequences + first;
    switch (mode) {
      case kStore: launch_typed<kStore>(impl, pass, w, vector); break;
      case kSiluPair: launch_typed<kSiluPair>(impl, pass, w, vector); break;
      default: launch_typed<kRopePair>(impl, pass, w, vector); break;
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
