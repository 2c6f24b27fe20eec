// Whether a model's files, each valid alone, describe a model that can transcribe: checked
// at load, so that a bad value is an error naming its field instead of a failure (or an
// out-of-memory kill) at the first transcription.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/tokenizer.h"

namespace voxtral {

// Throws Error naming the file and the field when:
// - tekken.json's transcription_delay_ms is not a delay the model supports;
// - model_max_length leaves no room for one second of audio after the prompt's padding
//   (left pad + delay + 1 + the right pad's extra positions);
// - an attention window (encoder or decoder sliding_window, the decoder's bounded by
//   model_max_length) needs a K/V cache, K and V in F32 for every layer, larger than
//   `memory_bytes` for one stream (0: not checked).
void check_model_usable(const ModelConfig& config, const Tokenizer& tokenizer, const std::string& params_json,
                        std::uint64_t memory_bytes);

// This machine's physical memory in bytes (0 if unknown).
std::uint64_t physical_memory_bytes();

}  // namespace voxtral
