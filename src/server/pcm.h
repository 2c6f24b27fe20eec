// The raw audio a realtime session's appends carry, and its decoding to samples.
// Encodings: 16-bit little-endian PCM, and G.711 mu-law and A-law (ITU-T G.711: 8-bit
// logarithmic codes of telephony, which OpenAI's realtime API takes as audio/pcmu and
// audio/pcma).
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace voxtral {

enum class PcmEncoding { Pcm16, Mulaw, Alaw };

struct InputAudioFormat {
  PcmEncoding encoding = PcmEncoding::Pcm16;
  int rate = 16000;  // Hz, mono
  bool operator==(const InputAudioFormat&) const = default;
};

// The rates a session may declare (resampled to the model's 16 kHz with libsoxr): telephony
// to studio audio. Outside them an `error` names the rate.
inline constexpr int kMinSessionRate = 8000;
inline constexpr int kMaxSessionRate = 192000;

// Samples in [-1, 1); nullopt when `bytes` is empty or (PCM16) of odd length.
std::optional<std::vector<float>> decode_pcm(std::string_view bytes, PcmEncoding encoding);

// "pcm16", "g711_ulaw", "g711_alaw": for messages and session events.
const char* encoding_name(PcmEncoding encoding);

}  // namespace voxtral
