// Speculative decoding with the streaming pad token as the draft. Most positions of a
// transcript emit [STREAMING_PAD] (speech yields ~3-4 text tokens a second, the decoder runs
// 12.5 positions a second), and a stream whose audio is already encoded ahead of its
// decoding (offline, or a live stream that fell behind) knows the audio of its next
// positions. So a step may carry the stream's next position and, behind it, rows for the
// positions after it whose input token is guessed to be the pad: row i's output counts when
// rows 0..i-1 all produced the pad. A step reads every weight once whatever its rows, so on
// a step bound by memory bandwidth the extra rows cost little (2-core Zen 3, Q4 fast, 4B
// model: 1 row 202 ms, 2 rows 224, 4 rows 331; BENCHMARKS.md) and the accepted ones are free
// tokens. Greedy verification: the tokens are exactly those of one row per step, and on the
// CPU (rows computed independently, KvRows::rows_attend_alone) so are their logits, bit for
// bit.
//
// The policy picks how many rows a step carries from what it has seen: the share of steps
// that emitted the pad, and the measured time of steps of each row count (with prior ratios
// until measured). It maximizes the expected tokens per millisecond.
#pragma once

#include <array>
#include <cstdint>

#include "model/model.h"

namespace voxtral {

class SpeculationPolicy {
 public:
  // At most `max_tokens` speculative rows (0 turns speculation off; at most
  // kMaxSpeculativeTokens).
  explicit SpeculationPolicy(int max_tokens);

  // Rows for the next step: 1, 2, 4 or 8 (a step's rows are padded up to a power of two),
  // at most `available` (positions whose audio is encoded, the next one included).
  int rows(std::int64_t available) const;
  // A step of `rows` rows took `ms` and emitted these tokens (the accepted ones, in order);
  // `pad` is the pad token id.
  void observe(int rows, double ms, const int* tokens, int taken, int pad);

  // Expected tokens from a step of n rows when each output is the pad with probability p:
  // 1 + p + ... + p^(n-1).
  static double expected_tokens(double pad_probability, int rows);

 private:
  static int slot(int rows);  // 1, 2, 4, 8 -> 0..3
  int max_rows_ = 1;
  double pad_share_ = 0.75;                 // moving average over emitted tokens
  std::array<double, 4> ms_{};              // moving average per row count (0: not measured)
};

}  // namespace voxtral
