// RoPE, the K/V ring cache and sliding-window attention on the CPU. A decode step's rows
// (KvRows::rows_attend_alone) attend one at a time; consecutive rows of one sequence (the
// encoder, a prefill) attend in blocks whose queries share the keys (simd_attention.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/simd_attention.h"
#include "core/bf16.h"
#include "core/error.h"

namespace voxtral {

namespace {

// RoPE angles computed in float32 exactly as the reference does, so that long positions
// round alike.
void rope_angles(int position, int head_dim, double theta, std::vector<float>& cos_out, std::vector<float>& sin_out) {
  const int half = head_dim / 2;
  cos_out.resize(static_cast<std::size_t>(half));
  sin_out.resize(static_cast<std::size_t>(half));
  for (int j = 0; j < half; ++j) {
    const float angle = static_cast<float>(position) * rope_inverse_frequency(theta, head_dim, j);
    cos_out[static_cast<std::size_t>(j)] = std::cos(angle);
    sin_out[static_cast<std::size_t>(j)] = std::sin(angle);
  }
}

void rotate(float* x, int n_heads, int head_dim, const std::vector<float>& c, const std::vector<float>& s) {
  for (int h = 0; h < n_heads; ++h) {
    float* head = x + static_cast<std::ptrdiff_t>(h) * head_dim;
    for (int j = 0; j < head_dim / 2; ++j) {
      const float x0 = head[2 * j], x1 = head[2 * j + 1];
      const auto jj = static_cast<std::size_t>(j);
      head[2 * j] = x0 * c[jj] - x1 * s[jj];
      head[2 * j + 1] = x1 * c[jj] + x0 * s[jj];
    }
  }
}

}  // namespace

void CpuBackend::rope_kv_append(const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                                const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                                const Tensor& k_cache, const Tensor& v_cache) {
  check_rope_kv_shapes("cpu backend", q, k, v, rows, q_rope, k_rope, cache, k_cache, v_cache);
  const auto* positions = rows.positions.ptr<std::int32_t>();
  const auto* sequences = rows.sequences.ptr<std::int32_t>();
  const auto* pages = rows.page_table.ptr<std::int32_t>();
  const std::int64_t kv_width = static_cast<std::int64_t>(cache.n_kv_heads) * cache.head_dim;
  pool_.parallel_for(q.rows, 1, [&](std::int64_t i0, std::int64_t i1) {
    std::vector<float> c, s, rotated_k(static_cast<std::size_t>(kv_width));
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int32_t pos = positions[i];
      rope_angles(pos, q_rope.head_dim, q_rope.theta, c, s);
      rotate(q.ptr<float>() + i * q.stride, q_rope.n_heads, q_rope.head_dim, c, s);
      std::copy_n(k.ptr<float>() + i * k.stride, kv_width, rotated_k.data());
      rotate(rotated_k.data(), k_rope.n_heads, k_rope.head_dim, c, s);
      const std::int64_t slot = kv_cache_row(cache, pages, sequences[i], pos);
      const float* v_row = v.ptr<float>() + i * v.stride;
      if (cache.type == ElemType::BF16) {
        auto* k_dst = k_cache.ptr<std::uint16_t>() + slot * k_cache.stride;
        auto* v_dst = v_cache.ptr<std::uint16_t>() + slot * v_cache.stride;
        for (std::int64_t j = 0; j < kv_width; ++j) {
          k_dst[j] = float_to_bf16(rotated_k[static_cast<std::size_t>(j)]);
          v_dst[j] = float_to_bf16(v_row[j]);
        }
      } else {
        std::copy_n(rotated_k.data(), kv_width, k_cache.ptr<float>() + slot * k_cache.stride);
        std::copy_n(v_row, kv_width, v_cache.ptr<float>() + slot * v_cache.stride);
      }
    }
  });
}

namespace {

// Rows [first, first + count) of one sequence at consecutive positions: their queries share
// most of their keys, and go through the lanes of simd_attention.h together.
struct QueryBlock {
  std::int64_t first = 0;
  int count = 0;
};

// The rows cut into blocks of up to kAttentionLanes consecutive positions of one sequence (a
// row alone is a block of one, attended to on its own).
std::vector<QueryBlock> query_blocks(const KvRows& rows, std::int64_t n) {
  const auto* positions = rows.positions.ptr<std::int32_t>();
  const auto* sequences = rows.sequences.ptr<std::int32_t>();
  std::vector<QueryBlock> blocks;
  for (std::int64_t i = 0; i < n; ++i) {
    QueryBlock& last = blocks.empty() ? blocks.emplace_back(QueryBlock{i, 0}) : blocks.back();
    const std::int64_t prev = last.first + last.count - 1;
    const bool continues = !rows.rows_attend_alone && last.count > 0 && last.count < simd::kAttentionLanes &&
                           sequences[i] == sequences[prev] && positions[i] == positions[prev] + 1;
    if (continues) {
      ++last.count;
    } else if (last.count == 0) {
      last.count = 1;
    } else {
      blocks.push_back({i, 1});
    }
  }
  return blocks;
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const KvRows& rows, int n_heads, const KvCacheLayout& cache,
                           const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) {
  check_kv_rows("cpu backend", "attention", rows, q.rows, cache);
  const auto* positions = rows.positions.ptr<std::int32_t>();
  const auto* sequences = rows.sequences.ptr<std::int32_t>();
  const auto* pages = rows.page_table.ptr<std::int32_t>();
  const int hd = cache.head_dim;
  const int group = n_heads / cache.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const auto& kern = simd::kernels();
  const auto& tiles = simd::attention_kernels();
  constexpr int kLanes = simd::kAttentionLanes;
  const bool bf16_cache = cache.type == ElemType::BF16;
  const std::vector<QueryBlock> blocks = query_blocks(rows, q.rows);
  const auto items = static_cast<std::int64_t>(blocks.size()) * n_heads;
  pool_.parallel_for(items, 1, [&](std::int64_t a, std::int64_t b) {
    thread_local std::vector<float> weights, widened, queries, sums, block_out;
    thread_local std::vector<const float*> keys, values;
    for (std::int64_t item = a; item < b; ++item) {
      // Head-major: the blocks of one head follow each other and find its keys and values
      // (a few hundred KB) still in cache.
      const QueryBlock& block = blocks[static_cast<std::size_t>(item % static_cast<std::int64_t>(blocks.size()))];
      const int h = static_cast<int>(item / static_cast<std::int64_t>(blocks.size()));
      const std::int64_t pos = positions[block.first];
      const std::int32_t sequence = sequences[block.first];
      const std::int64_t first = std::max<std::int64_t>(0, pos - cache.window + 1);
      const std::int64_t count = pos + block.count - first;  // keys of the block's rows, together
      const std::int64_t kv_offset = static_cast<std::int64_t>(h / group) * hd;
      const std::int64_t q_offset = static_cast<std::int64_t>(h) * hd;
      if (block.count == 1) {
        // One query (a decode step's row): dot products and weighted sums along the head.
        const float* qh = q.ptr<float>() + block.first * q.stride + q_offset;
        weights.resize(static_cast<std::size_t>(count));
        float max_score = -INFINITY;
        for (std::int64_t t = 0; t < count; ++t) {
          const std::int64_t row = kv_cache_row(cache, pages, sequence, first + t) * k_cache.stride + kv_offset;
          float dot = 0;
          if (bf16_cache) {
            const std::uint16_t* key = k_cache.ptr<std::uint16_t>() + row;
            kern.dot_bf16(&key, 1, &qh, 1, hd, &dot);
          } else {
            dot = kern.dot(qh, k_cache.ptr<float>() + row, hd);
          }
          const float score = dot * scale;
          weights[static_cast<std::size_t>(t)] = score;
          max_score = std::max(max_score, score);
        }
        float sum = 0;
        for (auto& w : weights) {
          w = std::exp(w - max_score);
          sum += w;
        }
        float* o = out.ptr<float>() + block.first * out.stride + q_offset;
        std::fill_n(o, hd, 0.0f);
        widened.resize(static_cast<std::size_t>(hd));
        for (std::int64_t t = 0; t < count; ++t) {
          const std::int64_t row = kv_cache_row(cache, pages, sequence, first + t) * v_cache.stride + kv_offset;
          const float* value = v_cache.ptr<float>() + row;
          if (bf16_cache) {
            kern.widen_bf16(v_cache.ptr<std::uint16_t>() + row, widened.data(), hd);
            value = widened.data();
          }
          kern.axpy(weights[static_cast<std::size_t>(t)] / sum, value, o, hd);
        }
        continue;
      }
      // The keys' and values' rows, widened once per block from a BF16 cache.
      keys.resize(static_cast<std::size_t>(count));
      values.resize(static_cast<std::size_t>(count));
      if (bf16_cache) widened.resize(static_cast<std::size_t>(2 * count * hd));
      for (std::int64_t t = 0; t < count; ++t) {
        const std::int64_t row = kv_cache_row(cache, pages, sequence, first + t);
        const auto ti = static_cast<std::size_t>(t);
        if (bf16_cache) {
          float* k = widened.data() + 2 * t * hd;
          kern.widen_bf16(k_cache.ptr<std::uint16_t>() + row * k_cache.stride + kv_offset, k, hd);
          kern.widen_bf16(v_cache.ptr<std::uint16_t>() + row * v_cache.stride + kv_offset, k + hd, hd);
          keys[ti] = k;
          values[ti] = k + hd;
        } else {
          keys[ti] = k_cache.ptr<float>() + row * k_cache.stride + kv_offset;
          values[ti] = v_cache.ptr<float>() + row * v_cache.stride + kv_offset;
        }
      }
      // The block's queries transposed into the lanes (lanes past the block stay zero).
      queries.assign(static_cast<std::size_t>(hd * kLanes), 0.0f);
      for (int l = 0; l < block.count; ++l) {
        const float* qh = q.ptr<float>() + (block.first + l) * q.stride + q_offset;
        for (int d = 0; d < hd; ++d) queries[static_cast<std::size_t>(d * kLanes + l)] = qh[d];
      }
      weights.resize(static_cast<std::size_t>(count * kLanes));
      tiles.scores(queries.data(), keys.data(), count, hd, scale, weights.data());
      // Lane l (position pos + l) sees keys first + t for t in [pos + l - window + 1 - first, pos + l - first]:
      // only the first and last keys of the block's span fall outside some lane's window.
      for (int l = 0; l < block.count; ++l) {
        const std::int64_t lo = std::max<std::int64_t>(0, pos + l - cache.window + 1 - first), hi = pos + l - first;
        for (std::int64_t t = 0; t < lo; ++t) weights[static_cast<std::size_t>(t * kLanes + l)] = -INFINITY;
        for (std::int64_t t = hi + 1; t < count; ++t) weights[static_cast<std::size_t>(t * kLanes + l)] = -INFINITY;
      }
      sums.resize(kLanes);
      tiles.softmax(weights.data(), count, sums.data());
      block_out.resize(static_cast<std::size_t>(hd * kLanes));
      tiles.weighted_sum(weights.data(), values.data(), count, hd, block_out.data());
      for (int l = 0; l < block.count; ++l) {
        float* o = out.ptr<float>() + (block.first + l) * out.stride + q_offset;
        const float inverse = 1.0f / sums[static_cast<std::size_t>(l)];
        for (int d = 0; d < hd; ++d) o[d] = block_out[static_cast<std::size_t>(d * kLanes + l)] * inverse;
      }
    }
  });
}

}  // namespace voxtral
