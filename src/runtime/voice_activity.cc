#include "runtime/voice_activity.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.h"

namespace voxtral {

namespace {
constexpr double kHighPassHz = 100;
constexpr double kNoisePercentile = 0.10;
constexpr double kLowestFloorDb = -90;
constexpr double kBinDb = 0.5, kLowestBinDb = -100;
constexpr double kMarginHysteresisDb = 3;  // in speech: N + margin - 3 dB
constexpr double kFloorHysteresisDb = 6;   // in speech: floor - 6 dB
constexpr double kSpeechRangeDb = 30;      // in speech: within 30 dB of S
constexpr double kSpeechDecayDb = 0.05;    // per frame: 5 dB/s
constexpr int kOnsetWindow = 6;            // frames
constexpr int kOnsetVoiced = 4;            // voiced frames among them that start speech
constexpr int kSustainWindow = 5;          // frames
constexpr int kSustainVoiced = 3;          // voiced frames among them that continue speech
}  // namespace

void validate(const TurnDetectionOptions& o) {
  if (!(o.threshold >= 0 && o.threshold <= 1)) fail("threshold", cat(o.threshold, " is out of range (0 to 1)"));
  if (o.prefix_padding_ms < 0 || o.prefix_padding_ms > 10000) {
    fail("prefix_padding_ms", cat(o.prefix_padding_ms, " is out of range (0 to 10000 ms)"));
  }
  if (o.silence_duration_ms < 10 || o.silence_duration_ms > 10000) {
    fail("silence_duration_ms", cat(o.silence_duration_ms, " is out of range (10 to 10000 ms)"));
  }
}

VoiceActivityDetector::VoiceActivityDetector(double threshold)
    : margin_db_(4 + 16 * threshold), floor_db_(-65 + 30 * threshold) {
  // RBJ audio-EQ cookbook high-pass, Q = 1/sqrt(2) (Butterworth).
  const double w0 = 2 * std::numbers::pi * kHighPassHz / kSampleRate;
  const double cosw = std::cos(w0), alpha = std::sin(w0) / (2 * std::numbers::sqrt2 / 2);
  const double a0 = 1 + alpha;
  b0_ = (1 + cosw) / 2 / a0;
  b1_ = -(1 + cosw) / a0;
  b2_ = b0_;
  a1_ = -2 * cosw / a0;
  a2_ = (1 - alpha) / a0;
}

bool VoiceActivityDetector::voiced(std::span<const float, kFrameSamples> frame, bool in_speech) {
  double energy = 0;
  for (const float sample : frame) {
    const double x = sample;
    const double y = b0_ * x + b1_ * x1_ + b2_ * x2_ - a1_ * y1_ - a2_ * y2_;
    x2_ = x1_;
    x1_ = x;
    y2_ = y1_;
    y1_ = y;
    energy += y * y;
  }
  const double level = 10 * std::log10(energy / kFrameSamples + 1e-12);
  const auto bin = static_cast<std::uint8_t>(std::clamp((level - kLowestBinDb) / kBinDb, 0.0, kBins - 1.0));
  if (window_.size() < kWindowFrames) {
    window_.push_back(bin);
  } else {
    --histogram_[window_[next_]];
    window_[next_] = bin;
    next_ = (next_ + 1) % kWindowFrames;
  }
  ++histogram_[bin];
  // The percentile's rank, 1-based: the smallest bin whose count reaches it.
  const auto rank = static_cast<int>(std::ceil(kNoisePercentile * static_cast<double>(window_.size())));
  int seen = 0, at = 0;
  while ((seen += histogram_[at]) < rank) ++at;
  noise_db_ = std::max(kLowestFloorDb, kLowestBinDb + (at + 0.5) * kBinDb);
  speech_db_ = std::max(kLowestFloorDb, speech_db_ - kSpeechDecayDb);
  const bool is_voiced =
      in_speech ? level > std::max({noise_db_ + margin_db_ - kMarginHysteresisDb, floor_db_ - kFloorHysteresisDb,
                                    speech_db_ - kSpeechRangeDb})
                : level > std::max(noise_db_ + margin_db_, floor_db_);
  if (is_voiced) speech_db_ = std::max(speech_db_, level);
  return is_voiced;
}

TurnDetector::TurnDetector(const TurnDetectionOptions& options)
    : options_((validate(options), options)),
      vad_(options.threshold),
      prefix_samples_(static_cast<std::int64_t>(options.prefix_padding_ms) * VoiceActivityDetector::kSampleRate / 1000),
      silence_samples_(static_cast<std::int64_t>(options.silence_duration_ms) * VoiceActivityDetector::kSampleRate /
                       1000) {}

void TurnDetector::push(std::span<const float> samples, TurnSink& sink) {
  constexpr std::size_t n = VoiceActivityDetector::kFrameSamples;
  position_ += static_cast<std::int64_t>(samples.size());
  if (!pending_.empty()) {
    const std::size_t take = std::min(n - pending_.size(), samples.size());
    pending_.insert(pending_.end(), samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(take));
    samples = samples.subspan(take);
    if (pending_.size() < n) return;
    frame(std::span<const float, n>(pending_.data(), n), sink);
    pending_.clear();
  }
  while (samples.size() >= n) {
    frame(samples.first<n>(), sink);
    samples = samples.subspan(n);
  }
  pending_.assign(samples.begin(), samples.end());
}

void TurnDetector::reset() {
  in_speech_ = false;
  held_.clear();
  recent_.clear();
  turn_floor_ = frames_ * VoiceActivityDetector::kFrameSamples;
}

void TurnDetector::frame(std::span<const float, VoiceActivityDetector::kFrameSamples> samples, TurnSink& sink) {
  constexpr std::int64_t n = VoiceActivityDetector::kFrameSamples;
  const std::int64_t end = (frames_ + 1) * n;  // of this frame
  ++frames_;
  if (in_speech_) {
    sink.turn_audio(samples);
    const bool voiced = vad_.voiced(samples, true);
    recent_.push_back(voiced);
    if (static_cast<int>(recent_.size()) > kSustainWindow) recent_.pop_front();
    if (voiced && std::count(recent_.begin(), recent_.end(), true) >= kSustainVoiced) {
      last_voiced_end_ = end;
    } else if (end - last_voiced_end_ >= silence_samples_) {
      in_speech_ = false;
      recent_.clear();
      turn_floor_ = end;
      sink.speech_stopped(last_voiced_end_, end);
    }
    return;
  }
  const bool voiced = vad_.voiced(samples, false);
  held_.insert(held_.end(), samples.begin(), samples.end());
  recent_.push_back(voiced);
  if (static_cast<int>(recent_.size()) > kOnsetWindow) recent_.pop_front();
  const auto keep = static_cast<std::size_t>(prefix_samples_ + kOnsetWindow * n);
  while (held_.size() > keep) held_.pop_front();
  if (std::count(recent_.begin(), recent_.end(), true) < kOnsetVoiced) return;
  // Speech: from the first voiced frame of the window.
  const auto first = std::find(recent_.begin(), recent_.end(), true) - recent_.begin();
  const auto last = recent_.rend() - std::find(recent_.rbegin(), recent_.rend(), true);
  const std::int64_t window_start = end - static_cast<std::int64_t>(recent_.size()) * n;
  const std::int64_t speech_start = window_start + first * n;
  const std::int64_t held_start = end - static_cast<std::int64_t>(held_.size());
  const std::int64_t audio_start = std::max({speech_start - prefix_samples_, turn_floor_, held_start});
  in_speech_ = true;
  last_voiced_end_ = window_start + last * n;
  while (static_cast<int>(recent_.size()) > kSustainWindow) recent_.pop_front();
  sink.speech_started(audio_start, speech_start);
  const std::vector<float> turn(held_.begin() + (audio_start - held_start), held_.end());
  held_.clear();
  sink.turn_audio(turn);
}

}  // namespace voxtral
