// Words and segments with times, from the text pieces a stream produces. Each piece carries
// the start and end of its word (model/word_times.h: the end from when the model emitted
// the word, the start from the onset of speech energy after the previous word).
#pragma once

#include <string>
#include <vector>

#include "runtime/stream.h"

namespace voxtral {

struct Word {
  std::string text;  // without the leading space
  double start = 0, end = 0;
  std::vector<int> tokens;  // the ids of the pieces that wrote the text
  // Sum of ln p over the tokens whose probability the stream reported
  // (StreamOptions::alternatives), and how many those were.
  double logprob_sum = 0;
  int scored_tokens = 0;
};

struct Segment {
  std::string text;
  double start = 0, end = 0;
  std::vector<Word> words;
};

// Groups pieces into words (a piece whose text starts with whitespace starts a new word)
// and words into segments. A segment ends after sentence punctuation, at a pause (the next
// word starts more than `max_gap` seconds after the last one ended), once it holds
// `max_chars` characters, and where a stream segment ended (a piece with id -1).
// A segment spans its words, and lasts at least `min_duration` seconds where the audio
// allows: it never reaches past the next segment's start or the audio heard so far, so
// subtitle cues stay readable and never overlap.
class Segmenter {
 public:
  static constexpr double kPauseSeconds = 0.4;     // within a sentence, words rarely pause longer
  static constexpr double kMinDurationSeconds = 1.0;
  static constexpr std::size_t kMaxChars = 84;     // two subtitle lines of 42

  explicit Segmenter(double max_gap = kPauseSeconds, std::size_t max_chars = kMaxChars,
                     double min_duration = kMinDurationSeconds)
      : max_gap_(max_gap), max_chars_(max_chars), min_duration_(min_duration) {}

  // Adds a piece; returns the segments it completed.
  std::vector<Segment> add(const TextPiece& piece);
  // Returns the segment still open (if any) and resets.
  std::vector<Segment> finish();
  const std::vector<Word>& all_words() const { return all_words_; }

 private:
  void close_word();
  std::vector<Segment> close_segment(double limit);

  double max_gap_;
  std::size_t max_chars_;
  double min_duration_;
  Word word_;
  bool in_word_ = false;
  Segment segment_;
  std::vector<Word> all_words_;
  double audio_end_ = 0;  // input audio heard so far (the latest piece's audio_end)
};

}  // namespace voxtral
