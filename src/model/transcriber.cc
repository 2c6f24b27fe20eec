#include "model/transcriber.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "core/mel.h"
#include "model/decoder.h"
#include "model/encoder.h"
#include "model/schedule.h"

namespace voxtral {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

constexpr int kEncoderPositionsPerCall = 128;

}  // namespace

Transcript transcribe(Model& model, std::span<const float> samples, const TranscribeOptions& options,
                      const std::function<void(const TokenEvent&)>& on_token) {
  const ModelConfig& config = model.config();
  const Tokenizer& tokenizer = model.tokenizer();
  Backend& backend = model.backend();
  const int delay_ms = options.delay_ms > 0 ? options.delay_ms : tokenizer.audio().transcription_delay_ms;
  const int n_delay = delay_positions(delay_ms, config);
  const int left_pad = tokenizer.audio().n_left_pad_tokens;

  const auto call_start = Clock::now();
  Transcript result;
  auto& stats = result.stats;
  stats.audio_seconds = static_cast<double>(samples.size()) / config.audio.sampling_rate;

  auto t = Clock::now();
  const auto padded = pad_offline(samples, config, left_pad, n_delay);
  const MelSpectrogram mel(config.audio);
  const auto frames = mel.compute(padded);
  const std::int64_t n_positions = static_cast<std::int64_t>(padded.size()) / config.samples_per_position();
  stats.mel_ms = ms_since(t);
  stats.positions = n_positions;
  if (n_positions > config.decoder.model_max_length) {
    fail("audio", cat("is ", stats.audio_seconds, " s long: more than the ", config.decoder.model_max_length,
                      " positions (", config.decoder.model_max_length / config.audio.frame_rate,
                      " s) this model handles in one pass"));
  }

  t = Clock::now();
  AudioEncoder encoder(backend, config, model.weights(), kEncoderPositionsPerCall, model.kv_cache_type());
  DeviceBuffer audio(backend, ElemType::F32, n_positions, config.decoder.dim);
  const std::size_t values_per_position = static_cast<std::size_t>(config.mel_frames_per_position()) * config.audio.num_mel_bins;
  for (std::int64_t p = 0; p < n_positions; p += kEncoderPositionsPerCall) {
    const int count = static_cast<int>(std::min<std::int64_t>(kEncoderPositionsPerCall, n_positions - p));
    encoder.encode(std::span(frames).subspan(static_cast<std::size_t>(p) * values_per_position, count * values_per_position),
                   count, audio.view().row_range(p, count));
  }
  std::vector<float> sync(1);
  backend.copy_to_host(audio.view().row_range(0, 1).col_range(0, 1), sync.data());  // wait for the encoder
  stats.encoder_ms = ms_since(t);

  const auto prompt = prompt_ids(tokenizer, n_delay);
  const auto prompt_len = static_cast<std::int64_t>(prompt.size());
  t = Clock::now();
  TextDecoder decoder(backend, config, model.weights(), static_cast<int>(prompt_len - 1), n_positions,
                      model.kv_cache_type());
  decoder.start(model.ffn_norms(n_delay));
  decoder.prefill(std::span(prompt).first(prompt.size() - 1), audio.view().row_range(0, prompt_len - 1), 0);
  stats.prefill_ms = ms_since(t);

  TextStream text(tokenizer);
  int input = prompt.back();
  for (std::int64_t p = prompt_len - 1; p < n_positions; ++p) {
    const auto step_start = Clock::now();
    const int token = decoder.step(input, audio.view().row_range(p, 1), p);
    stats.step_ms.push_back(ms_since(step_start));
    if (p == prompt_len - 1) stats.first_token_ms = ms_since(call_start);
    if (options.on_step_logits) options.on_step_logits(input, p, decoder.step_logits());
    if (token == tokenizer.eos_id() && !options.ignore_eos) break;
    result.ids.push_back(token);
    TokenEvent event{token, p, text.push(token)};
    result.text += event.text;
    if (on_token) on_token(event);
    input = token;
  }
  const std::string tail = text.finish();
  if (!tail.empty()) {
    result.text += tail;
    if (on_token) on_token(TokenEvent{-1, n_positions, tail});
  }
  for (double ms : stats.step_ms) stats.decode_ms += ms;
  return result;
}

}  // namespace voxtral
