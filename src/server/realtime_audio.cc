#include "server/realtime_audio.h"

namespace voxtral {

void RealtimeAudioPath::configure(const SessionAudio& settings, Sink& sink) {
  if (settings.format != settings_.format) drain(sink);
  if (settings.turn_detection != settings_.turn_detection) {
    detector_.reset();
    if (settings.turn_detection) {
      detector_ = std::make_unique<TurnDetector>(*settings.turn_detection);
      detector_origin_ = position_;
    }
  }
  settings_ = settings;
}

void RealtimeAudioPath::push(std::span<const float> samples, Sink& sink) {
  sink_ = &sink;
  if (settings_.format.rate == kModelRate) {
    take_in(std::vector<float>(samples.begin(), samples.end()));
  } else {
    if (!resampler_) resampler_ = std::make_unique<Resampler>(settings_.format.rate, kModelRate);
    std::vector<float> resampled;
    resampler_->push(samples, resampled);
    take_in(std::move(resampled));
  }
  sink_ = nullptr;
}

void RealtimeAudioPath::drain(Sink& sink) {
  if (!resampler_) return;
  std::vector<float> tail;
  resampler_->finish(tail);
  resampler_.reset();
  sink_ = &sink;
  take_in(std::move(tail));
  sink_ = nullptr;
}

void RealtimeAudioPath::end_turn(bool drop) {
  if (drop) resampler_.reset();
  if (detector_) detector_->reset();
}

void RealtimeAudioPath::take_in(std::vector<float> samples) {
  const auto count = static_cast<std::int64_t>(samples.size());
  if (count == 0) return;
  if (detector_) {
    detector_->push(samples, *this);
  } else {
    sink_->audio(std::move(samples), position_);
  }
  position_ += count;
}

void RealtimeAudioPath::speech_started(std::int64_t audio_start, std::int64_t) {
  turn_position_ = detector_origin_ + audio_start;
  sink_->speech_started(turn_position_);
}

void RealtimeAudioPath::turn_audio(std::span<const float> samples) {
  sink_->audio(std::vector<float>(samples.begin(), samples.end()), turn_position_);
  turn_position_ += static_cast<std::int64_t>(samples.size());
}

void RealtimeAudioPath::speech_stopped(std::int64_t, std::int64_t audio_end) {
  sink_->speech_stopped(detector_origin_ + audio_end);
}

}  // namespace voxtral
