// Multichannel audio to mono: the average of the channels, except when the channels cancel
// in that average (one is the other inverted: a miswired or phase-flipped microphone), where
// the average would be near-silence and the transcript empty. Then the loudest channel is
// used alone and a warning says so.
//
// Detection: over a window of up to one second of non-silent audio, the mix's energy is
// compared with the energy uncorrelated channels would give (the channels' mean energy / C).
// More than 20 dB below that means the channels cancel; uncorrelated channels sit at 0 dB,
// identical ones at +10*log10(C) dB. Windows of near-silence (below -80 dBFS) are mixed as
// they come and decide nothing, as does a last window under 0.1 s. The decision is made
// once per stream, on whole windows, so the output does not depend on how the input was
// split into pieces.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace voxtral {

// Receives messages about input that was still read but not as the user might assume
// ("<source>: ..."); e.g. the CLI prints them on stderr.
using WarningHandler = std::function<void(const std::string& message)>;

class ChannelMixer {
 public:
  ChannelMixer(std::string source, int channels, int sample_rate, WarningHandler on_warning = {});

  // Appends one mono sample per frame of `interleaved` (frames x channels, in [-1, 1]).
  // Until the decision, up to one window of frames is held back.
  void push(const double* interleaved, std::size_t frames, std::vector<float>& mono);
  // End of input: decides on what is held (if not silent) and appends it.
  void finish(std::vector<float>& mono);

  // The 0-based channel used alone, or -1 while the channels are averaged.
  int single_channel() const { return single_channel_; }

 private:
  void decide_on_window(std::vector<float>& mono);
  void emit(const double* interleaved, std::size_t frames, std::vector<float>& mono) const;

  std::string source_;
  int channels_;
  std::size_t window_frames_;
  std::size_t min_decision_frames_;  // a shorter last window is averaged, deciding nothing
  WarningHandler on_warning_;
  bool decided_ = false;
  int single_channel_ = -1;
  std::vector<double> held_;  // interleaved frames of the current window
};

}  // namespace voxtral
