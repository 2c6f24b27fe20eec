#include "backend/cpu/cpu_weight.h"

#include <algorithm>
#include <span>

#include "backend/cpu/simd.h"
#include "core/error.h"

namespace voxtral {

namespace {

// The segment holding row j, and j's index inside it.
std::pair<const CpuWeight::Segment*, std::int64_t> find_row(const CpuWeight& w, std::int64_t j) {
  for (const auto& seg : w.segments) {
    if (j < seg.rows) return {&seg, j};
    j -= seg.rows;
  }
  fail("cpu backend", cat("weight row ", j, " outside its ", w.rows, " rows"));
}

}  // namespace

const void* weight_row(const CpuWeight& w, std::int64_t j) {
  const auto [seg, r] = find_row(w, j);
  return static_cast<const char*>(seg->data) + static_cast<std::size_t>(r * w.cols) * elem_size(w.type);
}

QuantizedRow quantized_row(const CpuWeight& w, std::int64_t j) {
  const auto [seg, r] = find_row(w, j);
  const auto row_bytes = static_cast<std::int64_t>(quantized_row_bytes(w.format, w.cols));
  return {static_cast<const std::uint8_t*>(seg->data) + r * row_bytes, seg->scales + r * (w.cols / kQuantBlock)};
}

void widen_weight_row(const CpuWeight& w, std::int64_t j, float* out) {
  if (w.quantized()) {
    const QuantizedRow row = quantized_row(w, j);
    const auto blocks = static_cast<std::size_t>(w.cols / kQuantBlock);
    dequantize_row(w.format, {row.codes, quantized_row_bytes(w.format, w.cols)}, {row.scales, blocks},
                   {out, static_cast<std::size_t>(w.cols)});
    return;
  }
  const void* row = weight_row(w, j);
  if (w.type == ElemType::BF16) {
    simd::kernels().widen_bf16(static_cast<const std::uint16_t*>(row), out, w.cols);
  } else {
    std::copy_n(static_cast<const float*>(row), w.cols, out);
  }
}

}  // namespace voxtral
