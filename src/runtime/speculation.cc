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
  int best = 1;
  double best_rate = 0;
  for (int n = 1; n <= limit; n *= 2) {
    const auto s = static_cast<std::size_t>(slot(n));
    const double ms = ms_[s] > 0 ? ms_[s] : base * kPriorRatio[s];
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
