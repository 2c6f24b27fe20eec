// Transcript renderings shared by the CLI and the server: SRT and WebVTT cues, and JSON in
// the shape of OpenAI's verbose_json (text, duration, segments with words).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "transcript/segments.h"

namespace voxtral {

std::string timestamp(double seconds, char fraction_separator);  // "00:01:02,345"
std::string srt_cue(int index, const Segment& segment);            // index from 1
std::string vtt_header();
std::string vtt_cue(const Segment& segment);
// Whisper's compression ratio: the UTF-8 length of `text` over its zlib-compressed length
// (default level), as Whisper computes it to spot repetitive output. 0 for "".
double compression_ratio(std::string_view text);

// {task, duration, text, segments, words}. Each segment carries OpenAI's verbose_json
// fields: id, seek (the start in Whisper's 10 ms frames: this model has no 30 s windows),
// start, end, text, tokens (the ids of the tokens that wrote the segment's words),
// temperature (0: decoding is greedy), avg_logprob (mean natural log of the probability of
// those tokens when the stream reported probabilities, StreamOptions::alternatives > 0,
// else 0), compression_ratio (above) and no_speech_prob (0: the model has no no-speech
// token; a segment exists only where it wrote words).
nlohmann::json segments_json(const std::vector<Segment>& segments, const std::vector<Word>& words, const std::string& text,
                             double duration);

}  // namespace voxtral
