// Audio as the Wyoming protocol's events carry it to the model's input. audio-start and
// audio-chunk name the format in `rate` (Hz), `width` (bytes per sample) and `channels`; a
// chunk's payload is interleaved frames of little-endian signed integer samples (the
// protocol's PCM; Home Assistant sends 16 kHz, 16-bit, mono). Channels are mixed to mono as
// the engine mixes files (core/channel_mix.h) and the result resampled to the model's rate
// with the engine's resampler (libsoxr HQ, core/audio.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "core/channel_mix.h"

namespace voxtral {

struct WyomingAudioFormat {
  int rate = 0;      // Hz, within [kMinWyomingRate, kMaxWyomingRate]
  int width = 0;     // bytes per sample: 2, 3 or 4
  int channels = 0;  // within [1, kMaxWyomingChannels]
  int frame_bytes() const { return width * channels; }
  bool operator==(const WyomingAudioFormat&) const = default;
  std::string text() const;  // "16000 Hz, 2-byte samples, 1 channel"
};

// The bounds keep what one stream holds small (the channel mixer holds up to one second of
// frames): beyond them lies no microphone a voice assistant uses.
inline constexpr int kMinWyomingRate = 1000;
inline constexpr int kMaxWyomingRate = 192000;
inline constexpr int kMaxWyomingChannels = 8;

// The format an audio event's data names: `rate`, `width`, `channels`, each required and a
// whole number in range. nullopt with `error` naming the field and the problem otherwise.
std::optional<WyomingAudioFormat> wyoming_audio_format(const nlohmann::json& data, std::string& error);

// One audio stream (audio-start to audio-stop) to mono samples at `target_rate`.
class WyomingAudio {
 public:
  WyomingAudio(WyomingAudioFormat format, int target_rate);
  // Appends the samples of `pcm`, whole frames of the format (checked by chunk_error()).
  void push(std::string_view pcm, std::vector<float>& out);
  // End of the stream: what the mixer and the resampler still hold.
  void finish(std::vector<float>& out);
  const WyomingAudioFormat& format() const { return format_; }
  double seconds() const { return static_cast<double>(frames_) / format_.rate; }  // input so far

  // Why a chunk of `bytes` bytes is not whole frames of `format` ("" when it is).
  static std::string chunk_error(const WyomingAudioFormat& format, std::size_t bytes);

 private:
  WyomingAudioFormat format_;
  std::optional<ChannelMixer> mixer_;  // more than one channel
  Resampler resampler_;
  std::int64_t frames_ = 0;
  std::vector<double> interleaved_;  // scratch
  std::vector<float> mono_;          // scratch
};

}  // namespace voxtral
