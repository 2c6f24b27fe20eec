// Every stream begins with the same left padding: n_left_pad_tokens positions of zero samples
// (32 x 80 ms at full size) ahead of its audio. The encoder and the decoder are causal, so the
// padding's first positions (those whose mel frames see only zeros) give every stream the same
// encoder state and, for a given delay, the same decoder keys and values. The first stream of
// a model computes them as usual and leaves them here; later streams (and segments) start from
// a copy, skipping the padding's encoder passes and most of the prompt's prefill: a shorter
// wait for the first word, and 2.5 s less audio to encode per recording.
//
// The positions are always computed in the same pieces, cached or not (the first encoder
// request and the first prefill stop at them), so a stream's bits do not depend on whether it
// found them here.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "core/config.h"
#include "model/encoder.h"

namespace voxtral {

// Positions at the start of the padding whose every input is zero: position p's last encoder
// frame reads mel frames up to mel_frames_per_position * (p + 1) - 1 (the stride-2
// convolution looks one frame ahead of its pair), and mel frame f reads samples up to
// f * hop + window / 2. 31 of the 32 at full size.
std::int64_t zero_padding_positions(const ModelConfig& config, int n_left_pad_tokens);

class LeftPadCache {
 public:
  std::shared_ptr<const EncoderPool::Prefix> encoder() const;
  void set_encoder(EncoderPool::Prefix prefix);  // the first one stays
  // The decoder's K/V of those positions under the prompt, per delay (in positions).
  std::shared_ptr<const DeviceBuffer> decoder(int n_delay) const;
  void set_decoder(int n_delay, DeviceBuffer kv);  // the first one stays

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const EncoderPool::Prefix> encoder_;
  std::map<int, std::shared_ptr<const DeviceBuffer>> decoder_;
};

}  // namespace voxtral
