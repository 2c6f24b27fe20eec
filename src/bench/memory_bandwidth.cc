#include "bench/memory_bandwidth.h"

#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "backend/cpu/simd.h"

namespace voxtral {

double measure_read_bandwidth(int threads, double bytes) {
  const auto n = static_cast<std::size_t>(bytes / sizeof(float));
  std::vector<float> data(n);
  // Touch every page first (and make the values non-trivial).
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<float>(i & 1023);
  const std::vector<float> ones(1 << 16, 1.0f);
  const auto& k = simd::kernels();
  double best = 0;
  for (int run = 0; run < 5; ++run) {
    std::vector<std::thread> workers;
    std::vector<double> sums(static_cast<std::size_t>(threads));
    const auto start = std::chrono::steady_clock::now();
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const std::size_t begin = n * static_cast<std::size_t>(t) / static_cast<std::size_t>(threads);
        const std::size_t end = n * static_cast<std::size_t>(t + 1) / static_cast<std::size_t>(threads);
        double sum = 0;
        // Dot with a small cached vector: one stream from memory, like a matrix-vector product.
        for (std::size_t i = begin; i < end; i += ones.size()) {
          sum += k.dot(data.data() + i, ones.data(), static_cast<std::int64_t>(std::min(ones.size(), end - i)));
        }
        sums[static_cast<std::size_t>(t)] = sum;
      });
    }
    for (auto& w : workers) w.join();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(n * sizeof(float)) / seconds);
    volatile double sink = sums[0];
    (void)sink;
  }
  return best;
}

}  // namespace voxtral
