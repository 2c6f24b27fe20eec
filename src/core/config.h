// The model configuration, read from a Mistral-layout params.json. Nothing about the model's
// shape is hard-coded anywhere else: tiny test models use the same file with small numbers.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "core/quant.h"

namespace voxtral {

struct AudioFrontEndConfig {
  int sampling_rate = 0;        // 16000
  int num_mel_bins = 0;         // 128
  int hop_length = 0;           // 160 samples
  int window_size = 0;          // 400 samples (also n_fft)
  double frame_rate = 0;        // decoder positions per second, 12.5
  float global_log_mel_max = 0; // 1.5: the log-mel floor is this minus 8
};

struct TransformerConfig {
  int dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int hidden_dim = 0;       // SwiGLU width
  int sliding_window = 0;   // a query at p sees keys p-window+1 .. p
  float norm_eps = 0;
  double rope_theta = 0;
  bool use_biases = false;  // encoder: biases on wq, wv, wo and w2

  int q_width() const { return n_heads * head_dim; }
  int kv_width() const { return n_kv_heads * head_dim; }
};

struct DecoderConfig : TransformerConfig {
  int vocab_size = 0;
  int model_max_length = 0;  // largest absolute position
  int ada_norm_dim = 0;      // width of the time-conditioning MLP; 0 = no ada-norm
};

struct ModelConfig {
  AudioFrontEndConfig audio;
  TransformerConfig encoder;
  int downsample_factor = 0;  // encoder frames per decoder position (4)
  // How the file stores its matrices: BF16 (any float dtype, as published), or Q8/Q4 for a
  // directory written by voxtral-quantize (params.json "quantization", core/quantized_model.h).
  WeightFormat stored_weights = WeightFormat::BF16;
  DecoderConfig decoder;

  // The conv stem halves the mel frame rate, the adapter groups downsample_factor frames.
  int mel_frames_per_position() const { return 2 * downsample_factor; }
  int samples_per_position() const { return audio.hop_length * mel_frames_per_position(); }
  int adapter_input_dim() const { return encoder.dim * downsample_factor; }

  // Parses and validates; errors name `source` and the key.
  static ModelConfig from_json_text(std::string_view text, const std::string& source);
  static ModelConfig load(const std::filesystem::path& params_json);
};

}  // namespace voxtral
