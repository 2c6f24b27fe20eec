// The libsoxr resampler against analytic sines: no delay, the right length and level.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "core/audio.h"
#include "core/error.h"

namespace voxtral {
namespace {

constexpr double kFrequency = 1000.0;
constexpr double kAmplitude = 0.5;
constexpr int kTargetRate = 16000;

std::vector<float> sine(int rate, std::size_t count) {
  std::vector<float> out(count);
  for (std::size_t i = 0; i < count; ++i) {
    out[i] = static_cast<float>(kAmplitude * std::sin(2 * std::numbers::pi * kFrequency * static_cast<double>(i) / rate));
  }
  return out;
}

std::vector<float> resample(const std::vector<float>& input, int rate, std::size_t piece) {
  Resampler resampler(rate, kTargetRate);
  std::vector<float> out;
  for (std::size_t offset = 0; offset < input.size(); offset += piece) {
    resampler.push(std::span(input).subspan(offset, std::min(piece, input.size() - offset)), out);
  }
  resampler.finish(out);
  return out;
}

// Largest difference from the analytic 16 kHz sine shifted by `lag` output samples, away
// from the edges where the filter sees the signal start and stop.
double max_error(const std::vector<float>& out, int lag, std::size_t edge) {
  double worst = 0;
  for (std::size_t j = edge; j + edge < out.size(); ++j) {
    const double t = (static_cast<double>(j) - lag) / kTargetRate;
    worst = std::max(worst, std::abs(out[j] - kAmplitude * std::sin(2 * std::numbers::pi * kFrequency * t)));
  }
  return worst;
}

class ResamplerSine : public ::testing::TestWithParam<int> {};

TEST_P(ResamplerSine, MatchesTheAnalyticSineWithoutDelay) {
  const int rate = GetParam();
  const std::size_t n = static_cast<std::size_t>(rate);  // one second
  const std::vector<float> out = resample(sine(rate, n), rate, n);

  const double expected_length = static_cast<double>(n) * kTargetRate / rate;
  EXPECT_NEAR(static_cast<double>(out.size()), expected_length, 1.0);

  // soxr compensates its filter delay: the best alignment is no shift at all.
  constexpr std::size_t kEdge = 400;
  int best_lag = 0;
  for (int lag = -8; lag <= 8; ++lag) {
    if (max_error(out, lag, kEdge) < max_error(out, best_lag, kEdge)) best_lag = lag;
  }
  EXPECT_EQ(best_lag, 0);
  EXPECT_LT(max_error(out, 0, kEdge), 1e-5);  // measured: about 3e-7

  double sum_squares = 0;
  for (std::size_t j = kEdge; j + kEdge < out.size(); ++j) sum_squares += static_cast<double>(out[j]) * out[j];
  const double rms = std::sqrt(sum_squares / static_cast<double>(out.size() - 2 * kEdge));
  EXPECT_NEAR(rms, kAmplitude / std::sqrt(2.0), 0.01 * kAmplitude / std::sqrt(2.0));
}

TEST_P(ResamplerSine, StreamingMatchesOneShot) {
  const int rate = GetParam();
  const std::vector<float> input = sine(rate, static_cast<std::size_t>(rate) / 2);
  const std::vector<float> whole = resample(input, rate, input.size());
  for (std::size_t piece : {1, 37, 1000}) {
    const std::vector<float> streamed = resample(input, rate, piece);
    ASSERT_EQ(streamed.size(), whole.size()) << "pieces of " << piece;
    for (std::size_t i = 0; i < whole.size(); ++i) ASSERT_EQ(streamed[i], whole[i]) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Rates, ResamplerSine, ::testing::Values(44100, 48000, 8000, 22050));

TEST(Resampler, EqualRatesPassThrough) {
  Resampler resampler(16000, 16000);
  std::vector<float> out;
  resampler.push(std::vector<float>{0.1f, -0.2f}, out);
  resampler.push(std::vector<float>{}, out);
  resampler.push(std::vector<float>{0.3f}, out);
  resampler.finish(out);
  EXPECT_EQ(out, (std::vector<float>{0.1f, -0.2f, 0.3f}));
}

TEST(Resampler, EmptyInputGivesNothing) {
  Resampler resampler(44100, 16000);
  std::vector<float> out;
  resampler.push(std::vector<float>{}, out);
  resampler.finish(out);
  EXPECT_TRUE(out.empty());
}

TEST(Resampler, InvalidRates) {
  EXPECT_THROW(Resampler(0, 16000), Error);
  EXPECT_THROW(Resampler(16000, -1), Error);
  EXPECT_THROW(Resampler(NAN, 16000), Error);
}

}  // namespace
}  // namespace voxtral
