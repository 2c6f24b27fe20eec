#include "transcript/formats.h"

#include <cmath>
#include <cstdio>

#include <zlib.h>

namespace voxtral {

namespace {

// OpenAI's segment fields, for this model (see formats.h).
constexpr double kSeekFramesPerSecond = 100;  // Whisper's 10 ms mel frames
constexpr double kUnscoredLogprob = 0;        // no token probabilities were recorded

}  // namespace

double compression_ratio(std::string_view text) {
  if (text.empty()) return 0;
  std::vector<Bytef> packed(compressBound(static_cast<uLong>(text.size())));
  uLongf packed_size = static_cast<uLongf>(packed.size());
  if (compress2(packed.data(), &packed_size, reinterpret_cast<const Bytef*>(text.data()), static_cast<uLong>(text.size()),
                Z_DEFAULT_COMPRESSION) != Z_OK ||
      packed_size == 0) {
    return 0;
  }
  return static_cast<double>(text.size()) / static_cast<double>(packed_size);
}

std::string timestamp(double seconds, char fraction_separator) {
  const auto ms = static_cast<long long>(std::llround(std::max(seconds, 0.0) * 1000.0));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld%c%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60,
                fraction_separator, ms % 1000);
  return buf;
}

std::string srt_cue(int index, const Segment& s) {
  std::string cue = std::to_string(index);
  cue.append("\n").append(timestamp(s.start, ',')).append(" --> ").append(timestamp(s.end, ','));
  cue.append("\n").append(s.text).append("\n\n");
  return cue;
}

std::string vtt_header() { return "WEBVTT\n\n"; }

std::string vtt_cue(const Segment& s) {
  std::string cue = timestamp(s.start, '.');
  cue.append(" --> ").append(timestamp(s.end, '.')).append("\n").append(s.text).append("\n\n");
  return cue;
}

nlohmann::json segments_json(const std::vector<Segment>& segments, const std::vector<Word>& words, const std::string& text,
                             double duration) {
  auto round3 = [](double v) { return std::round(v * 1000.0) / 1000.0; };
  nlohmann::json segs = nlohmann::json::array();
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto& s = segments[i];
    nlohmann::json tokens = nlohmann::json::array();
    double logprob_sum = 0;
    int scored = 0;
    for (const auto& w : s.words) {
      for (const int id : w.tokens) tokens.push_back(id);
      logprob_sum += w.logprob_sum;
      scored += w.scored_tokens;
    }
    segs.push_back({{"id", i},
                    {"seek", std::llround(std::max(s.start, 0.0) * kSeekFramesPerSecond)},
                    {"start", round3(s.start)},
                    {"end", round3(s.end)},
                    {"text", s.text},
                    {"tokens", tokens},
                    {"temperature", 0.0},
                    {"avg_logprob", scored > 0 ? logprob_sum / scored : kUnscoredLogprob},
                    {"compression_ratio", compression_ratio(s.text)},
                    {"no_speech_prob", 0.0}});
  }
  nlohmann::json ws = nlohmann::json::array();
  for (const auto& w : words) ws.push_back({{"word", w.text}, {"start", round3(w.start)}, {"end", round3(w.end)}});
  return {{"task", "transcribe"}, {"duration", round3(duration)}, {"text", text}, {"segments", segs}, {"words", ws}};
}

}  // namespace voxtral
