#include "transcript/segments.h"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace voxtral {

namespace {

bool ends_sentence(const std::string& word) {
  return !word.empty() && (word.back() == '.' || word.back() == '?' || word.back() == '!');
}

std::string trimmed(const std::string& s) {
  std::size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

}  // namespace

void Segmenter::close_word() {
  if (!in_word_) return;
  in_word_ = false;
  word_.text = trimmed(word_.text);
  if (word_.text.empty()) return;
  if (segment_.words.empty()) segment_.start = word_.start;
  segment_.end = word_.end;
  if (!segment_.text.empty()) segment_.text += ' ';
  segment_.text += word_.text;
  segment_.words.push_back(word_);
  all_words_.push_back(word_);
}

// `limit`: where the next segment starts, or the end of the audio heard.
std::vector<Segment> Segmenter::close_segment(double limit) {
  std::vector<Segment> out;
  if (!segment_.words.empty()) {
    segment_.end = std::max(segment_.end, std::min(segment_.start + min_duration_, limit));
    out.push_back(std::move(segment_));
  }
  segment_ = Segment{};
  return out;
}

std::vector<Segment> Segmenter::add(const TextPiece& piece) {
  audio_end_ = std::max(audio_end_, piece.audio_end);
  std::vector<Segment> done;
  auto take = [&](std::vector<Segment> s) {
    for (auto& seg : s) done.push_back(std::move(seg));
  };
  if (piece.id == -1 && piece.text.empty()) {  // a stream segment ended
    close_word();
    take(close_segment(audio_end_));
    return done;
  }
  if (piece.text.empty()) return done;
  const bool starts_word = std::isspace(static_cast<unsigned char>(piece.text.front())) || !in_word_;
  if (starts_word) {
    close_word();
    if (!segment_.words.empty()) {
      const Word& last = segment_.words.back();
      if (ends_sentence(last.text) || piece.start - last.end > max_gap_ || segment_.text.size() >= max_chars_) {
        take(close_segment(std::min(piece.start, audio_end_)));
      }
    }
    word_ = Word{};
    word_.start = piece.start;
    word_.end = piece.end;
    in_word_ = true;
  }
  word_.text += piece.text;
  if (piece.id >= 0) word_.tokens.push_back(piece.id);
  for (const auto& alternative : piece.alternatives) {
    if (alternative.id == piece.id && alternative.probability > 0) {
      word_.logprob_sum += std::log(static_cast<double>(alternative.probability));
      ++word_.scored_tokens;
      break;
    }
  }
  word_.end = std::max(word_.end, piece.end);
  if (piece.id == -1) {
    close_word();
    take(close_segment(audio_end_));
  }
  return done;
}

std::vector<Segment> Segmenter::finish() {
  close_word();
  return close_segment(audio_end_);
}

}  // namespace voxtral
