// Products with Q8/Q4 weights (core/quant.h) kept as codes: the decode step reads 1.06 or
// 0.56 bytes a weight instead of BF16's 2. The kernels (simd_quant.h) turn each code into
// the exact float it stands for and multiply with F32 activations, so a product equals the
// product with the dequantized weights up to float rounding, and a row's sum does not depend
// on how many activation rows share the call (a stream's ids are the same alone or batched).
// Up to kQuantRows activation rows share each read of a weight row.
#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_epilogue.h"
#include "backend/cpu/simd_quant.h"

namespace voxtral {

void cpu_quantized_linear(CpuBackend& backend, const Tensor& x, const CpuWeight& w, const float* bias,
                          const Tensor& y, Epilogue epilogue) {
  const auto& k = simd::quant_kernels();
  const auto dot = w.format == WeightFormat::Q8 ? k.dot_rows_q8 : k.dot_rows_q4;
  const std::int64_t n = x.rows;
  backend.pool().parallel_for(w.rows, 16, [&](std::int64_t j0, std::int64_t j1) {
    const float* rows[simd::kQuantRows];
    float dots[simd::kQuantRows];
    for (std::int64_t j = j0; j < j1; ++j) {
      const QuantizedRow row = quantized_row(w, j);
      for (std::int64_t i0 = 0; i0 < n; i0 += simd::kQuantRows) {
        const int count = static_cast<int>(std::min<std::int64_t>(simd::kQuantRows, n - i0));
        for (int r = 0; r < count; ++r) rows[r] = x.ptr<float>() + (i0 + r) * x.stride;
        dot(row.codes, row.scales, rows, count, w.cols, dots);
        for (int r = 0; r < count; ++r) {
          cpu::finish_value(dots[r], bias, j, epilogue, y.ptr<float>() + (i0 + r) * y.stride + j);
        }
      }
    }
  });
}

}  // namespace voxtral
