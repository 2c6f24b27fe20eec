// y = epilogue(x W^T + b) on the CPU.
//  * A few rows (the decode step): the weights are streamed once from memory through a
//    multithreaded dot-product kernel that widens BF16 in registers; this is the
//    memory-bandwidth-bound path that sets the CPU's decode speed. In fast precision the
//    activations are rounded to BF16 and the products use vdpbf16ps (AVX512_BF16) where the
//    CPU has it. Q8/Q4 weights have kernels of their own (cpu_quantized_linear.cc).
//  * Many rows (the encoder, the adapter, a prefill): register tiles over the weights as
//    stored (cpu_gemm.cc), bound by arithmetic rather than memory.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_epilogue.h"
#include "backend/cpu/simd.h"
#include "core/error.h"

namespace voxtral {

namespace {

constexpr int kF32RowsPerKernelCall = 4;  // activation rows sharing one pass over an F32 weight row
// Up to this many rows (a decode step of 8 streams) the BF16 weights are streamed directly.
constexpr std::int64_t kSmallBatch = simd::kMaxRows;

using cpu::finish_value;

const float* bias_values(const Weight& bias, std::int64_t expected) {
  if (bias.empty()) return nullptr;
  const CpuWeight& b = cpu_weight(bias);
  if (b.cols * b.rows != expected || b.type != ElemType::F32) fail("cpu backend", "linear: bias does not match the output width");
  return static_cast<const float*>(b.segments[0].data);
}

// Row pointers of x, and in fast mode x rounded to BF16 once per call (not per weight row).
// Per thread, as two models' products may run at once.
struct ActivationRows {
  std::vector<const float*> f32;
  std::vector<const std::uint16_t*> bf16;  // empty in exact mode
};

const ActivationRows& activation_rows(const Tensor& x, bool round_to_bf16) {
  thread_local ActivationRows rows;
  thread_local std::vector<std::uint16_t> rounded;
  rows.f32.resize(static_cast<std::size_t>(x.rows));
  rows.bf16.resize(round_to_bf16 ? rows.f32.size() : 0);
  if (round_to_bf16) rounded.resize(static_cast<std::size_t>(x.rows * x.cols));
  for (std::int64_t r = 0; r < x.rows; ++r) {
    const float* row = x.ptr<float>() + r * x.stride;
    rows.f32[static_cast<std::size_t>(r)] = row;
    if (!round_to_bf16) continue;
    std::uint16_t* out = rounded.data() + r * x.cols;
    simd::kernels().round_bf16(row, out, x.cols);
    rows.bf16[static_cast<std::size_t>(r)] = out;
  }
  return rows;
}

// Each thread takes a range of weight rows. BF16 weights: blocks of kMaxWeightRows weight rows,
// each chunk read once for up to kMaxRows activation rows (all of a decode step's). F32
// weights: one weight row for up to kF32RowsPerKernelCall activation rows.
void streamed_linear(ThreadPool& pool, const Tensor& x, const CpuWeight& w, const float* bias, const Tensor& y,
                     Epilogue epilogue, CpuPrecision precision) {
  const auto& k = simd::kernels();
  const bool bf16 = w.type == ElemType::BF16;
  const ActivationRows& rows = activation_rows(x, bf16 && precision == CpuPrecision::Fast);
  const int group = bf16 ? simd::kMaxRows : kF32RowsPerKernelCall;
  pool.parallel_for(w.rows, 16, [&](std::int64_t j0, std::int64_t j1) {
    float dots[simd::kMaxWeightRows * simd::kMaxRows];
    for (std::int64_t j = j0; j < j1;) {
      const int wrows = bf16 ? static_cast<int>(std::min<std::int64_t>(simd::kMaxWeightRows, j1 - j)) : 1;
      const std::uint16_t* wp[simd::kMaxWeightRows];
      for (int v = 0; v < wrows && bf16; ++v) wp[v] = static_cast<const std::uint16_t*>(weight_row(w, j + v));
      for (std::int64_t i0 = 0; i0 < x.rows; i0 += group) {
        const int count = static_cast<int>(std::min<std::int64_t>(group, x.rows - i0));
        const auto i = static_cast<std::size_t>(i0);
        if (!bf16) {
          k.dot_rows_f32(static_cast<const float*>(weight_row(w, j)), rows.f32.data() + i, count, w.cols, dots);
        } else if (!rows.bf16.empty()) {
          k.dot_bf16_pairs(wp, wrows, rows.bf16.data() + i, count, w.cols, dots);
        } else {
          k.dot_bf16(wp, wrows, rows.f32.data() + i, count, w.cols, dots);
        }
        for (int v = 0; v < wrows; ++v) {
          for (int r = 0; r < count; ++r) {
            finish_value(dots[v * count + r], bias, j + v, epilogue, y.ptr<float>() + (i0 + r) * y.stride + j + v);
          }
        }
      }
      j += wrows;
    }
  });
}

}  // namespace

void cpu_linear(CpuBackend& backend, const Tensor& x, const Weight& weight, const Weight& bias, const Tensor& y,
                Epilogue epilogue) {
  const CpuWeight& w = cpu_weight(weight);
  if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows || x.type != ElemType::F32 || y.type != ElemType::F32) {
    fail("cpu backend", cat("linear: shapes do not fit: x [", x.rows, ", ", x.cols, "], W [", w.rows, ", ", w.cols,
                            "], y [", y.rows, ", ", y.cols, "]"));
  }
  const float* b = bias_values(bias, w.rows);
  const bool many_rows = x.rows > kSmallBatch;
  // Streamed Q8/Q4 weights keep their own kernels at any row count: a stream's outputs must
  // not depend on how many rows share the step.
  if (w.quantized() && !(many_rows && w.use == WeightUse::Dense)) return cpu_quantized_linear(backend, x, w, b, y, epilogue);
  if (many_rows) return cpu_gemm(backend.pool(), x, w, b, y, epilogue, backend.precision());
  streamed_linear(backend.pool(), x, w, b, y, epilogue, backend.precision());
}

}  // namespace voxtral
