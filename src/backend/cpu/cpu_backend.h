// The CPU backend: plain host memory, a thread pool, and hand-written kernels that read the
// weights in place, as the model file stores them (the memory map, or the planes quantized at
// load): streamed dot products for the decode step's few rows, register tiles for the many
// rows of the encoder, the adapter and a prefill (cpu_gemm.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_weight.h"
#include "backend/cpu/thread_pool.h"

namespace voxtral {

// How the products treat their activations: the decode step's products with BF16 or Q8/Q4
// weights, and every many-row product (encoder, adapter, prefill; Q8/Q4 weights there are
// dequantized a tile at a time, in fast mode then rounded to BF16 too).
enum class CpuPrecision {
  Exact,  // F32 activations, F32 FMAs: as F32 arithmetic gives the products
  // BF16 weights: activations rounded to BF16 (nearest even), products summed in pairs
  // (vdpbf16ps). Q8/Q4: activations quantized to int8 per block of 32, integer products
  // (vpdpbusd; simd_quant.h).
  Fast,
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads, CpuPrecision precision = CpuPrecision::Exact);
  ~CpuBackend() override;

  std::string name() const override;
  int threads() const { return pool_.size(); }
  ThreadPool& pool() { return pool_; }
  CpuPrecision precision() const { return precision_; }

  void* allocate(std::size_t bytes) override;
  void deallocate(void* data) override;
  void copy_to_device(const Tensor& dst, const void* host) override;
  void copy_to_host(const Tensor& src, void* host) override;
  void fill_zero(const Tensor& dst) override;
  void copy(const Tensor& src, const Tensor& dst) override;

  using Backend::load_weight;
  Weight load_weight(std::span<const WeightPart> parts, WeightUse use) override;
  Weight load_vector(std::span<const float> values) override;
  std::size_t weight_bytes() const override { return weight_bytes_; }

  void linear(const Tensor& x, const Weight& w, const Weight& bias, const Tensor& y, Epilogue epilogue) override;
  void rms_norm(const Tensor& x, const Weight& weight, float eps, const Tensor& y) override;
  void rms_norm_rows(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps, const Tensor& y) override;
  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& dst) override;
  void silu_mul(const Tensor& gate_up, const Tensor& y) override;
  void embed(const Weight& table, const Tensor& ids, const Tensor& add, const Tensor& out) override;
  void im2col(const Tensor& in, const Tensor& rows, int kernel, const Tensor& out) override;
  void rope_kv_append(const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                      const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                      const Tensor& k_cache, const Tensor& v_cache) override;
  void attention(const Tensor& q, const KvRows& rows, int n_heads, const KvCacheLayout& cache,
                 const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) override;
  void argmax(const Tensor& logits, const Tensor& ids) override;

  std::unique_ptr<Recording> record(const std::function<void()>& ops) override;
  void replay(Recording& recording) override;

 private:
  Weight keep(std::unique_ptr<CpuWeight> weight);

  ThreadPool pool_;
  CpuPrecision precision_;
  std::mutex weights_mutex_;
  std::vector<std::unique_ptr<CpuWeight>> weights_;
  std::size_t weight_bytes_ = 0;
};

// Implemented in cpu_linear.cc.
void cpu_linear(CpuBackend& backend, const Tensor& x, const Weight& w, const Weight& bias, const Tensor& y,
                Epilogue epilogue);
// Implemented in cpu_quantized_linear.cc: linear() with a Q8/Q4 weight (shapes checked).
void cpu_quantized_linear(CpuBackend& backend, const Tensor& x, const CpuWeight& w, const float* bias,
                          const Tensor& y, Epilogue epilogue);
// Implemented in cpu_gemm.cc: linear() for many rows, any weight storage (shapes checked).
void cpu_gemm(ThreadPool& pool, const Tensor& x, const CpuWeight& w, const float* bias, const Tensor& y,
              Epilogue epilogue, CpuPrecision precision);

}  // namespace voxtral
