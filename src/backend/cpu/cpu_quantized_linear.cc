// Products with Q8/Q4 weights (core/quant.h) kept as codes: the decode step reads 1.06 or
// 0.56 bytes a weight instead of BF16's 2. Exact precision turns each code into the exact
// float it stands for and multiplies with F32 activations, so a product equals the product
// with the dequantized weights up to float rounding. Fast precision quantizes each
// activation row to int8 per block of 32, once per product, and sums integer products
// (VNNI's vpdpbusd: 64 multiply-adds an instruction), so that the step stays bound by the
// weights' bytes rather than by instructions (simd_quant.h gives the formula). In both, a
// row's sum does not depend on how many activation rows share the call (a stream's ids are
// the same alone or batched). Up to kQuantRows activation rows share each read of a weight row.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_epilogue.h"
#include "backend/cpu/simd_quant.h"

namespace voxtral {

namespace {

// `count` items of v starting on a 64-byte boundary, so that no vector load splits a line.
template <typename T>
T* aligned_storage(std::vector<T>& v, std::int64_t count) {
  constexpr std::size_t kAlign = 64 / sizeof(T);
  v.resize(static_cast<std::size_t>(count) + kAlign);
  const auto misalignment = reinterpret_cast<std::uintptr_t>(v.data()) % 64 / sizeof(T);
  return v.data() + (misalignment == 0 ? 0 : kAlign - misalignment);
}

// x's rows quantized for the fast products, once per product (not per weight row). Per
// thread, as two models' products may run at once.
const simd::Int8Row* int8_rows(ThreadPool& pool, const Tensor& x) {
  thread_local std::vector<std::uint8_t> value_storage;
  thread_local std::vector<float> scale_storage;
  thread_local std::vector<simd::Int8Row> rows;
  const std::int64_t value_count = simd::int8_row_values(x.cols), scale_count = simd::int8_row_scales(x.cols);
  std::uint8_t* values = aligned_storage(value_storage, x.rows * value_count);
  float* scales = aligned_storage(scale_storage, x.rows * scale_count);
  rows.resize(static_cast<std::size_t>(x.rows));
  // The workers reach this thread's rows through a plain pointer (a thread_local named in
  // the lambda would be each worker's own).
  simd::Int8Row* out = rows.data();
  const auto quantize = [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      std::uint8_t* row_values = values + r * value_count;
      float* row_scales = scales + r * scale_count;
      simd::quant_kernels().quantize_activations(x.ptr<float>() + r * x.stride, x.cols, row_values, row_scales);
      out[r] = {row_values, row_scales};
    }
  };
  // A decode step's few rows take microseconds: waking the pool would cost more.
  if (x.rows <= simd::kQuantRows) {
    quantize(0, x.rows);
  } else {
    pool.parallel_for(x.rows, 8, quantize);
  }
  return rows.data();
}

}  // namespace

void cpu_quantized_linear(CpuBackend& backend, const Tensor& x, const CpuWeight& w, const float* bias,
                          const Tensor& y, Epilogue epilogue) {
  const auto& k = simd::quant_kernels();
  const bool q8 = w.format == WeightFormat::Q8;
  const std::int64_t n = x.rows;
  const simd::Int8Row* int8 = backend.precision() == CpuPrecision::Fast ? int8_rows(backend.pool(), x) : nullptr;
  const auto dot = q8 ? k.dot_rows_q8 : k.dot_rows_q4;
  const auto dot_int8 = q8 ? k.dot_rows_q8_int8 : k.dot_rows_q4_int8;
  backend.pool().parallel_for(w.rows, 16, [&](std::int64_t j0, std::int64_t j1) {
    const float* rows[simd::kQuantRows];
    float dots[simd::kQuantRows];
    for (std::int64_t j = j0; j < j1; ++j) {
      const QuantizedRow row = quantized_row(w, j);
      for (std::int64_t i0 = 0; i0 < n; i0 += simd::kQuantRows) {
        const int count = static_cast<int>(std::min<std::int64_t>(simd::kQuantRows, n - i0));
        if (int8 != nullptr) {
          dot_int8(row.codes, row.scales, int8 + i0, count, w.cols, dots);
        } else {
          for (int r = 0; r < count; ++r) rows[r] = x.ptr<float>() + (i0 + r) * x.stride;
          dot(row.codes, row.scales, rows, count, w.cols, dots);
        }
        for (int r = 0; r < count; ++r) {
          cpu::finish_value(dots[r], bias, j, epilogue, y.ptr<float>() + (i0 + r) * y.stride + j);
        }
      }
    }
  });
}

}  // namespace voxtral
