// A random matrix quantized to Q8 or Q4 with the exact floats its codes stand for, and a
// product through a CPU backend: shared by the quantized-weight tests.
#pragma once

#include <random>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/quant.h"
#include "test_util.h"

namespace voxtral::testing {

// A [rows, cols] matrix quantized to `format`, and the exact floats its codes stand for.
struct QuantizedMatrix {
  std::vector<std::uint8_t> codes;
  std::vector<std::uint16_t> scales;
  std::vector<float> dequantized;
  TensorView codes_view, scales_view, dequantized_view;
};

inline QuantizedMatrix make_matrix(WeightFormat format, std::int64_t rows, std::int64_t cols, unsigned seed) {
  QuantizedMatrix m;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const std::size_t row_bytes = quantized_row_bytes(format, cols), blocks = static_cast<std::size_t>(cols / 32);
  m.codes.resize(static_cast<std::size_t>(rows) * row_bytes);
  m.scales.resize(static_cast<std::size_t>(rows) * blocks);
  m.dequantized.resize(static_cast<std::size_t>(rows * cols));
  std::vector<float> row(static_cast<std::size_t>(cols));
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto at = static_cast<std::size_t>(r);
    for (auto& v : row) v = normal(rng);
    quantize_row(format, row, {m.codes.data() + at * row_bytes, row_bytes}, {m.scales.data() + at * blocks, blocks});
    dequantize_row(format, {m.codes.data() + at * row_bytes, row_bytes}, {m.scales.data() + at * blocks, blocks},
                   {m.dequantized.data() + at * static_cast<std::size_t>(cols), static_cast<std::size_t>(cols)});
  }
  m.codes_view = {"w", format == WeightFormat::Q8 ? DType::I8 : DType::U8, {rows, static_cast<std::int64_t>(row_bytes)},
                  reinterpret_cast<const std::byte*>(m.codes.data()), m.codes.size()};
  m.scales_view = {"w_scale", DType::F16, {rows, static_cast<std::int64_t>(blocks)},
                   reinterpret_cast<const std::byte*>(m.scales.data()), m.scales.size() * 2};
  m.dequantized_view = {"w_f32", DType::F32, {rows, cols}, reinterpret_cast<const std::byte*>(m.dequantized.data()),
                        m.dequantized.size() * 4};
  return m;
}

// x [rows, cols] times w^T through backend.linear.
inline std::vector<float> product(CpuBackend& backend, const Weight& w, const std::vector<float>& x, std::int64_t rows,
                                  std::int64_t cols, std::int64_t outputs) {
  DeviceBuffer xb(backend, ElemType::F32, rows, cols), yb(backend, ElemType::F32, rows, outputs);
  backend.copy_to_device(xb, x.data());
  backend.linear(xb, w, Weight{}, yb, Epilogue::Store);
  return download(backend, yb);
}

}  // namespace voxtral::testing
