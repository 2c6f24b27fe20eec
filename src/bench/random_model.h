// Writes a model directory with random weights in the Mistral layout (params.json,
// consolidated.safetensors in BF16, tekken.json), shaped by any params.json: with the real
// model's params it has the real shapes, so benchmarks need no real weights. The values
// are seeded and scaled to keep activations finite; speed does not depend on them.
#pragma once

#include <cstdint>
#include <filesystem>

namespace voxtral {

struct RandomModelOptions {
  std::filesystem::path params_json;  // shapes to use
  std::filesystem::path out_dir;
  std::uint64_t seed = 1;
  int threads = 0;  // 0: one per core
};

// Returns the number of bytes written to consolidated.safetensors.
std::uint64_t write_random_model(const RandomModelOptions& options);

}  // namespace voxtral
