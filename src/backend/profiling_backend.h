// A Backend that forwards to another and times every op (waiting for each to finish), then
// prints a table of where the time went. Enabled with VOXTRAL_PROFILE=1; for finding what
// to optimise, never for reporting speed (the waits change the timing).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace voxtral {

class ProfilingBackend final : public Backend {
 public:
  explicit ProfilingBackend(std::unique_ptr<Backend> inner);
  ~ProfilingBackend() override;  // prints the table to stderr

  std::string name() const override { return inner_->name() + " [profiling]"; }
  // Forgets what was timed so far (the load's warm-up, which pays one-time costs).
  void clear() { entries_.clear(); }
  ElemType default_kv_cache_type() const override { return inner_->default_kv_cache_type(); }
  bool slow_first_use() const override { return inner_->slow_first_use(); }
  std::size_t free_memory() const override { return inner_->free_memory(); }
  int default_max_streams() const override { return inner_->default_max_streams(); }
  void* allocate(std::size_t bytes) override { return inner_->allocate(bytes); }
  void deallocate(void* data) override { inner_->deallocate(data); }
  void copy_to_device(const Tensor& dst, const void* host) override;
  void copy_to_host(const Tensor& src, void* host) override;
  void fill_zero(const Tensor& dst) override;
  void copy(const Tensor& src, const Tensor& dst) override;
  using Backend::load_weight;
  Weight load_weight(std::span<const WeightPart> parts, WeightUse use) override { return inner_->load_weight(parts, use); }
  void reserve_weights(std::size_t matrices, std::int64_t elements) override { inner_->reserve_weights(matrices, elements); }
  Weight load_vector(std::span<const float> values) override { return inner_->load_vector(values); }
  std::size_t weight_bytes() const override { return inner_->weight_bytes(); }

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

 private:
  template <typename Fn>
  void timed(const std::string& key, Fn&& fn);

  struct Entry {
    double ms = 0;
    long calls = 0;
  };
  std::unique_ptr<Backend> inner_;
  std::map<std::string, Entry> entries_;
};

}  // namespace voxtral
