#include "core/float_peak.h"

#include <cmath>

#include "core/error.h"

namespace voxtral {

namespace {

template <typename T>
std::optional<FloatPeak> find_excessive_peak(std::span<const T> samples) {
  FloatPeak peak{0.0, 0};
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const double magnitude = std::fabs(static_cast<double>(samples[i]));
    if (magnitude > peak.magnitude) peak = {magnitude, i};
  }
  if (peak.magnitude > kMaxFloatPeak) return peak;
  return std::nullopt;
}

}  // namespace

std::optional<FloatPeak> excessive_peak(std::span<const float> samples) { return find_excessive_peak(samples); }

std::optional<FloatPeak> excessive_peak(std::span<const double> samples) { return find_excessive_peak(samples); }

std::string excessive_peak_problem(const FloatPeak& peak, std::string_view position, std::string_view int16_alternative) {
  std::string text = cat("samples must be in [-1, 1] (float full scale), got a peak of ", peak.magnitude, " at ",
                         position, " ", peak.index, "; ");
  // The integer width whose full scale the peak fits under: what the values most likely are.
  if (peak.magnitude <= 32768.0) {
    return text + cat("if they are 16-bit PCM values, ", int16_alternative, int16_alternative.empty() ? "" : " or ",
                      "divide them by 32768");
  }
  if (peak.magnitude <= 8388608.0) return text + "if they are 24-bit PCM values, divide them by 8388608";
  if (peak.magnitude <= 2147483648.0) return text + "if they are 32-bit PCM values, divide them by 2147483648";
  return text + "scale them into [-1, 1]";
}

}  // namespace voxtral
