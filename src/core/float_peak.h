// The range float audio may have. Float samples are full scale at ±1. A real recording goes a
// little past it (a master's inter-sample peaks, a resampler ringing after clipping, a gain
// stage: well under 1.5 in practice), so the bound is 2, 6 dB over full scale. Past it the
// samples are integer PCM values stored as floats (int16's ±32767 from a NumPy user who
// forgot to divide, a WAV written by a tool that did the same): read as floats they are
// nothing but clipping noise, and the model transcribes that as confident nonsense. Every
// front end that takes float samples refuses them with the message below: Python arrays, the
// C API's voxtral_stream_feed, float WAV files (CLI, server uploads, voxtral_load_audio).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace voxtral {

inline constexpr double kMaxFloatPeak = 2.0;

struct FloatPeak {
  double magnitude;   // |sample|
  std::size_t index;  // of the first sample of that magnitude
};

// The sample of largest magnitude when it is beyond kMaxFloatPeak, else nullopt. The samples
// are finite (checked before).
std::optional<FloatPeak> excessive_peak(std::span<const float> samples);
std::optional<FloatPeak> excessive_peak(std::span<const double> samples);

// "samples must be in [-1, 1] (float full scale), got a peak of 32767 at <position> 12; if they
// are 16-bit PCM values, <int16_alternative> or divide them by 32768". `position` names what
// the index counts ("sample", "frame"); `int16_alternative` is the front end's way to pass
// 16-bit samples as they are ("pass them as an int16 array"), or empty.
std::string excessive_peak_problem(const FloatPeak& peak, std::string_view position,
                                   std::string_view int16_alternative = {});

}  // namespace voxtral
