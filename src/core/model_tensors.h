// The tensors a model directory must hold, derived from its config (711 for the real model),
// with Mistral names, and the check that a safetensors file provides each of them with a
// floating dtype and the expected shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace voxtral {

class SafeTensors;

namespace tensor_names {
// Prefixes of the Mistral layout.
inline constexpr const char* kEncoder = "mm_streams_embeddings.embedding_module.whisper_encoder.";
inline constexpr const char* kAdapter = "mm_streams_embeddings.embedding_module.audio_language_projection.";
inline constexpr const char* kTokEmbeddings = "mm_streams_embeddings.embedding_module.tok_embeddings.weight";

// e.g. encoder_layer(3, "attention.wq.weight") =
// "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.3.attention.wq.weight"
std::string encoder_layer(int layer, const std::string& suffix);
std::string encoder(const std::string& suffix);        // kEncoder + suffix
std::string adapter(const std::string& suffix);        // kAdapter + suffix
std::string decoder_layer(int layer, const std::string& suffix);  // "layers.<i>." + suffix
}  // namespace tensor_names

struct TensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
};

std::vector<TensorSpec> expected_tensors(const ModelConfig& config);

// Throws Error naming the file and listing every missing tensor and every dtype or shape
// mismatch ("layers.0.attention.wq.weight: expected shape [4096, 3072], found [4096, 3071]").
// Tensors beyond the expected set are ignored.
void check_model_tensors(const SafeTensors& weights, const ModelConfig& config);

}  // namespace voxtral
