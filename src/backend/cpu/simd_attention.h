// The vector steps of the CPU's attention over a block of consecutive query rows
// (cpu_attention.cc: the encoder, a prefill), at the level simd.h's kernels chose.
//
// The block's rows sit in the lanes: kAttentionLanes queries of one head side by side, so
// that each key and value element, broadcast once, serves every query of the block, and the
// softmax runs down the lanes with no horizontal sums. Everything is F32; each lane's
// results depend only on its own query (the same bits whatever rows share the block).
#pragma once

#include <cstdint>

namespace voxtral::simd {

inline constexpr int kAttentionLanes = 16;

struct AttentionKernels {
  // scores[t * 16 + l] = scale * sum_d keys[t][d] * queries[d * 16 + l] for t < count, d < dim:
  // `queries` holds the block's queries transposed, [dim][16].
  void (*scores)(const float* queries, const float* const* keys, std::int64_t count, int dim, float scale,
                 float* scores);
  // In place, per lane l: scores[t][l] = exp(scores[t][l] - max_t scores[t][l]), and
  // sums[l] = the sum of those over t. A score of -inf (a key outside the lane's window)
  // becomes exactly 0; every lane must hold at least one finite score.
  void (*softmax)(float* scores, std::int64_t count, float* sums);
  // out[d * 16 + l] = sum_t weights[t * 16 + l] * values[t][d] for d < dim.
  void (*weighted_sum)(const float* weights, const float* const* values, std::int64_t count, int dim, float* out);
};

const AttentionKernels& attention_kernels();

}  // namespace voxtral::simd
