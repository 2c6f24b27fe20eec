// `voxtral-bench step`: the batched decoder step alone, N streams at once at a given context,
// against the floor that reading the decoder's weights (and the rows' K/V) sets.
#pragma once

#include <string>
#include <vector>

#include "model/model.h"

namespace voxtral {

struct StepBenchOptions {
  std::string model_dir;
  ModelOptions model;             // backend, precision, K/V cache type
  std::vector<int> batches{1};    // rows of one step (streams)
  std::vector<int> contexts{64};  // the position every row decodes at (keys 0..C in its window)
  int steps = 60;                 // timed steps per (batch, context), after the warm-up
  int warmup = 5;                 // untimed steps first (the first one records the bucket's graph)
  bool json = false;
  bool skip_bandwidth = false;
};

// Bytes of weights one decode step must read: every decoder projection plus the LM head.
double decoder_bytes_per_step(const ModelConfig& c, WeightFormat format);

int run_step_bench(const StepBenchOptions& options);

}  // namespace voxtral
