#include "model/formats.h"

#include <cmath>
#include <cstdio>

namespace voxtral {

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
    segs.push_back({{"id", i}, {"start", round3(s.start)}, {"end", round3(s.end)}, {"text", s.text}});
  }
  nlohmann::json ws = nlohmann::json::array();
  for (const auto& w : words) ws.push_back({{"word", w.text}, {"start", round3(w.start)}, {"end", round3(w.end)}});
  return {{"task", "transcribe"}, {"duration", round3(duration)}, {"text", text}, {"segments", segs}, {"words", ws}};
}

}  // namespace voxtral
