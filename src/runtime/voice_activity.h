// Turn detection: where an utterance starts and ends, from the audio alone (an energy VAD
// with a percentile noise floor, hysteresis and a sustained-voicing rule), with OpenAI's
// server_vad parameters.
//
// Why our own: Debian 12 has no libfvad; its webrtc-audio-processing (0.3, a 2016 snapshot)
// offers voice detection only inside its whole processing module, with four fixed
// aggressiveness levels and no continuous threshold; speexdsp's detector is part of its
// noise-suppressing preprocessor. The decision needed here is coarse (a turn ends after a
// pause of hundreds of milliseconds), and a frame energy against the room's noise floor
// makes it reliably at 10 ms resolution.
//
// The method, per 10 ms frame of 16 kHz audio:
//   1. a second-order high-pass at 100 Hz (RBJ audio-EQ cookbook biquad) removes DC and mains
//      hum, which carry energy but no speech;
//   2. the frame's level L = 10 log10(mean square) in dBFS;
//   3. the noise floor N is the 10th percentile of L over the last 3 s (0.5 dB bins), never
//      below -90 dBFS. Room noise is not steady: its 10 ms frames spread over several dB, so
//      the quietest frame (minimum statistics) sits well under the noise's typical level and
//      ordinary noise frames cross any small margin over it; a low percentile is the level
//      most noise frames reach. Speech raises it only where it fills over 90% of the 3 s
//      (long connected phrases), and then the first 0.3 s of a pause bring it back down;
//   4. the speech level S is the peak L of voiced frames, falling 5 dB per second;
//   5. a frame is voiced when L > max(N + margin, floor), margin = 4 + 16 * threshold dB and
//      floor = -65 + 30 * threshold dBFS (threshold 0.5: 12 dB over the noise and at least
//      -50 dBFS). Inside speech (hysteresis) the bounds are 3 and 6 dB lower, so weak sounds
//      within a word (fricatives, closures) stay voiced, but the frame must also be within
//      30 dB of S: breaths and reverberation tails far below the talker's level are not speech;
//   6. speech starts at the first voiced frame of 4 voiced frames among 6 consecutive ones
//      (a click is not speech). Inside speech a voiced frame continues it only with at least
//      3 voiced frames among the last 5 (30 ms of sustained sound): a lone noise frame over
//      the bound does not reset the pause. Speech stops after silence_duration_ms without
//      such a frame, at the end of the last one.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <vector>

namespace voxtral {

// OpenAI's turn_detection {type: "server_vad", threshold, prefix_padding_ms, silence_duration_ms}.
struct TurnDetectionOptions {
  double threshold = 0.5;        // [0, 1]: higher needs louder speech (noisy rooms)
  int prefix_padding_ms = 300;   // [0, 10000]: audio kept before the detected start of speech
  int silence_duration_ms = 500; // [10, 10000]: the pause that ends a turn
  bool operator==(const TurnDetectionOptions&) const = default;
};

// Throws Error naming the field ("threshold: ...") when a value is out of its range (NaN too).
void validate(const TurnDetectionOptions& options);

// The frame classifier: one decision per 10 ms of 16 kHz audio.
class VoiceActivityDetector {
 public:
  static constexpr int kSampleRate = 16000;
  static constexpr int kFrameSamples = 160;  // 10 ms

  explicit VoiceActivityDetector(double threshold);
  // Whether this frame (kFrameSamples samples) is voiced; `in_speech` selects the lower
  // (continuation) bounds and the bound relative to the speech level.
  bool voiced(std::span<const float, kFrameSamples> frame, bool in_speech);
  double noise_floor_db() const { return noise_db_; }
  double speech_level_db() const { return speech_db_; }

 private:
  static constexpr int kWindowFrames = 300;  // the noise floor's 3 s
  static constexpr int kBins = 200;          // 0.5 dB from -100 dBFS to 0

  double margin_db_, floor_db_;
  double noise_db_ = -90, speech_db_ = -90;
  std::vector<int> histogram_ = std::vector<int>(kBins);  // of the window's levels
  std::vector<std::uint8_t> window_;                       // the window's bins, a ring
  std::size_t next_ = 0;                                   // the ring's oldest entry once full
  // The high-pass filter: coefficients and state (direct form I).
  double b0_ = 0, b1_ = 0, b2_ = 0, a1_ = 0, a2_ = 0;
  double x1_ = 0, x2_ = 0, y1_ = 0, y2_ = 0;
};

// What a TurnDetector reports, in the order it happens in the audio. Positions count
// 16 kHz samples from the first sample pushed.
class TurnSink {
 public:
  virtual ~TurnSink() = default;
  // Speech began at `speech_start`; its turn's audio begins `prefix_padding_ms` earlier
  // (`audio_start`, not before the end of the previous turn or the first sample).
  virtual void speech_started(std::int64_t audio_start, std::int64_t speech_start) = 0;
  // Audio of the current turn, from audio_start on, in order (only while in a turn).
  virtual void turn_audio(std::span<const float> samples) = 0;
  // The turn is over: speech ended at `speech_end`; `audio_end` (speech_end plus the
  // silence duration) is where it was decided and where the turn's audio ends.
  virtual void speech_stopped(std::int64_t speech_end, std::int64_t audio_end) = 0;
};

// A VoiceActivityDetector over a stream of any chunking, holding the prefix padding and
// cutting turns. Memory: the prefix padding and a few frames.
class TurnDetector {
 public:
  explicit TurnDetector(const TurnDetectionOptions& options);  // validates
  void push(std::span<const float> samples, TurnSink& sink);
  // Ends the current turn without a speech_stopped (the client committed or cleared it):
  // the detector waits for new speech; the prefix it holds is dropped.
  void reset();
  bool in_speech() const { return in_speech_; }
  std::int64_t position() const { return position_; }  // samples pushed
  const TurnDetectionOptions& options() const { return options_; }

 private:
  void frame(std::span<const float, VoiceActivityDetector::kFrameSamples> frame, TurnSink& sink);

  TurnDetectionOptions options_;
  VoiceActivityDetector vad_;
  std::int64_t prefix_samples_, silence_samples_;
  std::vector<float> pending_;   // the start of the next frame
  std::deque<float> held_;       // idle: the audio before a possible start (prefix + onset window)
  std::deque<bool> recent_;      // the last decisions: the onset window, or in speech the last 5
  std::int64_t position_ = 0;    // samples pushed (through the last whole frame and pending_)
  std::int64_t frames_ = 0;      // frames decided
  std::int64_t turn_floor_ = 0;  // a turn's audio starts no earlier than this (previous turn's end)
  bool in_speech_ = false;
  std::int64_t last_voiced_end_ = 0;  // in speech: end of the last voiced frame
};

}  // namespace voxtral
