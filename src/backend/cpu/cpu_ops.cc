// Element-wise and row-wise ops of the CPU backend.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"
#include "core/bf16.h"
#include "core/error.h"

namespace voxtral {

namespace {

const float* vector_values(const Weight& w, std::int64_t expected, const char* what) {
  const CpuWeight& v = cpu_weight(w);
  if (v.rows * v.cols != expected || v.type != ElemType::F32) fail("cpu backend", cat(what, ": weight width mismatch"));
  return static_cast<const float*>(v.segments[0].data);
}

}  // namespace

namespace {

void rms_norm_row(const float* in, std::int64_t n, const float* w, float eps, float* out) {
  double sum = 0;
  for (std::int64_t j = 0; j < n; ++j) sum += static_cast<double>(in[j]) * in[j];
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float inv = 1.0f / std::sqrt(mean + eps);
  for (std::int64_t j = 0; j < n; ++j) out[j] = w[j] * (in[j] * inv);
}

}  // namespace

void CpuBackend::rms_norm(const Tensor& x, const Weight& weight, float eps, const Tensor& y) {
  const float* w = vector_values(weight, x.cols, "rms_norm");
  pool_.parallel_for(x.rows, 4, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) rms_norm_row(x.ptr<float>() + i * x.stride, x.cols, w, eps, y.ptr<float>() + i * y.stride);
  });
}

void CpuBackend::rms_norm_rows(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps, const Tensor& y) {
  if (norms.cols != x.cols || norms.type != ElemType::F32 || norm_rows.rows != x.rows || norm_rows.type != ElemType::I32 ||
      y.rows != x.rows || y.cols != x.cols) {
    fail("cpu backend", "rms_norm_rows: shape mismatch");
  }
  for (std::int64_t i = 0; i < x.rows; ++i) {  // checked here: a worker thread must not throw
    const std::int64_t r = norm_rows.ptr<std::int32_t>()[i * norm_rows.stride];
    if (r < 0 || r >= norms.rows) fail("cpu backend", cat("rms_norm_rows: row ", i, " asks for norm ", r, " of ", norms.rows));
  }
  pool_.parallel_for(x.rows, 4, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t r = norm_rows.ptr<std::int32_t>()[i * norm_rows.stride];
      rms_norm_row(x.ptr<float>() + i * x.stride, x.cols, norms.ptr<float>() + r * norms.stride, eps,
                   y.ptr<float>() + i * y.stride);
    }
  });
}

void CpuBackend::gather_rows(const Tensor& src, const Tensor& indices, const Tensor& dst) {
  if (src.cols != dst.cols || src.type != ElemType::F32 || dst.type != ElemType::F32 || indices.rows != dst.rows ||
      indices.type != ElemType::I32) {
    fail("cpu backend", "gather_rows: shape mismatch");
  }
  for (std::int64_t i = 0; i < dst.rows; ++i) {
    const std::int64_t r = indices.ptr<std::int32_t>()[i * indices.stride];
    if (r < 0 || r >= src.rows) fail("cpu backend", cat("gather_rows: row ", i, " asks for row ", r, " of ", src.rows));
    std::copy_n(src.ptr<float>() + r * src.stride, src.cols, dst.ptr<float>() + i * dst.stride);
  }
}

void CpuBackend::silu_mul(const Tensor& gate_up, const Tensor& y) {
  const std::int64_t half = gate_up.cols / 2;
  if (y.cols != half || y.rows != gate_up.rows) fail("cpu backend", "silu_mul: shape mismatch");
  pool_.parallel_for(y.rows, 1, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      const float* g = gate_up.ptr<float>() + i * gate_up.stride;
      const float* u = g + half;
      float* out = y.ptr<float>() + i * y.stride;
      for (std::int64_t j = 0; j < half; ++j) out[j] = (g[j] / (1.0f + std::exp(-g[j]))) * u[j];
    }
  });
}

void CpuBackend::embed(const Weight& table, const Tensor& ids, const Tensor& add, const Tensor& out) {
  const CpuWeight& t = cpu_weight(table);
  if (out.cols != t.cols || ids.rows != out.rows || (add.data != nullptr && (add.rows != out.rows || add.cols != out.cols))) {
    fail("cpu backend", "embed: shape mismatch");
  }
  for (std::int64_t i = 0; i < out.rows; ++i) {
    const std::int32_t id = ids.ptr<std::int32_t>()[i * ids.stride];
    if (id < 0 || id >= t.rows) fail("cpu backend", cat("embed: token id ", id, " outside the vocabulary of ", t.rows));
    float* row = out.ptr<float>() + i * out.stride;
    widen_weight_row(t, id, row);
    if (add.data != nullptr) {
      const float* a = add.ptr<float>() + i * add.stride;
      for (std::int64_t j = 0; j < out.cols; ++j) row[j] = a[j] + row[j];
    }
  }
}

void CpuBackend::im2col(const Tensor& in, const Tensor& rows, int kernel, const Tensor& out) {
  const std::int64_t channels = in.cols;
  if (out.cols != channels * kernel || rows.type != ElemType::I32 || rows.rows != out.rows * kernel || rows.cols != 1) {
    fail("cpu backend", "im2col: shape mismatch");
  }
  const auto* index = rows.ptr<std::int32_t>();
  for (std::int64_t i = 0; i < rows.rows; ++i) {  // checked here: a worker thread must not throw
    if (index[i * rows.stride] < 0 || index[i * rows.stride] >= in.rows) {
      fail("cpu backend", cat("im2col: row ", index[i * rows.stride], " of an input of ", in.rows));
    }
  }
  pool_.parallel_for(out.rows, 4, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      float* dst = out.ptr<float>() + t * out.stride;
      for (int k = 0; k < kernel; ++k) {
        const float* src = in.ptr<float>() + static_cast<std::int64_t>(index[(t * kernel + k) * rows.stride]) * in.stride;
        for (std::int64_t c = 0; c < channels; ++c) dst[c * kernel + k] = src[c];
      }
    }
  });
}

void CpuBackend::argmax(const Tensor& logits, const Tensor& ids) {
  for (std::int64_t i = 0; i < logits.rows; ++i) {
    const float* row = logits.ptr<float>() + i * logits.stride;
    std::int64_t best = 0;
    for (std::int64_t j = 1; j < logits.cols; ++j) {
      if (row[j] > row[best]) best = j;
    }
    ids.ptr<std::int32_t>()[i * ids.stride] = static_cast<std::int32_t>(best);
  }
}

}  // namespace voxtral
