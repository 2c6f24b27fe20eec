// Helpers of the CUDA op tests: random inputs, BF16 weight files, the same buffers on the CPU
// and the GPU backend, and comparisons of the two.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/bf16.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "test_util.h"

namespace voxtral::gpu_test {

inline std::mt19937 rng(1234);

inline std::vector<float> random_values(std::size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Random BF16 matrices held in a safetensors buffer, as model weights are.
class WeightFile {
 public:
  void add(const std::string& name, std::int64_t rows, std::int64_t cols) { specs_.push_back({name, rows, cols}); }
  void build() {
    std::string header = "{";
    std::string data;
    for (const auto& s : specs_) {
      const auto n = static_cast<std::size_t>(s.rows * s.cols);
      const auto values = random_values(n, 1.0f / std::sqrt(static_cast<float>(s.cols)));
      const std::size_t begin = data.size();
      for (float v : values) {
        const std::uint16_t b = float_to_bf16(v);
        data.append(reinterpret_cast<const char*>(&b), 2);
      }
      if (header.size() > 1) header += ",";
      header += "\"" + s.name + "\":{\"dtype\":\"BF16\",\"shape\":[" + std::to_string(s.rows) + "," +
                std::to_string(s.cols) + "],\"data_offsets\":[" + std::to_string(begin) + "," +
                std::to_string(data.size()) + "]}";
    }
    header += "}";
    header.append((8 - header.size() % 8) % 8, ' ');
    bytes_ = testing::safetensors_bytes(header, data);
    file_ = std::make_unique<SafeTensors>(SafeTensors::from_buffer(std::as_bytes(std::span(bytes_)), "weights"));
  }
  const TensorView& get(const std::string& name) const { return file_->get(name); }

 private:
  struct Spec {
    std::string name;
    std::int64_t rows, cols;
  };
  std::vector<Spec> specs_;
  std::string bytes_;
  std::unique_ptr<SafeTensors> file_;
};

struct Pair {
  CpuBackend cpu{2};
  CudaBackend gpu;
  // variants: as `voxtral-bench --variant` ("" = the defaults).
  explicit Pair(const std::string& variants = "") : gpu(options(variants)) {}
  static CudaOptions options(const std::string& variants = "") {
    CudaOptions o;
    o.exact_matmul = true;
    o.kv_cache_type = ElemType::F32;
    o.kernels = parse_cuda_variants(variants);
    return o;
  }
};

struct Buffers {
  DeviceBuffer cpu, gpu;
  Buffers(Pair& p, ElemType type, std::int64_t rows, std::int64_t cols, const void* host = nullptr)
      : cpu(p.cpu, type, rows, cols), gpu(p.gpu, type, rows, cols) {
    if (host != nullptr) {
      p.cpu.copy_to_device(cpu, host);
      p.gpu.copy_to_device(gpu, host);
    } else {
      p.cpu.fill_zero(cpu);
      p.gpu.fill_zero(gpu);
    }
  }
};

template <typename T = float>
inline std::vector<T> download(Backend& b, const Tensor& t) {
  std::vector<T> host(static_cast<std::size_t>(t.numel()));
  b.copy_to_host(t, host.data());
  return host;
}

// The E4M3 value nearest v (ties to even), saturating at 448: 3 mantissa bits below a
// leading bit from 2^-6 to 2^8, subnormals in steps of 2^-9.
inline float e4m3_round(float v) {
  const float a = std::fabs(v);
  if (a >= 448.0f) return std::copysign(448.0f, v);
  int e = 0;
  std::frexp(a, &e);  // a = f 2^e with f in [0.5, 1)
  const float step = std::ldexp(1.0f, std::max(e - 1, -6) - 3);
  return std::copysign(std::nearbyint(a / step) * step, v);
}

inline double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double worst = 0, scale = 1e-30;
  for (std::size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(got[i] - want[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
  }
  return worst / scale;
}

inline void expect_close(Pair& p, const Tensor& cpu, const Tensor& gpu, double tolerance, const std::string& what) {
  const auto a = download(p.cpu, cpu);
  const auto b = download(p.gpu, gpu);
  for (float v : b) ASSERT_TRUE(std::isfinite(v)) << what;
  EXPECT_LE(relative_error(b, a), tolerance) << what;
}

// The rows of a batch (positions, sequences) and a page table, on both backends.
struct BatchRows {
  Buffers positions, sequences, pages;
  BatchRows(Pair& p, const std::vector<std::int32_t>& pos, const std::vector<std::int32_t>& seq,
            const std::vector<std::int32_t>& table, std::int64_t pages_per_sequence)
      : positions(p, ElemType::I32, static_cast<std::int64_t>(pos.size()), 1, pos.data()),
        sequences(p, ElemType::I32, static_cast<std::int64_t>(seq.size()), 1, seq.data()),
        pages(p, ElemType::I32, static_cast<std::int64_t>(table.size()) / pages_per_sequence, pages_per_sequence,
              table.data()) {}
  KvRows cpu() const { return {positions.cpu, sequences.cpu, pages.cpu}; }
  KvRows gpu() const { return {positions.gpu, sequences.gpu, pages.gpu}; }
};

// A page table of `sequences` rows whose physical pages are a shuffle of 0..count-1, so that
// neighbouring logical pages live far apart.
inline std::vector<std::int32_t> scattered_pages(int sequences, int pages_per_sequence) {
  std::vector<std::int32_t> table(static_cast<std::size_t>(sequences) * pages_per_sequence);
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<std::int32_t>(i);
  std::shuffle(table.begin(), table.end(), rng);
  return table;
}

// One decoder layer's sizes, for the fused decode-op tests (tiny-a, demo, the real layer).
struct DecodeLayerShape {
  int dim, n_heads, n_kv_heads, head_dim, hidden, vocab;
};

}  // namespace voxtral::gpu_test
