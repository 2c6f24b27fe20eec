#include "runtime/speculation.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace voxtral {

namespace {

// Step time of n rows against one row before any is measured: a 2-core Zen 3 VM, 4B model,
// Q4 fast (BENCHMARKS.md, "Speculative steps"); a backend whose rows cost more is measured
// soon after, since every row count that is tried is timed.
constexpr std::array<double, 4> kPriorRatio = {1.0, 1.15, 1.65, 3.0};
constexpr double kPadShareWeight = 0.05;  // ~20 tokens of memory: a pause or a word changes it fast
constexpr double kTimeWeight = 0.2;

}  // namespace

SpeculationPolicy::SpeculationPolicy(int max_tokens)
    : max_rows_(static_cast<int>(std::bit_floor(static_cast<unsigned>(std::clamp(max_tokens, 0, kMaxSpeculativeTokens) + 1)))) {}

int SpeculationPolicy::slot(int rows) { return std::countr_zero(static_cast<unsigned>(rows)); }

double SpeculationPolicy::expected_tokens(double p, int rows) {
  double sum = 0, term = 1;
  for (int i = 0; i < rows; ++i) {
    sum += term;
    term *= p;
  }
  return sum;
}

int SpeculationPolicy::rows(std::int64_t available) const {
  const int limit = static_cast<int>(std::bit_floor(static_cast<std::uint64_t>(std::clamp<std::int64_t>(available, 1, max_rows_))));
  if (limit == 1) return 1;
  // Times relative to one row: measured where known, otherwise the prior ratios scaled by a
  // measured count's time.
  double base = 0;
  for (int s = 0; s < 4 && base == 0; ++s) {
    if (ms_[static_cast<std::size_t>(s)] > 0) base = ms_[static_cast<std::size_t>(s)] / kPriorRatio[static_cast<std::size_t>(s)];
  }
  if (base == 0) base = 1;
  // Above the largest measured count (when that is 4 or more), the line through the smallest
  // and largest measured ones: a step's cost grows about linearly with its rows once they are
  // not free, and the priors (an AVX2 machine's) overstate it where the products are cheap
  // (an AVX-512 VNNI Xeon: 8 rows 1.8x one row, not 3.0x; BENCHMARKS.md). Not from 1 and 2
  // rows: on a small model their times are mostly noise, and the line would stretch it.
  int low = 0, high = 0;
  for (int n = 1; n <= 8; n *= 2) {
    if (ms_[static_cast<std::size_t>(slot(n))] > 0) {
      if (low == 0) low = n;
      high = n;
    }
  }
  const auto measured = [&](int n) { return ms_[static_cast<std::size_t>(slot(n))]; };
  const auto estimate = [&](int n) {
    const auto s = static_cast<std::size_t>(slot(n));
    if (ms_[s] > 0) return ms_[s];
    if (low != high && high >= 4 && n > high) {
      const double per_row = std::max(0.0, (measured(high) - measured(low)) / (high - low));
      return measured(high) + per_row * (n - high);
    }
    return base * kPriorRatio[s];
  };
  int best = 1;
  double best_rate = 0;
  for (int n = 1; n <= limit; n *= 2) {
    const double ms = estimate(n);
    const double rate = expected_tokens(pad_share_, n) / ms;
    if (rate > best_rate) {
      best_rate = rate;
      best = n;
    }
  }
  return best;
}

void SpeculationPolicy::observe(int rows, double ms, const int* tokens, int taken, int pad) {
  if (rows < 1 || rows > 8 || !std::has_single_bit(static_cast<unsigned>(rows))) return;
  auto& t = ms_[static_cast<std::size_t>(slot(rows))];
  if (std::isfinite(ms) && ms > 0) t = t > 0 ? t + kTimeWeight * (ms - t) : ms;
  for (int i = 0; i < taken; ++i) pad_share_ += kPadShareWeight * ((tokens[i] == pad ? 1.0 : 0.0) - pad_share_);
}

}  // namespace voxtral
