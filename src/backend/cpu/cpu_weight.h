// What a Weight handle points to on the CPU, and reading its rows.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.h"

namespace voxtral {

// One or more row segments (stacked weights stay in place in the memory map rather than
// being copied together). Plain weights are F32 or BF16 (`type`); block-quantized ones
// (`format` Q8 or Q4) hold codes in `data` and F16 scales beside them (core/quant.h).
// Either use keeps the storage the file has; `use` only picks the kernels of a product.
struct CpuWeight {
  struct Segment {
    const void* data;
    std::int64_t rows;
    const std::uint16_t* scales = nullptr;  // Q8/Q4: [rows, cols / 32]
  };
  ElemType type = ElemType::F32;             // plain weights: F32 or BF16
  WeightFormat format = WeightFormat::BF16;  // Q8/Q4, or BF16 for a plain weight of `type`
  WeightUse use = WeightUse::Streamed;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::vector<Segment> segments;
  std::vector<float> f32_storage;  // a vector, or a matrix of another float dtype (F16) widened

  bool quantized() const { return is_block_quantized(format); }
};

inline const CpuWeight& cpu_weight(const Weight& w) { return *static_cast<const CpuWeight*>(w.handle); }

// The start of row j of a plain (F32 or BF16) weight.
const void* weight_row(const CpuWeight& w, std::int64_t j);

// Row j of a quantized weight: its codes (quantized_row_bytes) and its cols / 32 scales.
struct QuantizedRow {
  const std::uint8_t* codes;
  const std::uint16_t* scales;
};
QuantizedRow quantized_row(const CpuWeight& w, std::int64_t j);

// Row j widened to w.cols floats, whatever the storage (quantized: f16(d) * code, exactly).
void widen_weight_row(const CpuWeight& w, std::int64_t j, float* out);

}  // namespace voxtral
