// What the weight-streaming products share (cuda_streamed.cu for BF16/F16 weights,
// cuda_quantized_streamed.cu for Q8/Q4/FP8): their arguments, and the epilogue that writes a
// unit of finished weight rows. One unit is R weight rows whose sums a warp finishes together:
//
//   Store      one row (BF16/F16: two): y = x W^T (+ bias), then GELU or the residual add
//   SiluPair   rows u and u + m/2 of [gate; up]: y[u] = silu(gate) * up (norm_swiglu)
//   RopePair   rows 2u, 2u+1 of [q; k; v]: RoPE at each row's position, k and v into the
//              paged cache at each row's sequence                      (norm_qkv_rope)
#pragma once

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

namespace voxtral {

enum StreamMode : int { kStore = 0, kSiluPair = 1, kRopePair = 2 };
// How the quantized products hold their activation rows: F32 (exact precision), or in the fast
// precision int8 per block of 32 (Q8/Q4: dp4a products) or F16 scaled to |x| <= 1 per block of 32
// (FP8: F16 products).
enum StreamActivations : int { kF32Activations = 0, kInt8Activations = 1, kF16Activations = 2 };
constexpr int kMaxPassRows = 8;  // activation rows per pass over the weights

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
  int splits = 1;  // BF16/F16: warps sharing one unit of rows, each over its own stripes of k
  int chunks = 1;  // BF16/F16: 256-column stripes per warp
  int units = 0;
  int activations = 0;  // quantized formats: StreamActivations
  RopeAppend rope;
};

__device__ __forceinline__ float gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

// The norm row of activation row i (an index outside the table: row 0, its 1/rms is NaN).
__device__ __forceinline__ const float* norm_row(const StreamArgs& a, int i) {
  const int row = a.norm_rows != nullptr ? a.norm_rows[i] : 0;
  return a.norm + (row >= 0 && row < a.norm_count ? static_cast<long long>(row) * a.norm_stride : 0);
}
__device__ __forceinline__ bool norm_row_known(const StreamArgs& a, int i) {
  const int row = a.norm_rows != nullptr ? a.norm_rows[i] : 0;
  return row >= 0 && row < a.norm_count;
}

// What a kernel may have fetched before its units end, so that their epilogues wait for no load:
// each activation row's position and K/V cache row (RopePair), and y's prior values already
// added to the sums (Store with Epilogue::Add).
struct UnitPrefetch {
  const int* positions = nullptr;        // [n]
  const long long* cache_rows = nullptr;  // [n]
  bool added = false;
};

// RopePair: each activation row's position and K/V cache row into shared memory, by threads
// 0..n-1 of the block (visible to the others after a barrier). Positions, sequences and page
// tables are the step's inputs, copied before its first kernel and never written by a kernel
// of the step (as the decode attention's), so a kernel launched as a programmatic dependent
// reads them before its griddepcontrol.wait: two dependent loads off the path to its outputs.
template <int N>
__device__ __forceinline__ void fetch_rope_rows(const StreamArgs& a, int (&positions)[N], long long (&cache_rows)[N]) {
  if (threadIdx.x < a.n) {
    const int i = threadIdx.x, pos = a.rope.positions[i];
    positions[i] = pos;
    cache_rows[i] = cache_row(a.rope.paged, a.rope.sequences[i], pos);
  }
}

// Writes unit `unit` (weight rows `rows`, finished sums acc[r][i] for activation row i).
template <int MODE, int R, int N>
__device__ __forceinline__ void write_unit(const StreamArgs& a, int unit, const int (&rows)[R], const bool (&row_ok)[R],
                                           const float (&acc)[R][N], const UnitPrefetch& ready = {}) {
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
      const int pos = ready.positions != nullptr ? ready.positions[i] : rp.positions[i];
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
        const long long cached = ready.cache_rows != nullptr ? ready.cache_rows[i] : cache_row(rp.paged, rp.sequences[i], pos);
        const long long at = cached * rp.ld_cache + col - rp.q_width - (is_k ? 0 : rp.kv_width);
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
        if (a.epilogue == static_cast<int>(Epilogue::Add) && !ready.added) v += y[rows[r]];
        y[rows[r]] = v;
      }
    }
  }
}

// The quantized formats' pass (cuda_quantized_streamed.cu): `a` holds one pass of at most
// kMaxPassRows activation rows. quantized_pass_fits says whether a pass of `rows` rows suits the
// kernel (shared memory, widths); launch_quantized_pass then launches it.
bool quantized_pass_fits(const CudaBackend::Impl& impl, const StreamArgs& a, const CudaWeight& w, int rows);
void launch_quantized_pass(const CudaBackend::Impl& impl, int mode, const StreamArgs& a, const CudaWeight& w);

}  // namespace voxtral
