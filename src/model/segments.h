// Words and segments with times, from the text pieces a stream produces. Token times come
// from decoder positions minus the transcription delay, so they are approximate (one
// position is 80 ms): a word spans from its first token's time to its last token's time
// plus one position.
#pragma once

#include <string>
#include <vector>

#include "model/stream.h"

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
// and words into segments: a segment ends after sentence punctuation, before a pause of
// more than `max_gap` seconds, once it holds `max_chars` characters, and where a stream
// segment ended (a piece with id -1).
class Segmenter {
 public:
  explicit Segmenter(double position_seconds, double max_gap = 1.0, std::size_t max_chars = 84)
      : position_seconds_(position_seconds), max_gap_(max_gap), max_chars_(max_chars) {}

  // Adds pieces; returns the segments they completed.
  std::vector<Segment> add(const TextPiece& piece);
  // Returns the segment still open (if any) and resets.
  std::vector<Segment> finish();
  const std::vector<Word>& all_words() const { return all_words_; }

 private:
  void close_word();
  std::vector<Segment> close_segment();

  double position_seconds_;
  double max_gap_;
  std::size_t max_chars_;
  Word word_;
  bool in_word_ = false;
  Segment segment_;
  std::vector<Word> all_words_;
};

}  // namespace voxtral
