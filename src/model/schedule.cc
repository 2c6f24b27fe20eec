#include "model/schedule.h"

#include <cmath>

#include "core/error.h"

namespace voxtral {

int delay_positions(int delay_ms, const ModelConfig& config) {
  const double ms_per_position = 1000.0 / config.audio.frame_rate;
  const double positions = delay_ms / ms_per_position;
  const int n = static_cast<int>(std::lround(positions));
  const bool whole = std::fabs(positions - n) < 1e-9;
  const bool in_range = (n >= 1 && delay_ms <= 1200) || delay_ms == 2400;
  if (!whole || !in_range) {
    fail("delay", cat(delay_ms, " ms is not supported: use a multiple of ", ms_per_position,
                      " ms from ", ms_per_position, " to 1200, or 2400"));
  }
  return n;
}

std::vector<int> prompt_ids(const Tokenizer& tokenizer, int n_delay) {
  std::vector<int> ids{tokenizer.bos_id()};
  ids.insert(ids.end(), static_cast<std::size_t>(tokenizer.audio().n_left_pad_tokens + n_delay),
             tokenizer.streaming_pad_id());
  return ids;
}

std::int64_t right_padding_samples(std::int64_t input_samples, const ModelConfig& config, int n_delay) {
  const std::int64_t per_position = config.samples_per_position();
  const std::int64_t to_whole = (per_position - input_samples % per_position) % per_position;
  return to_whole + (n_delay + 1 + kRightPadExtraPositions) * per_position;
}

std::vector<float> pad_offline(std::span<const float> samples, const ModelConfig& config, int left_pad_positions,
                               int n_delay) {
  const auto per_position = static_cast<std::size_t>(config.samples_per_position());
  const auto right = static_cast<std::size_t>(right_padding_samples(static_cast<std::int64_t>(samples.size()), config, n_delay));
  std::vector<float> padded(static_cast<std::size_t>(left_pad_positions) * per_position, 0.0f);
  padded.reserve(padded.size() + samples.size() + right);
  padded.insert(padded.end(), samples.begin(), samples.end());
  padded.resize(padded.size() + right, 0.0f);
  return padded;
}

}  // namespace voxtral
