// Offline transcription of a whole recording: pad, log-mel, encode, then the greedy decode
// schedule of MODEL.md, reporting each token as it is produced.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "model/model.h"

namespace voxtral {

struct TranscribeOptions {
  int delay_ms = 0;          // 0: the tokenizer's transcription_delay_ms
  bool ignore_eos = false;   // benchmarks: decode the whole audio span
  // Called after every decode step with the step's input id, position and logits
  // ([1, vocab] in backend memory): for parity checks, not for normal use.
  std::function<void(int input_id, std::int64_t position, const Tensor& logits)> on_step_logits;
};

struct TokenEvent {
  int id = 0;
  std::int64_t position = 0;  // decoder position that produced it
  std::string text;           // the text this token completes (may be empty)
};

struct TranscribeStats {
  double audio_seconds = 0;
  double mel_ms = 0;
  double encoder_ms = 0;   // encoder + adapter
  double prefill_ms = 0;
  double decode_ms = 0;    // all single-token steps
  double first_token_ms = 0;  // from the call until the first token was produced
  std::vector<double> step_ms;
  std::int64_t positions = 0;
};

struct Transcript {
  std::vector<int> ids;  // every token produced, specials included, EOS excluded
  std::string text;
  TranscribeStats stats;
};

Transcript transcribe(Model& model, std::span<const float> samples, const TranscribeOptions& options = {},
                      const std::function<void(const TokenEvent&)>& on_token = {});

}  // namespace voxtral
