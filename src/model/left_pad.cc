#include "model/left_pad.h"

#include <algorithm>

namespace voxtral {

std::int64_t zero_padding_positions(const ModelConfig& config, int n_left_pad_tokens) {
  const auto& a = config.audio;
  const std::int64_t zeros = static_cast<std::int64_t>(n_left_pad_tokens) * config.samples_per_position();
  const std::int64_t half = a.window_size / 2;
  if (zeros < half) return 0;
  const std::int64_t zero_frames = (zeros - half) / a.hop_length + 1;  // frames f with f * hop + half <= zeros
  return std::clamp<std::int64_t>(zero_frames / config.mel_frames_per_position(), 0, n_left_pad_tokens);
}

std::shared_ptr<const EncoderPool::Prefix> LeftPadCache::encoder() const {
  std::lock_guard lock(mutex_);
  return encoder_;
}

void LeftPadCache::set_encoder(EncoderPool::Prefix prefix) {
  std::lock_guard lock(mutex_);
  if (!encoder_) encoder_ = std::make_shared<const EncoderPool::Prefix>(std::move(prefix));
}

std::shared_ptr<const DeviceBuffer> LeftPadCache::decoder(int n_delay) const {
  std::lock_guard lock(mutex_);
  const auto it = decoder_.find(n_delay);
  return it == decoder_.end() ? nullptr : it->second;
}

void LeftPadCache::set_decoder(int n_delay, DeviceBuffer kv) {
  std::lock_guard lock(mutex_);
  if (!decoder_.contains(n_delay)) decoder_[n_delay] = std::make_shared<const DeviceBuffer>(std::move(kv));
}

}  // namespace voxtral
