// Word start and end times for a streaming model's words, from when the model emitted each
// word and from the energy of the audio around it.
//
// The method (README, "Timestamps"):
// - End: Voxtral Realtime emits a word's first token `n_delay` positions after the position
//   holding the word's last sample (docs/MODEL.md; the demo model is trained on exactly that
//   target). So a word emitted at position p ends inside position p - n_delay: its end is
//   the middle of that 80 ms position (at most 40 ms off when the model is on time), never
//   past the audio fed.
// - Start: the onset of speech energy after the previous word's end. A frame's energy is the
//   mean square of the 400-sample window of a log-mel frame (10 ms hop), in dB. A frame is
//   loud when it passes floor + max(6 dB, 20% of (peak - floor)): the floor is the 10th
//   percentile of the energies from 1 s before the previous word's end, the peak the 98th
//   percentile over the last 5 s (digital silence left out; for the floor, every frame
//   more than 45 dB below the peak counts as silence), so the threshold follows the noise
//   under the speech and the speaker's level. No level is absolute: a gain moves every
//   energy, the floor, the peak and the threshold by the same dB, and changes no time.
//   Searching from the previous word's end (at most 2 s before this word's end), the start is one hop before the first
//   of two loud frames in a row. When the audio is still loud at the previous word's end
//   (that end came a little early), its tail is skipped if a quiet frame follows within
//   100 ms; otherwise the words run together and the start is the previous word's end. A word
//   lasts at least 60 ms where the previous word leaves room.
// The evidence for a word ends `lookahead` (n_delay positions) after the word's end: audio
// the stream has always heard when it emits the word, however far the encoder has run ahead.
// So live and offline transcription, fed in any chunking, give the same times. Memory is
// bounded: frames older than `history` behind the newest are dropped.
#pragma once

#include <cstddef>
#include <deque>

namespace voxtral {

struct WordSpan {
  double start = 0, end = 0;  // seconds of input audio
};

class WordTimer {
 public:
  static constexpr double kPeakSeconds = 5.0;      // the speech's level: over this much audio
  static constexpr double kPeakQuantile = 0.98;
  static constexpr double kFloorSeconds = 1.0;     // the noise floor: from this long before the previous end
  static constexpr double kFloorQuantile = 0.10;
  static constexpr double kMarginDb = 6.0;         // a loud frame is at least this far above the floor...
  static constexpr double kRangeFraction = 0.2;    // ... and this fraction of the way from floor to peak
  static constexpr double kQuietDb = 45.0;         // frames this far below the peak count as silence
  static constexpr double kDigitalSilenceDb = -150.0;  // below any 16-bit sound (one LSB in a window: -116 dB)
  static constexpr double kMaxWordSeconds = 2.0;   // how far before its end a word's onset is sought
  static constexpr double kMinWordSeconds = 0.06;  // the shortest word, where the previous word leaves room
  static constexpr double kTailSeconds = 0.1;      // the previous word's sound skipped after its estimated end

  // hop: seconds between frames. lookahead: the evidence for a word ends this long after
  // the word's end; every frame up to there must have been added when the word is timed.
  // history: frames kept behind the newest (at least kPeakSeconds + lookahead, plus however
  // far the frames run ahead of the words being timed).
  WordTimer(double hop, double lookahead, double history) : hop_(hop), lookahead_(lookahead), history_(history) {}

  // One frame: the mean square (of samples in [-1, 1]) of a window centred at
  // `center_seconds` of input audio. Frames arrive in time order, `hop` apart.
  void add_frame(double center_seconds, double mean_square);
  // Times of the next word, whose end the model's emission places at `end` (seconds of input
  // audio). Words come in order; each starts no earlier than the previous one ends.
  WordSpan next_word(double end);
  std::size_t frames_held() const { return frames_.size(); }

 private:
  struct Frame {
    double time;
    float db;
  };
  std::deque<Frame> frames_;
  double hop_, lookahead_, history_;
  double previous_end_ = 0;
};

}  // namespace voxtral
