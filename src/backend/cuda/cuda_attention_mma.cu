// Sliding-window attention of many query rows on tensor cores (the encoder's chunks: rows
// that are consecutive positions of one sequence), for BF16 K/V caches, keys found through
// the page table.
//
// One block takes 64 consecutive query rows of one query head (four warps of 16 rows) and
// walks the keys of their windows in tiles of 64: S = Q K^T and O += P V on BF16 mma.sync
// (m16n8k16, F32 accumulation), the softmax kept online in registers (flash attention), so
// no partial results go to memory and no merge kernel runs. Q is rounded to BF16 once (after
// the 1/sqrt(head_dim) scale) and P before the second product: the same roundings as
// transformers' BF16 attention; the K/V cache is BF16 already. F32 caches (exact mode) keep
// the F32 kernel of cuda_attention.cu.
//
// The K/V tiles come in by cp.async into two shared-memory stages, the next tile's copy in
// flight while the tensor cores work on this one: a block is otherwise a chain of dependent
// global loads (the first version, loading each tile through registers, ran at ~30 TFLOP/s on
// the encoder's chunks). V stays row-major in shared memory and ldmatrix.trans hands out its
// fragments.
//
// Fragment layouts of mma.m16n8k16 (lane = 4 * group + quad):
//   A 16x16 row-major: {row group, cols 2quad..+1}, {row group+8, same}, {row group, cols +8}, {row group+8, cols +8}
//   B 16x8 (k x n):    {k 2quad..+1, n group}, {k 2quad+8..+9, n group}
//   C 16x8:            {row group, cols 2quad..+1}, {row group+8, same}
// so the scores of two 8-key tiles are, as they stand, the A fragment of P for the next product.
#include <cfloat>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_device.cuh"

namespace voxtral {

namespace {

constexpr int kRows = 64;      // query rows per block: 4 warps x 16
constexpr int kKeys = 64;      // keys per tile
constexpr int kPad = 8;        // BF16 elements of padding per shared row: conflict-free fragment loads
constexpr int kMmaThreads = 128;

struct MmaAttentionArgs {
  const float* q;
  long long ldq;
  const int* positions;
  const int* sequences;
  PagedRows paged;
  int rows, group, window;
  long long ldc;
  float scale;
  float* out;
  long long ldo;
};

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&v);
}

__device__ __forceinline__ void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void copy16_async(void* shared, const void* global, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  const int bytes = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled (keys past the tile's end)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(global), "r"(bytes));
}
__device__ __forceinline__ void copies_commit() { asm volatile("cp.async.commit_group;"); }
template <int kPending>
__device__ __forceinline__ void copies_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(kPending));
}

// Four 8x8 BF16 matrices, transposed: lanes 8i..8i+7 give the row addresses of matrix i.
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* shared) {
  const unsigned at = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(at));
}

template <int HD>
constexpr int kStageElems = kKeys * (HD + kPad);  // one K or V tile in shared memory

template <int HD>
constexpr std::size_t kSharedBytes = 2 * 2 * kStageElems<HD> * sizeof(__nv_bfloat16);  // K and V, two stages

template <int HD>
__global__ void __launch_bounds__(kMmaThreads)
    attention_mma_kernel(const MmaAttentionArgs a, const __nv_bfloat16* __restrict__ k_cache,
                         const __nv_bfloat16* __restrict__ v_cache) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  using Tile = __nv_bfloat16[kKeys][HD + kPad];
  Tile* k_s = reinterpret_cast<Tile*>(shared_bytes);  // [stage]
  Tile* v_s = k_s + 2;
  const int head = blockIdx.y, kv_head = head / a.group;
  const int row0 = blockIdx.x * kRows;
  const int t = threadIdx.x, warp = t / 32, lane = t % 32, group = lane / 4, quad = lane % 4;
  const long long q_col = static_cast<long long>(head) * HD, kv_col = static_cast<long long>(kv_head) * HD;

  // The rows' windows: the rows of a call are consecutive positions of one sequence, so the
  // keys of the block form one contiguous range.
  const int last_row = min(row0 + kRows, a.rows) - 1;
  const int first_pos = a.positions[row0];
  const int last_pos = a.positions[last_row];
  const int sequence = a.sequences[row0];
  const int lo = max(0, first_pos - a.window + 1);

  // One tile's K and V rows into a stage; keys past the end are zeros.
  auto load_tile = [&](int start, int stage) {
    const int count = min(kKeys, last_pos + 1 - start);
    for (int i = t; i < kKeys * (HD / 8); i += kMmaThreads) {
      const int key = i / (HD / 8), d = (i % (HD / 8)) * 8;
      const bool valid = key < count;
      const long long at = cache_row(a.paged, sequence, start + (valid ? key : 0)) * a.ldc + kv_col + d;
      copy16_async(&k_s[stage][key][d], k_cache + at, valid);
      copy16_async(&v_s[stage][key][d], v_cache + at, valid);
    }
    copies_commit();
  };
  load_tile(lo, 0);

  // This thread's two rows (group, group + 8 of its warp's 16); rows past the end repeat the
  // last one and are not written.
  int pos[2];
  const float* q_rows[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = min(row0 + warp * 16 + group + 8 * h, last_row);
    pos[h] = a.positions[r];
    q_rows[h] = a.q + r * a.ldq + q_col;
  }
  unsigned q_frag[HD / 16][4];
#pragma unroll
  for (int c = 0; c < HD / 16; ++c) {
    const int d = c * 16 + 2 * quad;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const float2 x0 = *reinterpret_cast<const float2*>(q_rows[h] + d);
      const float2 x1 = *reinterpret_cast<const float2*>(q_rows[h] + d + 8);
      q_frag[c][h] = pack_bf16(x0.x * a.scale, x0.y * a.scale);
      q_frag[c][2 + h] = pack_bf16(x1.x * a.scale, x1.y * a.scale);
    }
  }

  float o[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float row_max[2] = {-FLT_MAX, -FLT_MAX}, row_sum[2] = {0.0f, 0.0f};
  constexpr float kLog2e = 1.4426950408889634f;

  int stage = 0;
  for (int start = lo; start <= last_pos; start += kKeys, stage ^= 1) {
    const int count = min(kKeys, last_pos + 1 - start);
    if (start + kKeys <= last_pos) {
      load_tile(start + kKeys, stage ^ 1);  // the next tile, in flight during this one
      copies_wait<1>();
    } else {
      copies_wait<0>();
    }
    __syncthreads();
    const Tile& ks = k_s[stage];
    const Tile& vs = v_s[stage];

    // S = Q K^T for 64 keys: eight 8-key tiles.
    float s[kKeys / 8][4];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
      for (int c = 0; c < HD / 16; ++c) {
        const unsigned b0 = *reinterpret_cast<const unsigned*>(&ks[n * 8 + group][c * 16 + 2 * quad]);
        const unsigned b1 = *reinterpret_cast<const unsigned*>(&ks[n * 8 + group][c * 16 + 2 * quad + 8]);
        mma_bf16(s[n], q_frag[c], b0, b1);
      }
    }
    // Mask (causal, sliding window, tile end) and the online softmax, per row.
    float tile_max[2] = {-FLT_MAX, -FLT_MAX};
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2, key = start + n * 8 + 2 * quad + (e % 2);
        const bool valid = key - start < count && key <= pos[h] && key > pos[h] - a.window;
        s[n][e] = valid ? s[n][e] : -FLT_MAX;
        tile_max[h] = fmaxf(tile_max[h], s[n][e]);
      }
    }
    float factor[2], shift[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 1));
      tile_max[h] = fmaxf(tile_max[h], __shfl_xor_sync(0xffffffffu, tile_max[h], 2));
      const float new_max = fmaxf(row_max[h], tile_max[h]);
      factor[h] = row_max[h] == -FLT_MAX ? 0.0f : exp2f((row_max[h] - new_max) * kLog2e);
      row_max[h] = new_max;
      row_sum[h] *= factor[h];
      shift[h] = -new_max * kLog2e;
    }
    unsigned p_frag[kKeys / 16][4];
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e / 2;
        p[e] = s[n][e] == -FLT_MAX ? 0.0f : exp2f(fmaf(s[n][e], kLog2e, shift[h]));
        row_sum[h] += p[e];
      }
      p_frag[n / 2][(n % 2) * 2] = pack_bf16(p[0], p[1]);
      p_frag[n / 2][(n % 2) * 2 + 1] = pack_bf16(p[2], p[3]);
    }
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      o[n][0] *= factor[0], o[n][1] *= factor[0], o[n][2] *= factor[1], o[n][3] *= factor[1];
    }
    // O += P V: the keys are the reduction dimension. ldmatrix.trans gives two 8-dim column
    // blocks at once: matrices 0/1 are keys 0-7 / 8-15 of column block n, 2/3 those of n + 1.
#pragma unroll
    for (int c = 0; c < kKeys / 16; ++c) {
#pragma unroll
      for (int n = 0; n < HD / 8; n += 2) {
        unsigned b[4];
        const int matrix = lane / 8;
        ldmatrix_x4_trans(b, &vs[c * 16 + (matrix % 2) * 8 + lane % 8][(n + matrix / 2) * 8]);
        mma_bf16(o[n], p_frag[c], b[0], b[1]);
        mma_bf16(o[n + 1], p_frag[c], b[2], b[3]);
      }
    }
    __syncthreads();  // this stage is consumed before the next iteration refills it
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 1);
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 2);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = row0 + warp * 16 + group + 8 * h;
    if (r >= a.rows) continue;
    const float inv = row_sum[h] > 0.0f ? 1.0f / row_sum[h] : 0.0f;
    float* out = a.out + r * a.ldo + q_col + 2 * quad;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      *reinterpret_cast<float2*>(out + n * 8) = make_float2(o[n][2 * h] * inv, o[n][2 * h + 1] * inv);
    }
  }
}

}  // namespace

bool launch_attention_mma(CudaBackend::Impl& impl, const Tensor& q, const KvRows& rows, int n_heads,
                          const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) {
  const int hd = cache.head_dim;
  const bool aligned = reinterpret_cast<std::uintptr_t>(q.data) % 8 == 0 && q.stride % 2 == 0 &&
                       reinterpret_cast<std::uintptr_t>(out.data) % 8 == 0 && out.stride % 2 == 0 &&
                       reinterpret_cast<std::uintptr_t>(k_cache.data) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(v_cache.data) % 16 == 0 && k_cache.stride % 8 == 0;
  if (!impl.mma_attention || cache.type != ElemType::BF16 || q.rows < 16 || (hd != 64 && hd != 128) || !aligned ||
      v_cache.stride != k_cache.stride) {
    return false;
  }
  MmaAttentionArgs a{};
  a.q = q.ptr<float>(), a.ldq = q.stride;
  a.positions = rows.positions.ptr<int>(), a.sequences = rows.sequences.ptr<int>();
  a.paged = {rows.page_table.ptr<int>(), cache.pages_per_sequence(), cache.rows_per_page(), cache.capacity};
  a.rows = static_cast<int>(q.rows), a.group = n_heads / cache.n_kv_heads;
  a.window = cache.window, a.ldc = k_cache.stride;
  a.scale = 1.0f / sqrtf(static_cast<float>(hd));
  a.out = out.ptr<float>(), a.ldo = out.stride;
  const dim3 grid(static_cast<unsigned>((a.rows + kRows - 1) / kRows), static_cast<unsigned>(n_heads));
  const auto* kc = k_cache.ptr<const __nv_bfloat16>();
  const auto* vc = v_cache.ptr<const __nv_bfloat16>();
  if (hd == 64) {
    attention_mma_kernel<64><<<grid, kMmaThreads, kSharedBytes<64>, impl.stream>>>(a, kc, vc);
  } else {
    // 70 KB of stages: past the 48 KB a block gets without asking.
    VOXTRAL_CUDA_CHECK(cudaFuncSetAttribute(attention_mma_kernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(kSharedBytes<128>)));
    attention_mma_kernel<128><<<grid, kMmaThreads, kSharedBytes<128>, impl.stream>>>(a, kc, vc);
  }
  VOXTRAL_CUDA_LAUNCHED("attention_mma");
  return true;
}

}  // namespace voxtral
