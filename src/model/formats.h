// Transcript renderings shared by the CLI and the server: SRT and WebVTT cues, and JSON in
// the shape of OpenAI's verbose_json (text, duration, segments with words).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/segments.h"

namespace voxtral {

std::string timestamp(double seconds, char fraction_separator);  // "00:01:02,345"
std::string srt_cue(int index, const Segment& segment);            // index from 1
std::string vtt_header();
std::string vtt_cue(const Segment& segment);
nlohmann::json segments_json(const std::vector<Segment>& segments, const std::vector<Word>& words, const std::string& text,
                             double duration);

}  // namespace voxtral
