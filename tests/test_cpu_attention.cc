// The CPU backend's sliding-window attention over a paged K/V cache, against a
// double-precision reference computed from the cached values: rows of one sequence at
// consecutive positions (attended in blocks of 16 lanes), a lone row of another sequence, a
// window shorter than a block's span, the start of a sequence, GQA, head sizes that leave
// remainders in every vector width, and F32 and BF16 caches. A row's outputs are the same
// bits however the rows of its sequence are cut into calls. The parity_with_*_kernels tests
// run these on each kernel set.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"
#include "core/bf16.h"

namespace voxtral {
namespace {

struct Case {
  int n_heads, n_kv_heads, head_dim, window;
  ElemType cache_type;
};

constexpr int kPageSize = 16;
constexpr int kPagesPerSequence = 8;  // capacity 128 positions per sequence
constexpr int kSequences = 2;

struct Cache {
  KvCacheLayout layout;
  std::vector<float> k32, v32;                // F32 cache memory
  std::vector<std::uint16_t> k16, v16;        // BF16 cache memory
  std::vector<float> k_values, v_values;      // the values as cached, per physical row, as floats
  std::vector<std::int32_t> page_table;       // [kSequences][kPagesPerSequence]
  Tensor k, v, table;
};

// Every row of both sequences filled with random keys and values, the pages scattered.
Cache make_cache(const Case& c) {
  Cache cache;
  cache.layout = {c.n_kv_heads, c.head_dim, kPageSize * kPagesPerSequence, c.window, c.cache_type, kPageSize};
  const std::int64_t width = static_cast<std::int64_t>(c.n_kv_heads) * c.head_dim;
  const std::int64_t rows = static_cast<std::int64_t>(kSequences) * kPagesPerSequence * kPageSize;
  cache.page_table.resize(kSequences * kPagesPerSequence);
  std::iota(cache.page_table.begin(), cache.page_table.end(), 0);
  std::mt19937 rng(7);
  std::shuffle(cache.page_table.begin(), cache.page_table.end(), rng);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const auto n = static_cast<std::size_t>(rows * width);
  cache.k_values.resize(n);
  cache.v_values.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    cache.k_values[i] = 2.0f * normal(rng);  // scores of a few units: a peaked softmax
    cache.v_values[i] = normal(rng);
  }
  const bool bf16 = c.cache_type == ElemType::BF16;
  if (bf16) {
    for (std::size_t i = 0; i < n; ++i) {
      cache.k16.push_back(float_to_bf16(cache.k_values[i]));
      cache.v16.push_back(float_to_bf16(cache.v_values[i]));
      cache.k_values[i] = bf16_to_float(cache.k16.back());
      cache.v_values[i] = bf16_to_float(cache.v16.back());
    }
    cache.k = {cache.k16.data(), ElemType::BF16, rows, width, width};
    cache.v = {cache.v16.data(), ElemType::BF16, rows, width, width};
  } else {
    cache.k32 = cache.k_values;
    cache.v32 = cache.v_values;
    cache.k = {cache.k32.data(), ElemType::F32, rows, width, width};
    cache.v = {cache.v32.data(), ElemType::F32, rows, width, width};
  }
  cache.table = {cache.page_table.data(), ElemType::I32, kSequences, kPagesPerSequence, kPagesPerSequence};
  return cache;
}

struct Rows {
  std::vector<std::int32_t> positions, sequences;
};

// The attention of `rows` with queries q ([rows, n_heads * head_dim]).
std::vector<float> attend(CpuBackend& backend, const Case& c, Cache& cache, Rows rows, std::vector<float> q) {
  const auto n = static_cast<std::int64_t>(rows.positions.size());
  const std::int64_t width = static_cast<std::int64_t>(c.n_heads) * c.head_dim;
  std::vector<float> out(static_cast<std::size_t>(n * width));
  const KvRows kv{{rows.positions.data(), ElemType::I32, n, 1, 1}, {rows.sequences.data(), ElemType::I32, n, 1, 1},
                  cache.table};
  backend.attention({q.data(), ElemType::F32, n, width, width}, kv, c.n_heads, cache.layout, cache.k, cache.v,
                    {out.data(), ElemType::F32, n, width, width});
  return out;
}

void check(const Case& c) {
  SCOPED_TRACE(std::string(simd::kernels().name) + " kernels, heads " + std::to_string(c.n_heads) + "/" +
               std::to_string(c.n_kv_heads) + " x " + std::to_string(c.head_dim) + ", window " +
               std::to_string(c.window) + (c.cache_type == ElemType::BF16 ? ", BF16 cache" : ", F32 cache"));
  Cache cache = make_cache(c);
  CpuBackend backend(2);
  // Sequence 0 at positions 0..44 (blocks of 16, 16 and 13 rows, the first ones seeing the
  // sequence's start), then one row of sequence 1 at position 100 (a lone row).
  Rows rows;
  for (int p = 0; p < 45; ++p) {
    rows.positions.push_back(p);
    rows.sequences.push_back(0);
  }
  rows.positions.push_back(100);
  rows.sequences.push_back(1);
  const auto n = static_cast<std::int64_t>(rows.positions.size());
  const std::int64_t width = static_cast<std::int64_t>(c.n_heads) * c.head_dim;
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<std::size_t>(n * width));
  for (auto& v : q) v = normal(rng);
  const auto got = attend(backend, c, cache, rows, q);

  const int group = c.n_heads / c.n_kv_heads;
  const std::int64_t kv_width = static_cast<std::int64_t>(c.n_kv_heads) * c.head_dim;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t p = rows.positions[static_cast<std::size_t>(i)];
    const std::int32_t s = rows.sequences[static_cast<std::size_t>(i)];
    const std::int64_t first = std::max<std::int64_t>(0, p - c.window + 1);
    for (int h = 0; h < c.n_heads; ++h) {
      const std::int64_t kv = static_cast<std::int64_t>(h / group) * c.head_dim;
      std::vector<double> scores;
      for (std::int64_t t = first; t <= p; ++t) {
        const std::int64_t row = kv_cache_row(cache.layout, cache.page_table.data(), s, t);
        double dot = 0;
        for (int d = 0; d < c.head_dim; ++d) {
          dot += static_cast<double>(q[static_cast<std::size_t>(i * width + h * c.head_dim + d)]) *
                 cache.k_values[static_cast<std::size_t>(row * kv_width + kv + d)];
        }
        scores.push_back(dot / std::sqrt(static_cast<double>(c.head_dim)));
      }
      const double top = *std::max_element(scores.begin(), scores.end());
      double sum = 0;
      for (double& v : scores) sum += (v = std::exp(v - top));
      for (int d = 0; d < c.head_dim; ++d) {
        double want = 0;
        for (std::int64_t t = first; t <= p; ++t) {
          const std::int64_t row = kv_cache_row(cache.layout, cache.page_table.data(), s, t);
          want += scores[static_cast<std::size_t>(t - first)] / sum *
                  cache.v_values[static_cast<std::size_t>(row * kv_width + kv + d)];
        }
        // Weighted means of N(0, 1) values: F32 sums of at most 128 terms stay within 1e-5.
        ASSERT_NEAR(got[static_cast<std::size_t>(i * width + h * c.head_dim + d)], want, 1e-5)
            << "row " << i << " (position " << p << ") head " << h << " element " << d;
      }
    }
  }

  // Sequence 0's rows 5..44 in other blocks (two calls: 5..20 and 21..44) give the same bits.
  for (const auto& [begin, end] : {std::pair{5, 21}, std::pair{21, 45}}) {
    Rows part;
    part.positions.assign(rows.positions.begin() + begin, rows.positions.begin() + end);
    part.sequences.assign(rows.sequences.begin() + begin, rows.sequences.begin() + end);
    const std::vector<float> part_q(q.begin() + begin * width, q.begin() + end * width);
    const auto again = attend(backend, c, cache, part, part_q);
    for (std::size_t j = 0; j < again.size(); ++j) {
      ASSERT_EQ(again[j], got[static_cast<std::size_t>(begin * width) + j]) << "rows from " << begin << ", value " << j;
    }
  }
}

TEST(CpuAttention, BlocksOfConsecutiveRowsMatchTheReference) {
  check({4, 4, 64, 100, ElemType::F32});    // every key of the sequence so far
  check({4, 2, 24, 20, ElemType::F32});     // GQA; a window shorter than a block's span
  check({2, 1, 40, 7, ElemType::BF16});     // BF16 cache, a tiny window
}

}  // namespace
}  // namespace voxtral
