// AMX tiles (AMX-BF16) of the fast many-row products: 32 activation rows by 32 weight rows
// as four 16 x 16 F32 accumulator tiles, each tile instruction taking 16 input pairs of two
// weight tiles and two panel tiles. The layouts are the AVX-512 set's (simd_gemm.h) read as
// tiles: 16 weight rows of 64 bytes (32 BF16 inputs) are a weight tile with the rows' own
// stride, and 16 panel rows of 32 lanes are two panel tiles (lanes 0-15 and 16-31) with a
// stride of 128 bytes, since a panel row holds each lane's pair in the order TDPBF16PS
// multiplies them (even input in the low half). Intel SDM vol. 2, TDPBF16PS; vol. 1 ch. 18.
//
// The hardware sums a tile instruction's 32 products per output in its own order and
// rounding (not the sequential one of the other sets; measured on a 2-core AMX Xeon VM: as
// close to the exact sum), so AMX results differ from avx512bf16's in the last bits. An output
// still depends only on its weight row and activation row: the same alone and in a batch.
// Exact precision (F32) has no tile instruction and runs the AVX-512 tiles.
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/simd_gemm_sets.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <cpuid.h>
#include <immintrin.h>

#define VOXTRAL_AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx2,fma")))

namespace voxtral::simd {

namespace {

constexpr int kLanes = 32;
constexpr int kRows = 32;
constexpr int kTilePairs = 16;          // input pairs of one tile instruction (64 bytes a row)
constexpr std::int64_t kPanelRowBytes = kLanes * sizeof(std::uint32_t);

// Palette 1: tiles 0-3 accumulate (weight half a, lane half b at 2a + b), 4-5 hold the two
// weight tiles, 6-7 the two panel tiles; every tile is 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t bytes_per_row[16] = {};
  std::uint8_t rows[16] = {};
};

const TileConfig& tile_config() {
  static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.bytes_per_row[t] = 64;
      c.rows[t] = 16;
    }
    return c;
  }();
  return config;
}

GemmKernels base_kernels() { return avx512_gemm_kernels(true); }

// The AVX-512 F32 tiles take up to their own row count; a block of 32 runs in pieces.
void tile_f32_in_pieces(const float* const* w, int wrows, const float* panel, std::int64_t n, float* tile) {
  static const GemmKernels base = base_kernels();
  for (int v = 0; v < wrows; v += base.rows) {
    base.tile_f32(w + v, std::min(base.rows, wrows - v), panel, n, tile + v * kLanes);
  }
}

// GCC's tile intrinsics are asm statements with the addresses as plain register operands: a
// compiler barrier keeps stores into a buffer ahead of the tile load that reads it, and a tile
// store ahead of the reads of what it wrote.
inline void memory_barrier() { __asm__ __volatile__("" ::: "memory"); }

// Weight rows as (base, stride) for tile loads: in place when the block is 32 rows an equal
// stride apart (a weight in the memory map, or prepare()'s rounded rows), otherwise copied
// into zero-filled rows of this thread's buffer (a last, shorter block).
struct WeightTiles {
  const char* base;
  std::int64_t stride;
};

WeightTiles weight_tiles(const std::uint16_t* const* w, int wrows, std::int64_t pairs) {
  const auto* first = reinterpret_cast<const char*>(w[0]);
  if (wrows == kRows) {
    const std::int64_t stride = reinterpret_cast<const char*>(w[1]) - first;
    bool even = stride >= 4 * pairs;
    for (int v = 2; v < kRows && even; ++v) even = reinterpret_cast<const char*>(w[v]) == first + v * stride;
    if (even) return {first, stride};
  }
  // Copied again for every panel: only a weight's last block when its rows are not a multiple
  // of 32 (none of the model's), so not worth a second tile configuration.
  thread_local std::vector<std::uint16_t> copied;
  const std::int64_t row_values = (pairs + kTilePairs - 1) / kTilePairs * kTilePairs * 2;
  copied.assign(static_cast<std::size_t>(kRows * row_values), 0);
  for (int v = 0; v < wrows; ++v) {
    std::memcpy(copied.data() + v * row_values, w[v], static_cast<std::size_t>(2 * pairs) * sizeof(std::uint16_t));
  }
  memory_barrier();
  return {reinterpret_cast<const char*>(copied.data()), row_values * 2};
}

VOXTRAL_AMX void multiply_tiles(const char* weights, std::int64_t stride, const char* panel) {
  _tile_loadd(4, weights, stride);
  _tile_loadd(5, weights + 16 * stride, stride);
  _tile_loadd(6, panel, kPanelRowBytes);
  _tile_loadd(7, panel + 64, kPanelRowBytes);
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

VOXTRAL_AMX void tile_pairs_amx(const std::uint16_t* const* w, int wrows, const std::uint32_t* panel,
                                std::int64_t pairs, float* tile) {
  if (pairs == 0) {
    std::fill_n(tile, wrows * kLanes, 0.0f);
    return;
  }
  const WeightTiles weights = weight_tiles(w, wrows, pairs);
  const std::int64_t whole = pairs / kTilePairs, rest = pairs % kTilePairs;
  const auto* panel_bytes = reinterpret_cast<const char*>(panel);
  _tile_loadconfig(&tile_config());
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (std::int64_t c = 0; c < whole; ++c) {
    multiply_tiles(weights.base + c * 64, weights.stride, panel_bytes + c * kTilePairs * kPanelRowBytes);
  }
  if (rest > 0) {
    // The last pairs padded with zeros on both sides (a weight row may end at its buffer's end).
    alignas(64) std::uint16_t weight_rest[kRows][2 * kTilePairs] = {};
    alignas(64) std::uint32_t panel_rest[kTilePairs][kLanes] = {};
    for (int v = 0; v < kRows; ++v) {
      std::memcpy(weight_rest[v], weights.base + v * weights.stride + whole * 64, static_cast<std::size_t>(rest) * 4);
    }
    std::memcpy(panel_rest, panel_bytes + whole * kTilePairs * kPanelRowBytes,
                static_cast<std::size_t>(rest * kPanelRowBytes));
    memory_barrier();
    multiply_tiles(reinterpret_cast<const char*>(weight_rest), sizeof weight_rest[0],
                   reinterpret_cast<const char*>(panel_rest));
  }
  // The tile holds wrows rows of 32 lanes; rows past wrows go to a scratch copy.
  alignas(64) float full[kRows * kLanes];
  float* out = wrows == kRows ? tile : full;
  _tile_stored(0, out, kPanelRowBytes);
  _tile_stored(1, out + 16, kPanelRowBytes);
  _tile_stored(2, out + 16 * kLanes, kPanelRowBytes);
  _tile_stored(3, out + 16 * kLanes + 16, kPanelRowBytes);
  // Hands the tile state back: a thread that keeps it pays 8 KB more on every context switch.
  _tile_release();
  memory_barrier();
  if (out != tile) std::memcpy(tile, full, static_cast<std::size_t>(wrows * kLanes) * sizeof(float));
}

}  // namespace

bool amx_bf16_usable() {
#ifndef __linux__
  return false;  // the tile state's permission is requested the Linux way below
#else
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) == 0) return false;
  const bool tile = (edx >> 24) & 1u, bf16 = (edx >> 22) & 1u;
  if (!tile || !bf16) return false;
  // Linux grants the 8 KB tile state per process on request (ARCH_REQ_XCOMP_PERM for
  // XFEATURE_XTILEDATA); without it the first tile instruction faults.
  constexpr int kArchRequestPermission = 0x1023, kTileDataFeature = 18;
  return syscall(SYS_arch_prctl, kArchRequestPermission, kTileDataFeature) == 0;
#endif
}

GemmKernels amx_gemm_kernels() {
  const GemmKernels base = base_kernels();
  return {kLanes,
          kRows,
          tile_f32_in_pieces,
          tile_pairs_amx,
          base.dequantize_q8,
          base.dequantize_q4,
          base.dequantize_q8_bf16,
          base.dequantize_q4_bf16,
          "amx"};
}

}  // namespace voxtral::simd
