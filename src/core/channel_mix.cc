#include "core/channel_mix.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace voxtral {

namespace {

// The window holds at most this many samples (all channels), so that many-channel files
// decide on shorter windows instead of holding megabytes.
constexpr std::size_t kMaxHeldSamples = 1 << 19;
// Less audio than this (s) decides nothing: a few frames say nothing about a recording.
constexpr double kMinDecisionSeconds = 0.1;
// Mean energy per sample below which a window is near-silence (-80 dBFS).
constexpr double kSilentEnergy = 1e-8;
// How far below the uncorrelated level the mix must be to count as cancelled (-20 dB).
constexpr double kCancelledRatio = 0.01;

// One second of frames, or fewer when that would hold more than kMaxHeldSamples.
std::size_t window_frames_for(int channels, int sample_rate) {
  const auto one_second = static_cast<std::size_t>(std::max(sample_rate, 1));
  const std::size_t by_memory = kMaxHeldSamples / static_cast<std::size_t>(std::max(channels, 1));
  return std::max<std::size_t>(1, std::min(one_second, by_memory));
}

}  // namespace

ChannelMixer::ChannelMixer(std::string source, int channels, int sample_rate, WarningHandler on_warning)
    : source_(std::move(source)),
      channels_(channels),
      window_frames_(window_frames_for(channels, sample_rate)),
      min_decision_frames_(
          std::min(window_frames_, static_cast<std::size_t>(std::max(sample_rate, 1) * kMinDecisionSeconds))),
      on_warning_(std::move(on_warning)) {
  if (channels_ < 2) decided_ = true;  // nothing to mix
}

void ChannelMixer::push(const double* interleaved, std::size_t frames, std::vector<float>& mono) {
  const auto c = static_cast<std::size_t>(channels_);
  while (frames > 0) {
    if (decided_) {
      emit(interleaved, frames, mono);
      return;
    }
    const std::size_t room = window_frames_ - held_.size() / c;
    const std::size_t n = std::min(room, frames);
    held_.insert(held_.end(), interleaved, interleaved + n * c);
    interleaved += n * c;
    frames -= n;
    if (held_.size() / c == window_frames_) decide_on_window(mono);
  }
}

void ChannelMixer::finish(std::vector<float>& mono) {
  if (!held_.empty()) decide_on_window(mono);
}

void ChannelMixer::decide_on_window(std::vector<float>& mono) {
  const auto c = static_cast<std::size_t>(channels_);
  const std::size_t frames = held_.size() / c;
  std::vector<double> channel_energy(c, 0.0);
  double mix_energy = 0.0;
  for (std::size_t f = 0; f < frames; ++f) {
    double sum = 0.0;
    for (std::size_t ch = 0; ch < c; ++ch) {
      const double v = held_[f * c + ch];
      channel_energy[ch] += v * v;
      sum += v;
    }
    const double mix = sum / static_cast<double>(c);
    mix_energy += mix * mix;
  }
  double mean_channel_energy = 0.0;
  for (double e : channel_energy) mean_channel_energy += e;
  mean_channel_energy /= static_cast<double>(c);
  if (frames >= min_decision_frames_ && mean_channel_energy / static_cast<double>(frames) >= kSilentEnergy) {
    decided_ = true;
    const double uncorrelated = mean_channel_energy / static_cast<double>(c);
    if (mix_energy < kCancelledRatio * uncorrelated) {
      const auto loudest = std::max_element(channel_energy.begin(), channel_energy.end());
      single_channel_ = static_cast<int>(loudest - channel_energy.begin());
      if (on_warning_) {
        const std::string how =
            mix_energy > 0 ? cat("their average is ", std::lround(-10.0 * std::log10(mix_energy / uncorrelated)),
                                 " dB below what uncorrelated channels give")
                           : std::string("their average is silent");
        on_warning_(cat(source_, ": the ", channels_, " channels cancel when averaged to mono (", how,
                        "; one is likely inverted): using channel ", single_channel_ + 1, " alone"));
      }
    }
  }
  emit(held_.data(), frames, mono);
  held_.clear();
}

void ChannelMixer::emit(const double* interleaved, std::size_t frames, std::vector<float>& mono) const {
  const auto c = static_cast<std::size_t>(channels_);
  mono.reserve(mono.size() + frames);
  if (single_channel_ >= 0) {
    for (std::size_t f = 0; f < frames; ++f) mono.push_back(static_cast<float>(interleaved[f * c + static_cast<std::size_t>(single_channel_)]));
  } else {
    for (std::size_t f = 0; f < frames; ++f) {
      double sum = 0.0;  // double: a sum of up to 1024 integer samples stays exact
      for (std::size_t ch = 0; ch < c; ++ch) sum += interleaved[f * c + ch];
      mono.push_back(static_cast<float>(sum / static_cast<double>(c)));
    }
  }
}

}  // namespace voxtral
