// y = epilogue(x W^T + b) for many activation rows (the encoder, the adapter, a prefill), on
// the tiles of simd_gemm.h, with the weights as they are stored: BF16 or F32 read in place
// from the memory map, Q8/Q4 dequantized a tile's rows at a time. No matrix is ever
// widened as a whole, so a model's memory is its file.
//
// The activations are packed once per call into panels of `lanes` rows (simd_gemm.h); each
// thread then takes blocks of `rows` weight rows, prepares them once (in place, or widened,
// rounded or dequantized into its own buffer) and runs them against every panel, so the
// block's rows stay in cache while the panels stream past.
#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_epilogue.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/simd_gemm.h"

namespace voxtral {

namespace {

// Scratch memory aligned to a cache line, so that each vector load of a panel reads one line.
template <typename T>
class AlignedScratch {
 public:
  T* get(std::size_t count) {
    storage_.resize(count * sizeof(T) + 64);
    const auto address = reinterpret_cast<std::uintptr_t>(storage_.data());
    return reinterpret_cast<T*>((address + 63) & ~std::uintptr_t{63});
  }

 private:
  std::vector<std::byte> storage_;
};

// exact: panel[k * lanes + l] = x[l][k]; rows past `count` are zeros.
void pack_f32(const Tensor& x, std::int64_t first, int count, int lanes, float* panel) {
  if (count < lanes) std::fill_n(panel, x.cols * lanes, 0.0f);
  for (int l = 0; l < count; ++l) {
    const float* row = x.ptr<float>() + (first + l) * x.stride;
    for (std::int64_t k = 0; k < x.cols; ++k) panel[k * lanes + l] = row[k];
  }
}

// fast: the rows rounded to BF16 (nearest even), then their pairs interleaved by input.
void pack_pairs(const Tensor& x, std::int64_t first, int count, int lanes, std::uint32_t* panel) {
  const std::int64_t pairs = (x.cols + 1) / 2;
  if (count < lanes) std::fill_n(panel, pairs * lanes, 0u);
  thread_local std::vector<std::uint16_t> rounded;
  rounded.assign(static_cast<std::size_t>(2 * pairs), 0);
  const auto& k = simd::kernels();
  for (int l = 0; l < count; ++l) {
    k.round_bf16(x.ptr<float>() + (first + l) * x.stride, rounded.data(), x.cols);
    for (std::int64_t p = 0; p < pairs; ++p) {
      std::uint32_t pair;
      std::memcpy(&pair, rounded.data() + 2 * p, sizeof pair);
      panel[p * lanes + l] = pair;
    }
  }
}

// A block of weight rows in the form a tile reads: F32 rows (exact) or BF16 rows of an even
// length (fast), pointing into the weight itself where its storage already is that form.
class WeightRows {
 public:
  void prepare(const CpuWeight& w, std::int64_t first, int count, bool fast) {
    const std::int64_t cols = w.cols, padded = (cols + 1) / 2 * 2;
    const auto& g = simd::gemm_kernels();
    const auto& k = simd::kernels();
    for (int v = 0; v < count; ++v) {
      const std::int64_t j = first + v;
      const auto vi = static_cast<std::size_t>(v);
      if (w.quantized()) {
        const QuantizedRow row = quantized_row(w, j);
        const bool q8 = w.format == WeightFormat::Q8;
        if (fast) {
          (q8 ? g.dequantize_q8_bf16 : g.dequantize_q4_bf16)(row.codes, row.scales, cols, rounded_row(v, padded));
          bf16_[vi] = rounded_row(v, padded);
        } else {
          (q8 ? g.dequantize_q8 : g.dequantize_q4)(row.codes, row.scales, cols, widened_row(v));
          f32_[vi] = widened_row(v);
        }
      } else if (!fast) {
        if (w.type == ElemType::F32) {
          f32_[vi] = static_cast<const float*>(weight_row(w, j));
        } else {
          k.widen_bf16(static_cast<const std::uint16_t*>(weight_row(w, j)), widened_row(v), cols);
          f32_[vi] = widened_row(v);
        }
      } else if (w.type == ElemType::BF16 && cols == padded) {
        bf16_[vi] = static_cast<const std::uint16_t*>(weight_row(w, j));
      } else {
        std::uint16_t* out = rounded_row(v, padded);
        out[padded - 1] = 0;
        if (w.type == ElemType::BF16) {
          std::memcpy(out, weight_row(w, j), static_cast<std::size_t>(cols) * sizeof(std::uint16_t));
        } else {
          k.round_bf16(static_cast<const float*>(weight_row(w, j)), out, cols);
        }
        bf16_[vi] = out;
      }
    }
  }
  const float* const* f32() const { return f32_.data(); }
  const std::uint16_t* const* bf16() const { return bf16_.data(); }

  // Room for `rows` rows of `cols` inputs (the buffers grow to the largest weight and stay).
  void reserve(int rows, std::int64_t cols) {
    cols_ = cols;
    f32_.resize(static_cast<std::size_t>(rows));
    bf16_.resize(static_cast<std::size_t>(rows));
  }

 private:
  float* widened_row(int v) {
    widened_.resize(f32_.size() * static_cast<std::size_t>(cols_));
    return widened_.data() + v * cols_;
  }
  std::uint16_t* rounded_row(int v, std::int64_t padded) {
    rounded_.resize(bf16_.size() * static_cast<std::size_t>(padded));
    return rounded_.data() + v * padded;
  }

  std::int64_t cols_ = 0;
  std::vector<const float*> f32_;
  std::vector<const std::uint16_t*> bf16_;
  std::vector<float> widened_;
  std::vector<std::uint16_t> rounded_;
};

// y[l][v] = epilogue(tile[v][l] + bias[v]) for the tile's `count` activation rows, one loop
// per epilogue (this runs for every output: a branch per value cost a sixth of the product).
void store_tile(const float* tile, int lanes, int wrows, int count, const float* bias, Epilogue epilogue, float* y,
                std::int64_t stride) {
  thread_local std::vector<float> zeros;
  if (bias == nullptr) {
    zeros.assign(static_cast<std::size_t>(wrows), 0.0f);
    bias = zeros.data();
  }
  for (int l = 0; l < count; ++l) {
    float* out = y + l * stride;
    const float* in = tile + l;
    switch (epilogue) {
      case Epilogue::Store:
        for (int v = 0; v < wrows; ++v) out[v] = in[v * lanes] + bias[v];
        break;
      case Epilogue::Add:
        for (int v = 0; v < wrows; ++v) out[v] += in[v * lanes] + bias[v];
        break;
      case Epilogue::Gelu:
        for (int v = 0; v < wrows; ++v) out[v] = cpu::gelu(in[v * lanes] + bias[v]);
        break;
    }
  }
}

}  // namespace

void cpu_gemm(ThreadPool& pool, const Tensor& x, const CpuWeight& w, const float* bias, const Tensor& y,
              Epilogue epilogue, CpuPrecision precision) {
  const auto& g = simd::gemm_kernels();
  const bool fast = precision == CpuPrecision::Fast;
  const int lanes = g.lanes;
  const std::int64_t panels = (x.rows + lanes - 1) / lanes;
  const std::int64_t depth = fast ? (x.cols + 1) / 2 : x.cols;  // panel entries per lane
  const std::int64_t panel_size = depth * lanes;
  // The caller's thread owns the panels (two models' products may run at once).
  thread_local AlignedScratch<std::uint32_t> panel_memory;
  std::uint32_t* panel_words = panel_memory.get(static_cast<std::size_t>(panels * panel_size));
  static_assert(sizeof(float) == sizeof(std::uint32_t));
  float* panel_floats = reinterpret_cast<float*>(panel_words);
  pool.parallel_for(panels, 1, [&](std::int64_t p0, std::int64_t p1) {
    for (std::int64_t p = p0; p < p1; ++p) {
      const int count = static_cast<int>(std::min<std::int64_t>(lanes, x.rows - p * lanes));
      if (fast) {
        pack_pairs(x, p * lanes, count, lanes, panel_words + p * panel_size);
      } else {
        pack_f32(x, p * lanes, count, lanes, panel_floats + p * panel_size);
      }
    }
  });

  const std::int64_t blocks = (w.rows + g.rows - 1) / g.rows;
  pool.parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
    // Per pool thread, kept between calls (a block's rows can take hundreds of KB).
    thread_local WeightRows rows;
    thread_local std::vector<float> tile;
    rows.reserve(g.rows, w.cols);
    tile.resize(static_cast<std::size_t>(g.rows * lanes));
    for (std::int64_t b = b0; b < b1; ++b) {
      const std::int64_t j0 = b * g.rows;
      const int wrows = static_cast<int>(std::min<std::int64_t>(g.rows, w.rows - j0));
      rows.prepare(w, j0, wrows, fast);
      for (std::int64_t p = 0; p < panels; ++p) {
        if (fast) {
          g.tile_pairs(rows.bf16(), wrows, panel_words + p * panel_size, depth, tile.data());
        } else {
          g.tile_f32(rows.f32(), wrows, panel_floats + p * panel_size, depth, tile.data());
        }
        const int count = static_cast<int>(std::min<std::int64_t>(lanes, x.rows - p * lanes));
        store_tile(tile.data(), lanes, wrows, count, bias != nullptr ? bias + j0 : nullptr, epilogue,
                   y.ptr<float>() + p * lanes * y.stride + j0, y.stride);
      }
    }
  });
}

}  // namespace voxtral
