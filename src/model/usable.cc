#include "model/usable.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/schedule.h"

namespace voxtral {

namespace {

constexpr const char* kEncoderPath = "multimodal.whisper_model_args.encoder_args.";

// Bytes of a K/V cache of `rows` positions: K and V, F32, every layer.
double kv_cache_bytes(const TransformerConfig& t, std::int64_t rows) {
  return 2.0 * 4.0 * static_cast<double>(rows) * t.kv_width() * t.n_layers;
}

}  // namespace

std::uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page_size);
}

void check_model_usable(const ModelConfig& c, const Tokenizer& t, const std::string& params_json,
                        std::uint64_t memory_bytes) {
  int n_delay = 0;
  try {
    n_delay = delay_positions(t.audio().transcription_delay_ms, c);
  } catch (const Error& e) {
    fail(t.source(), cat("audio.transcription_delay_ms: the model's own delay is unusable: ", e.what()));
  }
  // A segment (between decoder restarts) must hold at least a second of audio after the
  // prompt's padding, or no word fits in it.
  const int padding = t.audio().n_left_pad_tokens + n_delay + 1 + kRightPadExtraPositions;
  const int one_second = static_cast<int>(std::ceil(c.audio.frame_rate));
  if (c.decoder.model_max_length < padding + one_second) {
    fail(params_json, cat("model_max_length: ", c.decoder.model_max_length, " positions leave no room for audio: ",
                          "the prompt's padding takes ", padding, " at the model's ", t.audio().transcription_delay_ms,
                          " ms delay, and a second of audio ", one_second, " more"));
  }
  if (memory_bytes == 0) return;
  auto check_cache = [&](const TransformerConfig& layers, std::int64_t rows, const std::string& field) {
    const double bytes = kv_cache_bytes(layers, rows);
    if (bytes > static_cast<double>(memory_bytes)) {
      fail(params_json, cat(field, ": ", rows, " positions need a K/V cache of ", std::round(bytes / 1e8) / 10,
                            " GB per stream, more than this machine's ",
                            std::round(static_cast<double>(memory_bytes) / 1e8) / 10, " GB of memory"));
    }
  };
  check_cache(c.encoder, c.encoder.sliding_window, std::string(kEncoderPath) + "sliding_window");
  const bool window_binds = c.decoder.sliding_window <= c.decoder.model_max_length;
  check_cache(c.decoder, window_binds ? c.decoder.sliding_window : c.decoder.model_max_length,
              window_binds ? "sliding_window" : "model_max_length");
}

}  // namespace voxtral
