// y = epilogue(x W^T + b) on the CPU.
//  * F32 weights and several rows: one sgemm (OpenBLAS) — the encoder and adapter.
//  * BF16 weights and a few rows (the decode step): the weights are streamed once from
//    memory through a multithreaded dot-product kernel that widens BF16 in registers;
//    this is the memory-bandwidth-bound path that sets the CPU's decode speed.
//  * BF16 weights and many rows (prefill): blocks of weight rows are widened into a
//    scratch buffer and multiplied with sgemm, so no whole matrix is ever converted.
// Without OpenBLAS every case uses the dot-product kernel.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"
#include "core/error.h"

#ifdef VOXTRAL_HAVE_BLAS
#include <cblas.h>
#endif

namespace voxtral {

namespace {

constexpr int kRowsPerKernelCall = 4;   // activation rows sharing one pass over a weight row
constexpr std::int64_t kSmallBatch = 8; // up to this many rows (a decode step of 8 streams), stream BF16 weights directly

inline float gelu(float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); }

inline void finish_value(float value, const float* bias, std::int64_t j, Epilogue epilogue, float* out) {
  if (bias != nullptr) value += bias[j];
  switch (epilogue) {
    case Epilogue::Store: *out = value; break;
    case Epilogue::Gelu: *out = gelu(value); break;
    case Epilogue::Add: *out += value; break;
  }
}

const float* bias_values(const Weight& bias, std::int64_t expected) {
  if (bias.empty()) return nullptr;
  const CpuWeight& b = cpu_weight(bias);
  if (b.cols * b.rows != expected || b.type != ElemType::F32) fail("cpu backend", "linear: bias does not match the output width");
  return static_cast<const float*>(b.segments[0].data);
}

// Weight row j of a segmented weight.
const void* weight_row(const CpuWeight& w, std::int64_t j) {
  for (const auto& seg : w.segments) {
    if (j < seg.rows) return static_cast<const char*>(seg.data) + static_cast<std::size_t>(j * w.cols) * elem_size(w.type);
    j -= seg.rows;
  }
  return nullptr;
}

void streamed_linear(ThreadPool& pool, const Tensor& x, const CpuWeight& w, const float* bias, const Tensor& y,
                     Epilogue epilogue) {
  const auto& k = simd::kernels();
  const std::int64_t n = x.rows;
  pool.parallel_for(w.rows, 16, [&](std::int64_t j0, std::int64_t j1) {
    const float* rows[kRowsPerKernelCall];
    float dots[kRowsPerKernelCall];
    float dots2[kRowsPerKernelCall];
    for (std::int64_t j = j0; j < j1; ++j) {
      const void* wrow = weight_row(w, j);
      // Several activation rows: two weight rows per pass share the activation loads (the
      // activations of a wide matrix no longer fit L1, and re-reading them set the speed).
      if (n > 1 && w.type == ElemType::BF16 && j + 1 < j1) {
        const auto* w0 = static_cast<const std::uint16_t*>(wrow);
        const auto* w1 = static_cast<const std::uint16_t*>(weight_row(w, j + 1));
        for (std::int64_t i0 = 0; i0 < n; i0 += kRowsPerKernelCall) {
          const int count = static_cast<int>(std::min<std::int64_t>(kRowsPerKernelCall, n - i0));
          for (int r = 0; r < count; ++r) rows[r] = x.ptr<float>() + (i0 + r) * x.stride;
          k.dot2_rows_bf16(w0, w1, rows, count, w.cols, dots, dots2);
          for (int r = 0; r < count; ++r) {
            float* out = y.ptr<float>() + (i0 + r) * y.stride;
            finish_value(dots[r], bias, j, epilogue, out + j);
            finish_value(dots2[r], bias, j + 1, epilogue, out + j + 1);
          }
        }
        ++j;
        continue;
      }
      for (std::int64_t i0 = 0; i0 < n; i0 += kRowsPerKernelCall) {
        const int count = static_cast<int>(std::min<std::int64_t>(kRowsPerKernelCall, n - i0));
        for (int r = 0; r < count; ++r) rows[r] = x.ptr<float>() + (i0 + r) * x.stride;
        if (w.type == ElemType::BF16) {
          k.dot_rows_bf16(static_cast<const std::uint16_t*>(wrow), rows, count, w.cols, dots);
        } else {
          k.dot_rows_f32(static_cast<const float*>(wrow), rows, count, w.cols, dots);
        }
        for (int r = 0; r < count; ++r) finish_value(dots[r], bias, j, epilogue, y.ptr<float>() + (i0 + r) * y.stride + j);
      }
    }
  });
}

#ifdef VOXTRAL_HAVE_BLAS
void sgemm_block(const Tensor& x, const float* w, std::int64_t rows, std::int64_t cols, float* y, std::int64_t ldy,
                 bool accumulate) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(x.rows), static_cast<int>(rows),
              static_cast<int>(cols), 1.0f, x.ptr<float>(), static_cast<int>(x.stride), w, static_cast<int>(cols),
              accumulate ? 1.0f : 0.0f, y, static_cast<int>(ldy));
}

// Bias and activation after an sgemm that already stored (or accumulated) the product.
void apply_epilogue(ThreadPool& pool, const float* bias, const Tensor& y, Epilogue epilogue) {
  if (bias == nullptr && epilogue != Epilogue::Gelu) return;
  pool.parallel_for(y.rows, 8, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      float* row = y.ptr<float>() + i * y.stride;
      for (std::int64_t j = 0; j < y.cols; ++j) {
        float v = row[j] + (bias != nullptr ? bias[j] : 0.0f);
        row[j] = epilogue == Epilogue::Gelu ? gelu(v) : v;
      }
    }
  });
}
#endif

}  // namespace

void cpu_blas_threads(int threads) {
#ifdef VOXTRAL_HAVE_BLAS
  openblas_set_num_threads(threads);
#else
  (void)threads;
#endif
}

bool cpu_has_blas() {
#ifdef VOXTRAL_HAVE_BLAS
  return true;
#else
  return false;
#endif
}

void cpu_linear(CpuBackend& backend, const Tensor& x, const Weight& weight, const Weight& bias, const Tensor& y,
                Epilogue epilogue) {
  const CpuWeight& w = cpu_weight(weight);
  if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows || x.type != ElemType::F32 || y.type != ElemType::F32) {
    fail("cpu backend", cat("linear: shapes do not fit: x [", x.rows, ", ", x.cols, "], W [", w.rows, ", ", w.cols,
                            "], y [", y.rows, ", ", y.cols, "]"));
  }
  const float* b = bias_values(bias, w.rows);
  if (w.quantized()) return cpu_quantized_linear(backend, x, w, b, y, epilogue);
#ifdef VOXTRAL_HAVE_BLAS
  const bool accumulate = epilogue == Epilogue::Add;
  if (w.type == ElemType::F32 && w.segments.size() == 1 && x.rows > 1) {
    sgemm_block(x, static_cast<const float*>(w.segments[0].data), w.rows, w.cols, y.ptr<float>(), y.stride, accumulate);
    apply_epilogue(backend.pool(), b, y, epilogue);
    return;
  }
  if (w.type == ElemType::BF16 && x.rows > kSmallBatch) {
    const std::int64_t block = std::clamp<std::int64_t>((std::int64_t{2} << 20) / w.cols, 64, 4096);
    auto& scratch = backend.conversion_scratch_;
    scratch.resize(static_cast<std::size_t>(block * w.cols));
    const auto& k = simd::kernels();
    for (std::int64_t j0 = 0; j0 < w.rows; j0 += block) {
      const std::int64_t rows = std::min(block, w.rows - j0);
      backend.pool().parallel_for(rows, 8, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
          k.widen_bf16(static_cast<const std::uint16_t*>(weight_row(w, j0 + r)), scratch.data() + r * w.cols, w.cols);
        }
      });
      sgemm_block(x, scratch.data(), rows, w.cols, y.ptr<float>() + j0, y.stride, accumulate);
    }
    apply_epilogue(backend.pool(), b, y, epilogue);
    return;
  }
#endif
  streamed_linear(backend.pool(), x, w, b, y, epilogue);
}

}  // namespace voxtral
