// Products with Q8/Q4 weights (core/quant.h) kept as codes: the decode step reads 1.06 or
// 0.56 bytes a weight instead of BF16's 2. Each weight row is turned back into the exact
// floats its codes stand for and multiplied with F32 activations, so a product equals the
// product with the dequantized weights up to float rounding, and a row's sum does not depend
// on how many activation rows share the call (a stream's ids are the same alone or batched).
#include <algorithm>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_epilogue.h"
#include "backend/cpu/simd.h"

namespace voxtral {

namespace {

constexpr int kRowsPerCall = 4;  // activation rows of one dot_rows_f32 call

}  // namespace

void cpu_quantized_linear(CpuBackend& backend, const Tensor& x, const CpuWeight& w, const float* bias,
                          const Tensor& y, Epilogue epilogue) {
  const auto& k = simd::kernels();
  const std::int64_t n = x.rows;
  backend.pool().parallel_for(w.rows, 16, [&](std::int64_t j0, std::int64_t j1) {
    std::vector<float> row(static_cast<std::size_t>(w.cols));
    const float* rows[kRowsPerCall];
    float dots[kRowsPerCall];
    for (std::int64_t j = j0; j < j1; ++j) {
      widen_weight_row(w, j, row.data());
      for (std::int64_t i0 = 0; i0 < n; i0 += kRowsPerCall) {
        const int count = static_cast<int>(std::min<std::int64_t>(kRowsPerCall, n - i0));
        for (int r = 0; r < count; ++r) rows[r] = x.ptr<float>() + (i0 + r) * x.stride;
        k.dot_rows_f32(row.data(), rows, count, w.cols, dots);
        for (int r = 0; r < count; ++r) {
          cpu::finish_value(dots[r], bias, j, epilogue, y.ptr<float>() + (i0 + r) * y.stride + j);
        }
      }
    }
  });
}

}  // namespace voxtral
