// The candidates a decode step offers for one position (OpenAI's logprobs/top_logprobs):
// the most likely tokens under the softmax of the step's logits, for word confidences and
// alternative readings.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "core/tokenizer.h"

namespace voxtral {

struct Alternative {
  int id = 0;
  std::string text;  // the token's bytes as text (may be a partial character)
  float probability = 0;
};

// Up to `count` + 1 candidates, most likely first, from `logits` (host, [vocab], unnormalized):
// the chosen token (always, with its probability) and the text tokens with probability >=
// `cutoff` among the count + 1 most likely. A control token ([STREAMING_PAD], ...) writes no
// text, so it is offered only when chosen, with empty text. Probabilities are the softmax
// over the whole vocabulary, computed in double from the largest logit.
std::vector<Alternative> top_alternatives(std::span<const float> logits, int chosen, const Tokenizer& tokenizer,
                                          int count, double cutoff);

}  // namespace voxtral
