// Offline transcription of a whole recording: the streaming engine fed everything at once,
// reporting each piece of text as it is produced.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/stream.h"

namespace voxtral {

// Offline, the encoder runs on larger pieces than live: fewer, fuller matrix products
// (StreamOptions::encoder_chunk of every whole-recording transcription).
inline constexpr int kOfflineEncoderChunk = 128;

struct Transcript {
  std::vector<int> ids;  // every token produced, specials included, EOS excluded
  std::string text;
  std::vector<TextPiece> pieces;
  StreamStats stats;
};

// options.expected_samples is set from `samples`.
Transcript transcribe(Model& model, std::span<const float> samples, StreamOptions options = {},
                      const std::function<void(const TextPiece&)>& on_piece = {});

}  // namespace voxtral
