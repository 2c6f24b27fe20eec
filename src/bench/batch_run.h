// voxtral-bench run --batch N: N streams of one recording decoded together through the
// Scheduler (the CLI's many-file path), against one stream alone.
#pragma once

#include <string>
#include <vector>

#include "model/model.h"

namespace voxtral {

struct BatchRunOptions {
  int streams = 1;
  int delay_ms = 0;
  bool json = false;
};

// Transcribes `samples` once alone (the reference ids and time), then as `streams` upload
// jobs of one Scheduler at once (EOS ignored, continuous), and prints the aggregate audio
// seconds per wall second, the scheduler's steps and mean rows per step, and whether every
// stream's token ids equal the lone run's. Returns 0 when they all do, else 1.
int run_batch(Model& model, const std::vector<float>& samples, const BatchRunOptions& options);

}  // namespace voxtral
