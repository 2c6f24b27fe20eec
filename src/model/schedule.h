// The transcription schedule of Voxtral Realtime (docs/MODEL.md): how much silence pads the
// audio, the prompt, and which delays are valid. One decoder position is 80 ms of audio.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/config.h"
#include "core/tokenizer.h"

namespace voxtral {

// Positions of silence appended after the audio beyond the delay (so the tail is emitted).
inline constexpr int kRightPadExtraPositions = 10;

// Delay in decoder positions for a delay in milliseconds. Valid: multiples of one position
// (80 ms) from 80 to 1200, and 2400; anything else throws an Error saying so.
int delay_positions(int delay_ms, const ModelConfig& config);

// [BOS] + [STREAMING_PAD] x (left_pad + n_delay).
std::vector<int> prompt_ids(const Tokenizer& tokenizer, int n_delay);

// Zeros appended after `input_samples` of audio: up to a whole position, plus
// (n_delay + 1 + 10) positions.
std::int64_t right_padding_samples(std::int64_t input_samples, const ModelConfig& config, int n_delay);

// Offline padding: left_pad positions of zeros before the audio, right_padding_samples after.
std::vector<float> pad_offline(std::span<const float> samples, const ModelConfig& config, int left_pad_positions,
                               int n_delay);

}  // namespace voxtral
