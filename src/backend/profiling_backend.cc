#include "backend/profiling_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "core/error.h"

namespace voxtral {

namespace {

// Waits for queued work by reading one value back.
void wait(Backend& backend, const Tensor& any) {
  if (any.data == nullptr || any.rows == 0 || any.cols == 0) return;
  char sink[8];
  backend.copy_to_host(any.row_range(0, 1).col_range(0, 1), sink);
}

// Ops inside a recording are timed one by one, so a replay simply runs them again.
struct Replayable final : Recording {
  std::function<void()> ops;
};

std::string rows_bucket(std::int64_t rows) { return rows == 1 ? "1 row" : rows <= 64 ? "<=64 rows" : ">64 rows"; }

}  // namespace

ProfilingBackend::ProfilingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}

ProfilingBackend::~ProfilingBackend() {
  std::vector<std::pair<std::string, Entry>> rows(entries_.begin(), entries_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  double total = 0;
  for (const auto& r : rows) total += r.second.ms;
  std::fprintf(stderr, "\nvoxtral profile (%s), %.0f ms in ops:\n", inner_->name().c_str(), total);
  for (const auto& [key, e] : rows) {
    std::fprintf(stderr, "  %9.1f ms %5.1f%% %8ld calls  %s\n", e.ms, 100.0 * e.ms / std::max(total, 1e-9), e.calls, key.c_str());
  }
}

template <typename Fn>
void ProfilingBackend::timed(const std::string& key, Fn&& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  auto& e = entries_[key];
  e.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  ++e.calls;
}

void ProfilingBackend::copy_to_device(const Tensor& dst, const void* host) {
  timed("copy_to_device", [&] { inner_->copy_to_device(dst, host); wait(*inner_, dst); });
}
void ProfilingBackend::copy_to_host(const Tensor& src, void* host) {
  timed("copy_to_host", [&] { inner_->copy_to_host(src, host); });
}
void ProfilingBackend::fill_zero(const Tensor& dst) {
  timed("fill_zero", [&] { inner_->fill_zero(dst); wait(*inner_, dst); });
}
void ProfilingBackend::copy(const Tensor& src, const Tensor& dst) {
  timed("copy", [&] { inner_->copy(src, dst); wait(*inner_, dst); });
}
void ProfilingBackend::linear(const Tensor& x, const Weight& w, const Weight& bias, const Tensor& y, Epilogue epilogue) {
  timed(cat("linear ", w.rows, "x", w.cols, " ", rows_bucket(x.rows)), [&] {
    inner_->linear(x, w, bias, y, epilogue);
    wait(*inner_, y);
  });
}
void ProfilingBackend::rms_norm(const Tensor& x, const Weight& weight, float eps, const Tensor& y) {
  timed("rms_norm", [&] { inner_->rms_norm(x, weight, eps, y); wait(*inner_, y); });
}
void ProfilingBackend::rms_norm_rows(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps,
                                     const Tensor& y) {
  timed("rms_norm_rows", [&] { inner_->rms_norm_rows(x, norms, norm_rows, eps, y); wait(*inner_, y); });
}
void ProfilingBackend::gather_rows(const Tensor& src, const Tensor& indices, const Tensor& dst) {
  timed("gather_rows", [&] { inner_->gather_rows(src, indices, dst); wait(*inner_, dst); });
}
void ProfilingBackend::silu_mul(const Tensor& gate_up, const Tensor& y) {
  timed("silu_mul", [&] { inner_->silu_mul(gate_up, y); wait(*inner_, y); });
}
void ProfilingBackend::norm_linear(const Tensor& x, const Weight& norm, float eps, const Weight& w, const Weight& bias,
                                   const Tensor& y, Epilogue epilogue, const Tensor& scratch) {
  timed(cat("norm_linear ", w.rows, "x", w.cols, " ", rows_bucket(x.rows)), [&] {
    inner_->norm_linear(x, norm, eps, w, bias, y, epilogue, scratch);
    wait(*inner_, y);
  });
}
void ProfilingBackend::swiglu_linear(const Tensor& gate_up, const Weight& w, const Weight& bias, const Tensor& y,
                                     Epilogue epilogue, const Tensor& scratch) {
  timed(cat("swiglu_linear ", w.rows, "x", w.cols, " ", rows_bucket(gate_up.rows)), [&] {
    inner_->swiglu_linear(gate_up, w, bias, y, epilogue, scratch);
    wait(*inner_, y);
  });
}
void ProfilingBackend::norm_qkv_rope(const Tensor& x, const Weight& norm, float eps, const Weight& w_qkv, const Tensor& qkv,
                                     const Tensor& normed, const KvRows& rows, const RopeParams& q_rope,
                                     const RopeParams& k_rope, const KvCacheLayout& cache, const Tensor& k_cache,
                                     const Tensor& v_cache) {
  timed(cat("norm_qkv_rope ", w_qkv.rows, "x", w_qkv.cols, " ", rows_bucket(x.rows)), [&] {
    inner_->norm_qkv_rope(x, norm, eps, w_qkv, qkv, normed, rows, q_rope, k_rope, cache, k_cache, v_cache);
    wait(*inner_, qkv);
  });
}
void ProfilingBackend::norm_swiglu(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps,
                                   const Weight& w_gate_up, const Tensor& act, const Tensor& normed, const Tensor& gate_up) {
  timed(cat("norm_swiglu ", w_gate_up.rows, "x", w_gate_up.cols, " ", rows_bucket(x.rows)), [&] {
    inner_->norm_swiglu(x, norms, norm_rows, eps, w_gate_up, act, normed, gate_up);
    wait(*inner_, act);
  });
}
void ProfilingBackend::embed(const Weight& table, const Tensor& ids, const Tensor& add, const Tensor& out) {
  timed("embed", [&] { inner_->embed(table, ids, add, out); wait(*inner_, out); });
}
void ProfilingBackend::im2col(const Tensor& in, const Tensor& rows, int kernel, const Tensor& out) {
  timed("im2col", [&] { inner_->im2col(in, rows, kernel, out); wait(*inner_, out); });
}
void ProfilingBackend::rope_kv_append(const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                                      const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                                      const Tensor& k_cache, const Tensor& v_cache) {
  timed("rope_kv_append", [&] {
    inner_->rope_kv_append(q, k, v, rows, q_rope, k_rope, cache, k_cache, v_cache);
    wait(*inner_, q);
  });
}
void ProfilingBackend::attention(const Tensor& q, const KvRows& rows, int n_heads, const KvCacheLayout& cache,
                                 const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) {
  timed(cat("attention window ", cache.window, " ", rows_bucket(q.rows)), [&] {
    inner_->attention(q, rows, n_heads, cache, k_cache, v_cache, out);
    wait(*inner_, out);
  });
}
void ProfilingBackend::argmax(const Tensor& logits, const Tensor& ids) {
  timed("argmax", [&] { inner_->argmax(logits, ids); wait(*inner_, ids); });
}
std::unique_ptr<Recording> ProfilingBackend::record(const std::function<void()>& ops) {
  auto r = std::make_unique<Replayable>();
  r->ops = ops;
  ops();
  return r;
}
void ProfilingBackend::replay(Recording& recording) {
  static_cast<Replayable&>(recording).ops();
}

}  // namespace voxtral
