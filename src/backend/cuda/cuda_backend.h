// The CUDA backend: weights uploaded once (BF16 by default, FP16 optional; Q8/Q4 as the model
// hands them, FP8 quantized here at load on sm_89 and newer), activations and
// K/V caches in GPU memory, cuBLAS tensor-core products for many rows, hand-written
// kernels for everything else (src/backend/cuda/*.cu), and the decode step replayed as one
// CUDA graph. Nothing CUDA-specific leaks into this header, so host code compiled without
// nvcc can create the backend.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"

namespace voxtral {

// Which kernels run where alternatives exist. The defaults are the measured best
// (BENCHMARKS.md); the benchmarks and tests set others to compare them (`voxtral-bench
// --variant`, parse_cuda_variants).
struct CudaKernelChoices {
  bool fused_decode = true;     // the fused decode kernels (false: the separate ops)
  bool fused_attention = true;  // the decode attention kernel (false: the general attention kernels)
  bool mma_attention = true;    // many-row attention on tensor cores over BF16 caches
  int streamed_max_rows = 2;    // products of up to this many rows stream the weights; above: cuBLASLt
  // The same for Q8/Q4/FP8 weights; above: widened to F16, then cuBLASLt (FP8 in fast
  // precision: cuBLASLt's FP8 product, CudaOptions::exact_matmul).
  int quantized_streamed_max_rows = 16;
  int attention_max_keys = 0;   // keys per block of the decode attention: 32, 64 or 128 (0: the policy's)
  int decode_attention_threads = 512;  // threads per block of the decode attention: 256, 512 or 1024
  // The quantized products and the decode attention launched as programmatic dependents
  // (sm_90+): each starts (a product loading its weights) while the kernel before it finishes.
  bool programmatic_launch = true;
  // FP8 products (fast precision): the weight and activation scales and the residual applied by
  // cuBLASLt (per-row "outer vector" scales; the bias put into the output ahead of it) (Library:
  // an error where it has no such product for the shape), or by our own epilogue kernel on a
  // plain FP8 product's F32 sums (Kernel); Auto: the faster of the two, timed once per shape.
  enum class Fp8Epilogue { Auto, Library, Kernel } fp8_epilogue = Fp8Epilogue::Auto;
  bool fp8_fast_accum = false;  // cuBLASLt's fast FP8 accumulation (Hopper: partial sums not promoted to F32)
};

// "name=value,..." with names fused (1, 0 or gemv: fused decode but the general attention),
// mma_attention (1/0), streamed_rows (0..4096), quantized_streamed_rows (0..4096),
// attention_keys (32/64/128), attention_threads (256/512/1024), programmatic_launch (1/0), fp8_epilogue (auto/library/kernel),
// fp8_fast_accum (1/0); applied on top of `choices`. Error naming the item when one is
// unknown or out of range.
CudaKernelChoices parse_cuda_variants(const std::string& variants, CudaKernelChoices choices = {});

struct CudaOptions {
  int device = 0;
  // Matrix products over many rows (encoder, adapter, prefill) run on BF16 tensor cores.
  // exact: activations split into two BF16 halves (hi + lo), two products, near-F32
  //        results (the reference tolerances hold); quantized weights widened to F16 first;
  // fast:  activations rounded to BF16, one product; with FP8 weights, activations quantized
  //        to E4M3 per row (dynamic per-token scales, as vLLM's FP8 linear layers) and one
  //        FP8 product on FP8 tensor cores.
  bool exact_matmul = true;
  ElemType weight_type = ElemType::BF16;  // or F16
  ElemType kv_cache_type = ElemType::BF16;
  CudaKernelChoices kernels;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& options);
  ~CudaBackend() override;

  std::string name() const override;
  ElemType default_kv_cache_type() const override;
  bool slow_first_use() const override { return true; }  // cuBLAS: milliseconds per new kernel
  std::size_t free_memory() const override;
  int default_max_streams() const override { return 256; }

  void* allocate(std::size_t bytes) override;
  void deallocate(void* data) override;
  void copy_to_device(const Tensor& dst, const void* host) override;
  void copy_to_host(const Tensor& src, void* host) override;
  void fill_zero(const Tensor& dst) override;
  void copy(const Tensor& src, const Tensor& dst) override;

  using Backend::load_weight;
  Weight load_weight(std::span<const WeightPart> parts, WeightUse use) override;
  void reserve_weights(std::size_t matrices, std::int64_t elements) override;
  Weight load_vector(std::span<const float> values) override;
  std::size_t weight_bytes() const override;

  void linear(const Tensor& x, const Weight& w, const Weight& bias, const Tensor& y, Epilogue epilogue) override;
  void rms_norm(const Tensor& x, const Weight& weight, float eps, const Tensor& y) override;
  void rms_norm_rows(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps, const Tensor& y) override;
  void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& dst) override;
  void silu_mul(const Tensor& gate_up, const Tensor& y) override;
  void norm_linear(const Tensor& x, const Weight& norm, float eps, const Weight& w, const Weight& bias, const Tensor& y,
                   Epilogue epilogue, const Tensor& scratch) override;
  void swiglu_linear(const Tensor& gate_up, const Weight& w, const Weight& bias, const Tensor& y, Epilogue epilogue,
                     const Tensor& scratch) override;
  void norm_qkv_rope(const Tensor& x, const Weight& norm, float eps, const Weight& w_qkv, const Tensor& qkv,
                     const Tensor& normed, const KvRows& rows, const RopeParams& q_rope, const RopeParams& k_rope,
                     const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache) override;
  void norm_swiglu(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps, const Weight& w_gate_up,
                   const Tensor& act, const Tensor& normed, const Tensor& gate_up) override;
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

  struct Impl;

 private:
  static void limit_thread_stacks(int device);
  std::unique_ptr<Impl> impl_;
};

// Whether this build has CUDA and a usable GPU; when not, *reason says why.
bool cuda_usable(std::string* reason);

// Benchmark helpers: the GPU's read bandwidth in bytes/s over a buffer of `bytes`, and the
// device memory in use now (all processes, as the driver reports it).
double measure_device_read_bandwidth(std::size_t bytes);
std::size_t device_memory_in_use();

}  // namespace voxtral
