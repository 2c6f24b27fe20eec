#include "core/config.h"

#include <cmath>

#include "core/error.h"
#include "core/json_util.h"
#include "core/mapped_file.h"

namespace voxtral {

namespace {

// Generous bounds: they exist to turn a corrupt file into an error instead of a huge
// allocation, not to restrict real models.
constexpr int kMaxWidth = 1 << 16;
constexpr int kMaxLayers = 1024;
constexpr int kMaxPositions = 1 << 24;

int int_in(const JsonObject& o, std::string_view key, int lo, int hi) {
  return static_cast<int>(o.integer_in(key, lo, hi));
}

float positive_float(const JsonObject& o, std::string_view key) {
  const double v = o.number(key);
  // (as a float: 1e39 passes as a double and becomes infinity, and every norm NaN)
  if (!(v > 0) || !std::isfinite(static_cast<float>(v))) o.fail_at(key, cat("must be positive and finite, found ", v));
  return static_cast<float>(v);
}

float finite_float(const JsonObject& o, std::string_view key) {
  const double v = o.number(key);
  if (!std::isfinite(static_cast<float>(v))) o.fail_at(key, cat("must be finite, found ", v));
  return static_cast<float>(v);
}

void require_flag(const JsonObject& o, std::string_view key, bool wanted) {
  if (o.has(key) && o.boolean(key) != wanted) {
    o.fail_at(key, cat("this engine supports only ", wanted ? "true" : "false"));
  }
}

void require_string(const JsonObject& o, std::string_view key, std::string_view wanted) {
  if (o.has(key) && o.string(key) != wanted) {
    o.fail_at(key, cat("this engine supports only \"", wanted, "\", found \"", o.string(key), "\""));
  }
}

void read_transformer(const JsonObject& o, TransformerConfig& t) {
  t.dim = int_in(o, "dim", 1, kMaxWidth);
  t.n_layers = int_in(o, "n_layers", 1, kMaxLayers);
  t.n_heads = int_in(o, "n_heads", 1, kMaxWidth);
  t.n_kv_heads = int_in(o, "n_kv_heads", 1, kMaxWidth);
  t.head_dim = int_in(o, "head_dim", 2, kMaxWidth);
  t.hidden_dim = int_in(o, "hidden_dim", 1, 1 << 20);
  t.sliding_window = int_in(o, "sliding_window", 1, kMaxPositions);
  t.norm_eps = positive_float(o, "norm_eps");
  t.rope_theta = positive_float(o, "rope_theta");
  if (t.n_heads % t.n_kv_heads != 0) {
    o.fail_at("n_kv_heads", cat(t.n_kv_heads, " does not divide n_heads = ", t.n_heads));
  }
  if (t.head_dim % 2 != 0) o.fail_at("head_dim", cat("must be even for RoPE, found ", t.head_dim));
  if (static_cast<long>(t.n_heads) * t.head_dim > kMaxWidth) {
    o.fail_at("n_heads", "n_heads x head_dim is implausibly large");
  }
  require_flag(o, "causal", true);
}

}  // namespace

ModelConfig ModelConfig::from_json_text(std::string_view text, const std::string& source) {
  const Json doc = parse_json(text, source);
  const JsonObject top(doc, source);
  ModelConfig c;

  read_transformer(top, c.decoder);
  c.decoder.vocab_size = int_in(top, "vocab_size", 1, 1 << 24);
  c.decoder.model_max_length = int_in(top, "model_max_length", 1, 1 << 30);
  require_flag(top, "use_biases", false);
  require_flag(top, "tied_embeddings", true);
  if (top.boolean_or("ada_rms_norm_t_cond", false)) {
    c.decoder.ada_norm_dim = int_in(top, "ada_rms_norm_t_cond_dim", 1, kMaxWidth);
  }

  const JsonObject whisper = top.object("multimodal").object("whisper_model_args");
  const JsonObject enc = whisper.object("encoder_args");
  read_transformer(enc, c.encoder);
  c.encoder.use_biases = enc.boolean_or("use_biases", false);
  require_string(enc, "pos_embed", "rope");
  require_string(enc, "ffn_type", "swiglu");
  require_string(enc, "norm_type", "rms_norm");

  const JsonObject audio = enc.object("audio_encoding_args");
  c.audio.sampling_rate = int_in(audio, "sampling_rate", 1000, 192000);
  c.audio.num_mel_bins = int_in(audio, "num_mel_bins", 1, 1024);
  c.audio.hop_length = int_in(audio, "hop_length", 1, 1 << 16);
  c.audio.window_size = int_in(audio, "window_size", 2, 1 << 16);
  c.audio.frame_rate = audio.number("frame_rate");
  c.audio.global_log_mel_max = finite_float(audio, "global_log_mel_max");
  require_string(audio, "transcription_format", "streaming");
  if (c.audio.window_size % 2 != 0) {
    audio.fail_at("window_size", cat("must be even (it is also the FFT size), found ", c.audio.window_size));
  }

  c.downsample_factor = int_in(whisper.object("downsample_args"), "downsample_factor", 1, 64);

  if (top.has("quantization")) {
    const JsonObject q = top.object("quantization");
    const std::string format = q.string("format");
    if (format != "q8" && format != "q4") q.fail_at("format", cat("expected \"q8\" or \"q4\", found \"", format, "\""));
    c.stored_weights = parse_weight_format(format);
    if (q.integer("block_size") != kQuantBlock) q.fail_at("block_size", cat("expected ", kQuantBlock));
  }

  // One decoder position must be exactly 1 / frame_rate seconds of audio.
  const double position_rate = static_cast<double>(c.audio.sampling_rate) / c.samples_per_position();
  if (std::fabs(position_rate - c.audio.frame_rate) > 1e-6 * c.audio.frame_rate) {
    audio.fail_at("frame_rate", cat(c.audio.frame_rate, " disagrees with sampling_rate / (hop_length x 2 x ",
                                    "downsample_factor) = ", position_rate));
  }
  if (c.encoder.n_kv_heads != c.encoder.n_heads) {
    enc.fail_at("n_kv_heads", cat("the encoder uses full multi-head attention: must equal n_heads = ",
                                  c.encoder.n_heads, ", found ", c.encoder.n_kv_heads));
  }
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& params_json) {
  return from_json_text(read_text_file(params_json), params_json.string());
}

}  // namespace voxtral
