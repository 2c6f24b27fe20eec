// A realtime session's audio path: the client's samples at the session's rate, resampled to
// the model's 16 kHz (libsoxr), and with turn detection (runtime/voice_activity.h) cut into
// turns, only whose audio goes on. Positions are 16 kHz samples of the session's audio
// since its start.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/audio.h"
#include "runtime/voice_activity.h"
#include "server/realtime_protocol.h"

namespace voxtral {

class RealtimeAudioPath final : private TurnSink {
 public:
  static constexpr int kModelRate = 16000;

  class Sink {
   public:
    virtual ~Sink() = default;
    // The detector found speech: its turn's audio starts at `audio_start` (padding included).
    virtual void speech_started(std::int64_t audio_start) = 0;
    // Samples for the engine, the first at `position`: all of them without turn detection,
    // the turns' with it.
    virtual void audio(std::vector<float> samples, std::int64_t position) = 0;
    // The detector found the pause that ends the turn; its audio ends at `audio_end`.
    virtual void speech_stopped(std::int64_t audio_end) = 0;
  };

  const SessionAudio& settings() const { return settings_; }
  // A new format drains the resampler first (audio already appended was read at the old
  // rate); new turn detection options start a new detector, in its idle state.
  void configure(const SessionAudio& settings, Sink& sink);
  // Samples in [-1, 1) at settings().format.rate.
  void push(std::span<const float> samples, Sink& sink);
  // The samples the resampler still holds come out (a commit: they belong to the turn).
  void drain(Sink& sink);
  // The current turn ends without a pause (a commit or a clear): the detector waits for new
  // speech. With `drop`, what the resampler holds is discarded.
  void end_turn(bool drop);

 private:
  void take_in(std::vector<float> samples);
  // TurnSink: the detector's positions count from detector_origin_.
  void speech_started(std::int64_t audio_start, std::int64_t speech_start) override;
  void turn_audio(std::span<const float> samples) override;
  void speech_stopped(std::int64_t speech_end, std::int64_t audio_end) override;

  SessionAudio settings_;
  std::unique_ptr<Resampler> resampler_;  // when the session's rate is not the model's
  std::unique_ptr<TurnDetector> detector_;
  std::int64_t detector_origin_ = 0;  // the session position where the detector started
  std::int64_t position_ = 0;         // 16 kHz samples of the session's audio so far
  std::int64_t turn_position_ = 0;    // with turn detection: where the next turn audio goes
  Sink* sink_ = nullptr;              // during push/drain/configure
};

}  // namespace voxtral
