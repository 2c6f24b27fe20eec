// The model's weights as backend handles, loaded once. Projections that read the same input
// are stacked so one pass computes them: wq|wk|wv and w1|w3 (gate|up).
#pragma once

#include <vector>

#include "backend/backend.h"
#include "core/config.h"
#include "core/safetensors.h"
#include "model/quantized_store.h"

namespace voxtral {

struct EncoderLayerWeights {
  Weight attention_norm;
  Weight qkv, qkv_bias;  // bias: wq and wv biases, zeros for wk (which has none)
  Weight wo, wo_bias;
  Weight ffn_norm;
  Weight gate_up;
  Weight w2, w2_bias;
};

struct DecoderLayerWeights {
  Weight attention_norm;
  Weight qkv;
  Weight wo;
  Weight gate_up;
  Weight w2;
  // Host copies for the per-session time conditioning (see Decoder).
  std::vector<float> ffn_norm;
  std::vector<float> ada_down;  // [ada_dim, dim]
  std::vector<float> ada_up;    // [dim, ada_dim]
};

struct ModelWeights {
  Weight conv0, conv0_bias;  // [enc_dim, mel_bins * 3]
  Weight conv1, conv1_bias;  // [enc_dim, enc_dim * 3]
  std::vector<EncoderLayerWeights> encoder;
  Weight encoder_norm;
  Weight adapter_in;   // [dec_dim, enc_dim * downsample]
  Weight adapter_out;  // [dec_dim, dec_dim]
  Weight tok_embeddings;  // [vocab, dec_dim]: input embeddings and the tied LM head
  std::vector<DecoderLayerWeights> decoder;
  Weight final_norm;

  // A quantized file's matrices load as it stores them. From a BF16 file, `quantize_to` Q8 or
  // Q4 quantizes the matrices core/quantized_model.h names (into `store`, on `threads`
  // threads); FP8 hands the same matrices to the backend to quantize (the token embedding goes
  // Q8 through `store`); BF16 loads them as they are.
  static ModelWeights load(Backend& backend, const SafeTensors& file, const ModelConfig& config,
                           WeightFormat quantize_to = WeightFormat::BF16, QuantizedStore* store = nullptr,
                           int threads = 1);
};

}  // namespace voxtral
