// `voxtral-bench encoder`: the audio encoder and adapter alone on a recording, the way an
// offline transcription feeds them (one stream, requests of the pool's largest size), timed
// over several repetitions: milliseconds per audio second and the real-time multiple.
#pragma once

#include <string>

#include "model/model.h"

namespace voxtral {

struct EncoderBenchOptions {
  std::string model_dir, input;
  ModelOptions model;  // backend, threads, precision, weights
  double seconds = 0;  // repeat (or cut) the recording to this length; 0: as it is
  int repeats = 3;     // timed passes over the whole audio (the median is reported)
  bool json = false;
};

int run_encoder_bench(const EncoderBenchOptions& options);

}  // namespace voxtral
