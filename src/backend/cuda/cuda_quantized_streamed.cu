// The weight-streaming product of a few rows with Q8, Q4 or FP8 weights (the decode step's
// products; cuda_streamed.cuh names the epilogues). The step is bound by reading the weights,
// so what matters is how many bytes are in flight and how few instructions each weight costs:
//
// - Each warp streams its rows through its own ring of kDepth stages in shared memory: a stage is
//   16 bytes a lane of one weight row (512 bytes, with the stage's F16 block scales), copied by
//   cp.async. A lane consumes only the bytes it copied, so the ring needs no block-wide barrier
//   and 5 stages stay in flight while the warp computes, reduces and writes outputs. The copies
//   carry an L2 evict-first policy: the weights are read once a step, the activations and the
//   K/V cache again.
// - The activation rows are prepared once per block into shared memory (RMSNorm applied as
//   rms_norm does), as F32 in exact precision, or in the fast precision (Q8/Q4) quantized to
//   int8 per block of 32 by the CPU's fast formula (docs/MODEL.md "Weight formats") so that 4
//   code-activation products take one dp4a. Their layout is swizzled so that a warp's loads of
//   one 16-byte chunk a lane meet no bank conflicts.
// - A lane's piece is whole blocks (Q4: one block of 32 codes; Q8: half a block; FP8: 16
//   codes), so each block's scale is applied once per piece.
// - One wave of blocks; warp w takes units w, w + warps, ... (a unit: one row, or the pair of
//   an epilogue), and the ring runs on from one unit's last stage into the next unit's first.
// - Launched as a programmatic dependent (sm_90): the first stages are requested while the
//   kernel before it still runs; x is read, and y written, only after griddepcontrol.wait.
//
// Numerics: exact precision gives sums of float products (the code as its exact float, times the
// F32 activation) weighed per piece by the block's scale (FP8: per row at the end); the fast
// precision gives (d * s) * float(integer dot) per piece, as the CPU's fast products do, and for
// FP8 m * (a lane's 16 products of a code and x / m summed in F16) per piece, m the input
// block's largest magnitude (16 terms in F16: relative error about 1e-3 of a piece).
#include <algorithm>

#include "backend/cuda/cuda_quant.cuh"
#include "backend/cuda/cuda_streamed.cuh"

namespace voxtral {

namespace {

// Warps per block: one block of 24 per SM for one or two activation rows, so that an SM
// prepares the activation rows once, not once per block of 8 (measured, BENCHMARKS.md); blocks of
// 8 for more rows, whose accumulators need more than the 85 registers a 768-thread block allows.
template <int N>
constexpr int kWarpsFor = N <= 2 ? 24 : 8;
constexpr int kDepth = 6;       // stages of a warp's ring: 5 in flight while one is used
constexpr int kScaleSlot = 64;  // bytes of a stage's scales (Q4: 32 blocks; Q8: 16)
constexpr int kSlotBytes = kStageBytes + kScaleSlot;
template <int N>
constexpr int kRingBytes = kWarpsFor<N> * kDepth * kSlotBytes;

struct Q8Format {
  static constexpr WeightFormat kFormat = WeightFormat::Q8;
  static constexpr int kLaneInputs = 16;  // inputs of a lane's 16-byte piece
  static constexpr int kScaleBytes = 32;  // of a stage
};
struct Q4Format {
  static constexpr WeightFormat kFormat = WeightFormat::Q4;
  static constexpr int kLaneInputs = 32;
  static constexpr int kScaleBytes = 64;
};
struct Fp8Format {
  static constexpr WeightFormat kFormat = WeightFormat::FP8;
  static constexpr int kLaneInputs = 16;
  static constexpr int kScaleBytes = 0;  // one F32 scale per row instead
};

__device__ __forceinline__ void copy16(void* shared, const void* global, bool valid, unsigned long long policy) {
  const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;" ::"r"(dst), "l"(global),
               "r"(valid ? 16 : 0), "l"(policy)
               : "memory");
}
__device__ __forceinline__ void copy4(void* shared, const void* global, bool valid) {
  const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(global), "r"(valid ? 4 : 0) : "memory");
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void wait_copies() {
  asm volatile("cp.async.wait_group %0;" ::"n"(Pending) : "memory");
}

__device__ __forceinline__ unsigned word_of(const uint4& v, int t) { return t == 0 ? v.x : t == 1 ? v.y : t == 2 ? v.z : v.w; }
__device__ __forceinline__ __half2 half2_bits(unsigned bits) {
  __half2_raw raw;
  raw.x = static_cast<unsigned short>(bits & 0xffffu), raw.y = static_cast<unsigned short>(bits >> 16);
  return __half2(raw);
}

// The activation rows in shared memory, by lane segments: segment s is the kLaneInputs inputs
// s * kLaneInputs.. (the piece of lane s % 32 in stage s / 32), in 16-byte chunks. Chunk c of
// segment s is stored at chunk s * C + (c ^ swizzle(s)), C chunks a segment, so that the 8 lanes
// of a shared-memory phase reading chunk c of their segments hit 8 different bank groups.
template <int C>
__device__ __forceinline__ int swizzle(int segment) {
  return (segment / (8 / C)) % C;
}
// Index of the 16-byte chunk holding byte offset `at` (bytes kLaneInputs * unit a segment).
template <int SegmentBytes>
__device__ __forceinline__ int chunk_of(long long at) {
  constexpr int C = SegmentBytes / 16;
  const int segment = static_cast<int>(at / SegmentBytes), c = static_cast<int>(at % SegmentBytes) / 16;
  return segment * C + (c ^ swizzle<C>(segment));
}

template <typename F, int N, int MODE, int ACTS>
__global__ void __launch_bounds__(kWarpsFor<N> * 32, N <= 2 ? 1 : 2) quantized_streamed_kernel(const __grid_constant__ StreamArgs a) {
  constexpr int kWarps = kWarpsFor<N>;
  constexpr int R = MODE == kStore ? 1 : 2;
  constexpr int kFloatChunks = F::kLaneInputs / 4;   // F32 activation chunks of a segment
  constexpr int kByteChunks = F::kLaneInputs / 16;   // int8 activation chunks of a segment
  constexpr int kHalfChunks = F::kLaneInputs / 8;    // F16 activation chunks of a segment
  constexpr bool kInt8 = ACTS == kInt8Activations, kHalf = ACTS == kF16Activations;
  extern __shared__ uint4 smem[];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int kpad = static_cast<int>(a.row_bytes / kStageBytes) * stage_inputs(F::kFormat);  // inputs of a padded row
  char* ring = reinterpret_cast<char*>(smem) + warp * kDepth * kSlotBytes;
  char* activations = reinterpret_cast<char*>(smem) + kRingBytes<N>;

  // This warp's rows, in the order they stream: row q of the warp is row q % R of its unit q / R
  // (units gw, gw + warps, ...), each per_row stages long.
  const int warps = gridDim.x * kWarps, gw = blockIdx.x * kWarps + warp;
  const int per_row = static_cast<int>(a.row_bytes / kStageBytes);
  const int my_units = gw < a.units ? (a.units - 1 - gw) / warps + 1 : 0;
  const int my_rows = my_units * R;
  auto row_of = [&](int unit, int r) { return MODE == kSiluPair ? unit + r * (a.m / 2) : R * unit + r; };

  // The producer: the row it issues (its q, the stages left of it, where its next bytes are) and
  // the ring slot its next stage goes to. Per stage it only copies and moves its pointers on;
  // the address arithmetic of a new row happens once per row, out of the stage's path.
  int produced_rows = 0, left_to_issue = 0;
  bool row_valid = false, first_stage = false;
  const char* codes_from = nullptr;
  const char* scales_from = nullptr;
  const float* row_scale_from = nullptr;
  int in_slot = 0;  // byte offset in the ring
  const bool copies_scales = lane < F::kScaleBytes / 16;
  auto start_row = [&]() {
    const int row = row_of(gw + produced_rows / R * warps, produced_rows % R);
    ++produced_rows;
    left_to_issue = per_row;
    first_stage = true;
    row_valid = row < a.m;
    const long long at = row_valid ? row : 0;
    codes_from = static_cast<const char*>(a.w) + at * a.row_bytes + lane * 16;
    scales_from = static_cast<const char*>(a.scales) + at * device_scale_stride(F::kFormat, a.k) * 2 + lane * 16;
    row_scale_from = static_cast<const float*>(a.scales) + at;
  };
  const unsigned long long policy = evict_first_policy();  // the weights, read once a step
  auto issue = [&]() {
    if (left_to_issue == 0 && produced_rows < my_rows) start_row();
    if (left_to_issue > 0) {
      char* slot = ring + in_slot;
      copy16(slot + lane * 16, codes_from, row_valid, policy);
      codes_from += kStageBytes;
      if constexpr (F::kScaleBytes > 0) {
        if (copies_scales) copy16(slot + kStageBytes + lane * 16, scales_from, row_valid, policy);
        scales_from += F::kScaleBytes;
      } else {  // FP8: the row's F32 scale rides with its first stage
        if (first_stage && lane == 0) copy4(slot + kStageBytes, row_scale_from, row_valid);
        first_stage = false;
      }
      --left_to_issue;
    }
    commit_copies();  // empty past the end: the count of groups stays uniform
    in_slot = in_slot + kSlotBytes == kDepth * kSlotBytes ? 0 : in_slot + kSlotBytes;
  };
  // Programmatic dependent launch (sm_90): the next kernel may start its own weight loads
  // while this one runs; this one reads x and writes y only once the previous kernel is done.
  // (No-ops where the launch did not ask for it.)
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
#pragma unroll 1
  for (int s = 0; s < kDepth - 1; ++s) issue();
  // What the epilogues of RopePair units need, once per block (read by the other threads after
  // the barrier that ends the activation rows).
  __shared__ int positions_s[N];
  __shared__ long long cache_rows_s[N];
  if constexpr (MODE == kRopePair) fetch_rope_rows<N>(a, positions_s, cache_rows_s);
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif

  // The activation rows, once per block, while the first stages arrive. A thread's loads of
  // x (and of the norm's weights) go out kBatch at a time: a chain of one L2 round trip per
  // 1024 inputs would cost more than the product's own loads.
  constexpr int kStep = kWarps * 32 * 4;  // inputs the block covers per round
  constexpr int kBatch = 4;
  for (int i = 0; i < a.n; ++i) {
    const float* x = a.x + i * a.ldx;
    const float* g = a.norm != nullptr ? norm_row(a, i) : nullptr;
    float4 xv[kBatch], gv[kBatch];
    auto load_batch = [&](int c0) {
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int c = c0 + b * kStep;
        xv[b] = c < a.k ? *reinterpret_cast<const float4*>(x + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        gv[b] = g != nullptr && c < a.k ? *reinterpret_cast<const float4*>(g + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      }
    };
    const int first = threadIdx.x * 4;
    float inv = 1.0f;
    if (g != nullptr) {
      float ss = 0.0f;
      for (int c0 = first;; c0 += kBatch * kStep) {  // once at least: every thread's first batch is loaded
        load_batch(c0);
#pragma unroll
        for (int b = 0; b < kBatch; ++b) ss += xv[b].x * xv[b].x + xv[b].y * xv[b].y + xv[b].z * xv[b].z + xv[b].w * xv[b].w;
        if (c0 + kBatch * kStep >= a.k) break;
      }
      ss = block_sum(ss);
      inv = norm_row_known(a, i) ? 1.0f / sqrtf(ss / static_cast<float>(a.k) + a.eps) : __int_as_float(0x7fc00000);
    }
    const bool loaded = g != nullptr && a.k <= kBatch * kStep;  // the one batch is in registers
    for (int c0 = first; c0 < kpad; c0 += kBatch * kStep) {  // kpad % 128 == 0: whole warps
      if (!loaded || c0 != first) load_batch(c0);
#pragma unroll
      for (int b = 0; b < kBatch; ++b) {
        const int c = c0 + b * kStep;
        if (c >= kpad) break;
        float4 v = xv[b];
        if (g != nullptr) {  // as rms_norm computes it
          const float4 w = gv[b];
          v = make_float4(w.x * (v.x * inv), w.y * (v.y * inv), w.z * (v.z * inv), w.w * (v.w * inv));
        }
        if constexpr (kInt8) {
          // Per block of 32 inputs (an octet of lanes): m = max|x|, q = round(x * (127 / m)) ties
          // to even (0 where m < 2^-120 or not finite), s = m / 127; adding 1.5 * 2^23 rounds.
          float m = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
          for (int o = 1; o < 8; o *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
          const bool ok = m >= 0x1p-120f && m <= 3.402823466e38f;
          const float up = ok ? 127.0f / m : 0.0f;
          auto q = [&](float e) { return __float_as_uint(__fadd_rn(__fmul_rn(e, up), 12582912.0f)); };
          const unsigned lo = __byte_perm(q(v.x), q(v.y), 0x0040), hi = __byte_perm(q(v.z), q(v.w), 0x0040);
          const unsigned packed = __byte_perm(lo, hi, 0x5410);
          int sum = __dp4a(static_cast<int>(packed), 0x01010101, 0);
#pragma unroll
          for (int o = 1; o < 8; o *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
          char* rows = activations + static_cast<long long>(i) * kpad;
          *reinterpret_cast<unsigned*>(rows + chunk_of<F::kLaneInputs>(c) * 16 + c % 16) = packed;
          if (lane % 8 == 0) {
            auto* scales = reinterpret_cast<float2*>(activations + static_cast<long long>(a.n) * kpad) + i * (kpad / 32);
            scales[c / 32] = make_float2(ok ? m / 127.0f : 0.0f, __int_as_float(sum));
          }
        } else if constexpr (kHalf) {
          // Per block of 32 inputs: x / m in F16 (|x / m| <= 1, so a lane's 8 products of a code
          // (|q| <= 448) and an input stay far inside F16's range), the block's m beside them.
          float m = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
          for (int o = 1; o < 8; o *= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
          const bool ok = m >= 0x1p-120f && m <= 3.402823466e38f;
          const float up = ok ? 1.0f / m : 0.0f;
          const __half2 lo = __floats2half2_rn(v.x * up, v.y * up), hi = __floats2half2_rn(v.z * up, v.w * up);
          char* rows = activations + static_cast<long long>(i) * kpad * 2;
          auto* at = reinterpret_cast<__half2*>(rows + chunk_of<F::kLaneInputs * 2>(2LL * c) * 16 + (2 * c) % 16);
          at[0] = lo, at[1] = hi;
          if (lane % 8 == 0) {
            auto* scales = reinterpret_cast<float2*>(activations + static_cast<long long>(a.n) * kpad * 2) + i * (kpad / 32);
            scales[c / 32] = make_float2(ok ? m : 0.0f, 0.0f);
          }
        } else {
          auto* rows = reinterpret_cast<float4*>(activations) + static_cast<long long>(i) * (kpad / 4);
          rows[chunk_of<F::kLaneInputs * 4>(static_cast<long long>(c) * 4)] = v;
        }
      }
    }
  }
  __syncthreads();

  // The stream of stages: a row's sums gather in `cur`, are summed over the warp when the row
  // ends (FP8: weighed by the row's scale), and written when the unit ends. The lane's
  // activation and block-scale places move on by one stage's inputs per stage and go back to
  // the row's start at its end.
  float cur[N], done[R][N], prior[N] = {};
#pragma unroll
  for (int i = 0; i < N; ++i) {
    cur[i] = 0.0f;
#pragma unroll
    for (int r = 0; r < R; ++r) done[r][i] = 0.0f;
  }
  const int lane_swizzle_f = swizzle<kFloatChunks>(lane), lane_swizzle_b = swizzle<kByteChunks>(lane);
  const int lane_swizzle_h = swizzle<kHalfChunks>(lane);
  // Elements of one activation row in shared memory (bytes per input: 1, 2 or 4), and where the
  // block scales of the rows begin.
  constexpr int kActBytes = kInt8 ? 1 : kHalf ? 2 : 4;
  const char* block_scales = activations + static_cast<long long>(a.n) * kpad * kActBytes;
  // This stage's segment (lane's inputs) within the row, in units of the lane's inputs.
  int segment = lane;
  auto fetch_prior = [&](int unit) {  // Store with Add: y's prior values, so that the unit's end waits for none
    if constexpr (MODE == kStore) {
      if (lane == 0 && a.epilogue == static_cast<int>(Epilogue::Add)) {
#pragma unroll
        for (int i = 0; i < N; ++i) prior[i] = i < a.n && unit < a.m ? a.y[i * a.ldy + unit] : 0.0f;
      }
    }
  };
  int unit = gw, row_in_unit = 0, left_in_row = per_row;
  float row_scale = 0.0f;
  if (my_units > 0) fetch_prior(unit);
  const int stages = my_rows * per_row;
#pragma unroll 1
  for (int s = 0, out_slot = 0; s < stages; ++s) {
    issue();
    wait_copies<kDepth - 1>();
    __syncwarp();  // the stage's scales, copied by other lanes
    const char* slot = ring + out_slot;
    out_slot = out_slot + kSlotBytes == kDepth * kSlotBytes ? 0 : out_slot + kSlotBytes;
    const uint4 codes = *reinterpret_cast<const uint4*>(slot + lane * 16);
    if constexpr (F::kScaleBytes == 0) {
      if (left_in_row == per_row) row_scale = *reinterpret_cast<const float*>(slot + kStageBytes);
    }
    float d = 1.0f;
    if constexpr (F::kScaleBytes > 0) {
      d = f16_bits_to_float(reinterpret_cast<const unsigned short*>(slot + kStageBytes)[lane * (F::kScaleBytes / 2) / 32]);
    }
#pragma unroll
    for (int i = 0; i < N; ++i) {
      if (N > 1 && i >= a.n) break;
      if constexpr (kInt8) {
        const auto* xb = reinterpret_cast<const uint4*>(activations + static_cast<long long>(i) * kpad);
        const auto* xs = reinterpret_cast<const float2*>(block_scales) + i * (kpad / 32);
        const float2 sc = xs[segment * F::kLaneInputs / 32];
        int dot = 0;
        if constexpr (F::kFormat == WeightFormat::Q4) {
          const uint4 lo = xb[segment * 2 + lane_swizzle_b], hi = xb[segment * 2 + (1 ^ lane_swizzle_b)];
#pragma unroll
          for (int t = 0; t < 4; ++t) {
            const unsigned wv = word_of(codes, t);
            dot = __dp4a(static_cast<int>(wv & 0x0f0f0f0fu), static_cast<int>(word_of(lo, t)), dot);
            dot = __dp4a(static_cast<int>((wv >> 4) & 0x0f0f0f0fu), static_cast<int>(word_of(hi, t)), dot);
          }
          dot -= 8 * __float_as_int(sc.y);
        } else {
          const uint4 xv = xb[segment];
#pragma unroll
          for (int t = 0; t < 4; ++t) dot = __dp4a(static_cast<int>(word_of(codes, t)), static_cast<int>(word_of(xv, t)), dot);
        }
        cur[i] += (d * sc.x) * static_cast<float>(dot);
      } else if constexpr (kHalf) {  // FP8 (16 codes a lane)
        const auto* xh = reinterpret_cast<const uint4*>(activations + static_cast<long long>(i) * kpad * 2);
        const auto* xs = reinterpret_cast<const float2*>(block_scales) + i * (kpad / 32);
        const float2 sc = xs[segment * F::kLaneInputs / 32];
        const uint4 first8 = xh[segment * 2 + lane_swizzle_h], last8 = xh[segment * 2 + (1 ^ lane_swizzle_h)];
        __half2 sum = __float2half2_rn(0.0f);
#pragma unroll
        for (int t = 0; t < 4; ++t) {  // codes 4t..4t+3: inputs 4t.. of the lane's 16
          const unsigned wv = word_of(codes, t);
          const __half2_raw w01 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(wv & 0xffffu), __NV_E4M3);
          const __half2_raw w23 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(wv >> 16), __NV_E4M3);
          sum = __hfma2(__half2(w01), half2_bits(word_of(t < 2 ? first8 : last8, (t % 2) * 2)), sum);
          sum = __hfma2(__half2(w23), half2_bits(word_of(t < 2 ? first8 : last8, (t % 2) * 2 + 1)), sum);
        }
        const float2 f = __half22float2(sum);
        cur[i] += sc.x * (f.x + f.y);
      } else {
        const auto* xb = reinterpret_cast<const float4*>(activations) + static_cast<long long>(i) * (kpad / 4) +
                         segment * kFloatChunks;
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < kFloatChunks; ++c) {
          const float4 xv = xb[c ^ lane_swizzle_f];
          float wf[4];
          if constexpr (F::kFormat == WeightFormat::Q4) {
            q4x4_to_float((word_of(codes, c % 4) >> (4 * (c / 4))) & 0x0f0f0f0fu, wf);
          } else if constexpr (F::kFormat == WeightFormat::Q8) {
            q8x4_to_float(word_of(codes, c), wf);
          } else {
            e4m3x4_to_float(word_of(codes, c), wf);
          }
          dot += wf[0] * xv.x + wf[1] * xv.y + wf[2] * xv.z + wf[3] * xv.w;
        }
        cur[i] += d * dot;
      }
    }
    __syncwarp();  // every lane has read the slot before its next copies land there
    segment += 32;
    if (--left_in_row > 0) continue;
    // The row is done.
    left_in_row = per_row;
    segment = lane;
#pragma unroll
    for (int i = 0; i < N; ++i) {
      float v = warp_sum(cur[i]);
      if constexpr (F::kScaleBytes == 0) v *= row_scale;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r == row_in_unit) done[r][i] = v;
      }
      cur[i] = 0.0f;
    }
    if (++row_in_unit < R) continue;
    row_in_unit = 0;
    if (lane == 0) {
      int rows[R];
      bool row_ok[R];
#pragma unroll
      for (int r = 0; r < R; ++r) rows[r] = row_of(unit, r), row_ok[r] = rows[r] < a.m;
      UnitPrefetch ready;
      if constexpr (MODE == kRopePair) ready.positions = positions_s, ready.cache_rows = cache_rows_s;
      if constexpr (MODE == kStore) {
        if (a.epilogue == static_cast<int>(Epilogue::Add)) {
#pragma unroll
          for (int i = 0; i < N; ++i) done[0][i] += prior[i];
          ready.added = true;
        }
      }
      write_unit<MODE, R, N>(a, unit, rows, row_ok, done, ready);
    }
    unit += warps;
    if (s + 1 < stages) fetch_prior(unit);
  }
  wait_copies<0>();
}

// Dynamic shared memory of a pass: the rings (24 or 8 warps'), then the activation rows (and
// their block scales).
std::size_t shared_bytes(const StreamArgs& a, const CudaWeight& w, int rows, bool wide) {
  const std::size_t kpad = static_cast<std::size_t>(w.row_bytes / kStageBytes) * stage_inputs(w.format);
  const std::size_t per_input = a.activations == kF32Activations ? 4 : a.activations == kF16Activations ? 2 : 1;
  const std::size_t block_scales = a.activations == kF32Activations ? 0 : kpad / 32 * sizeof(float2);
  const std::size_t activations = rows * (kpad * per_input + block_scales);
  return (wide ? kRingBytes<1> : kRingBytes<4>) + activations;
}

// Whether a pass of `rows` rows takes the 24-warp blocks: at most two rows, and their shared
// memory within the GPU's limit per block (with room for the static arrays). Where it is not
// (sm_86's 99 KB: exact precision's F32 rows of a 9216-input product beside 24 rings), blocks of
// 8 warps run them, the kernel of 3-4 rows.
constexpr std::size_t kStaticBytes = 1024;
bool wide_blocks(const CudaBackend::Impl& impl, const StreamArgs& a, const CudaWeight& w, int rows) {
  return rows <= 2 && shared_bytes(a, w, rows, true) + kStaticBytes <= impl.props.sharedMemPerBlockOptin;
}

template <typename F, int N, int MODE, int ACTS>
void launch(const CudaBackend::Impl& impl, const StreamArgs& a, std::size_t smem) {
  auto* kernel = quantized_streamed_kernel<F, N, MODE, ACTS>;
  VOXTRAL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  int per_sm = 0;
  constexpr int kWarps = kWarpsFor<N>;
  VOXTRAL_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kWarps * 32, smem));
  const int needed = (a.units + kWarps - 1) / kWarps;
  const int blocks = std::max(1, std::min(needed, std::max(per_sm, 1) * impl.props.multiProcessorCount));
  VOXTRAL_CUDA_CHECK(launch_programmatic(kernel, dim3(static_cast<unsigned>(blocks)), dim3(kWarps * 32), smem,
                                         impl.stream, programmatic_launch(impl), a));
}

template <typename F, int MODE, int ACTS>
void launch_rows(const CudaBackend::Impl& impl, const StreamArgs& a, const CudaWeight& w, std::size_t smem) {
  const bool wide = wide_blocks(impl, a, w, a.n);
  if (a.n <= 1 && wide) {
    launch<F, 1, MODE, ACTS>(impl, a, smem);
  } else if (a.n <= 2 && wide) {
    launch<F, 2, MODE, ACTS>(impl, a, smem);
  } else if (a.n <= 4) {
    launch<F, 4, MODE, ACTS>(impl, a, smem);
  } else {
    launch<F, 8, MODE, ACTS>(impl, a, smem);
  }
}

template <int MODE>
void launch_mode(const CudaBackend::Impl& impl, const StreamArgs& a, const CudaWeight& w, std::size_t smem) {
  switch (w.format) {
    case WeightFormat::Q8:
      a.activations == kInt8Activations ? launch_rows<Q8Format, MODE, kInt8Activations>(impl, a, w, smem)
                                        : launch_rows<Q8Format, MODE, kF32Activations>(impl, a, w, smem);
      return;
    case WeightFormat::Q4:
      a.activations == kInt8Activations ? launch_rows<Q4Format, MODE, kInt8Activations>(impl, a, w, smem)
                                        : launch_rows<Q4Format, MODE, kF32Activations>(impl, a, w, smem);
      return;
    default:
      a.activations == kF16Activations ? launch_rows<Fp8Format, MODE, kF16Activations>(impl, a, w, smem)
                                       : launch_rows<Fp8Format, MODE, kF32Activations>(impl, a, w, smem);
      return;
  }
}

}  // namespace

bool quantized_pass_fits(const CudaBackend::Impl& impl, const StreamArgs& a, const CudaWeight& w, int rows) {
  if (w.row_bytes % kStageBytes != 0 || a.k % 32 != 0 || a.ldx % 4 != 0 ||
      reinterpret_cast<std::uintptr_t>(a.x) % 16 != 0 || reinterpret_cast<std::uintptr_t>(a.w) % 16 != 0 ||
      reinterpret_cast<std::uintptr_t>(a.scales) % 16 != 0 ||
      (a.norm != nullptr && (reinterpret_cast<std::uintptr_t>(a.norm) % 16 != 0 || a.norm_stride % 4 != 0))) {
    return false;
  }
  const int pass = std::min(rows, kMaxPassRows);
  return shared_bytes(a, w, pass, wide_blocks(impl, a, w, pass)) + kStaticBytes <= impl.props.sharedMemPerBlockOptin;
}

void launch_quantized_pass(const CudaBackend::Impl& impl, int mode, const StreamArgs& a, const CudaWeight& w) {
  const std::size_t smem = shared_bytes(a, w, a.n, wide_blocks(impl, a, w, a.n));
  switch (mode) {
    case kStore: launch_mode<kStore>(impl, a, w, smem); break;
    case kSiluPair: launch_mode<kSiluPair>(impl, a, w, smem); break;
    default: launch_mode<kRopePair>(impl, a, w, smem); break;
  }
}

}  // namespace voxtral
