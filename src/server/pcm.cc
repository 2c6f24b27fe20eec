#include "server/pcm.h"

#include <cstdint>

namespace voxtral {

namespace {

// G.711 expansion to the 16-bit scale: a sign bit, a 3-bit segment (exponent) and a 4-bit
// step (mantissa), with the codes inverted (mu-law) or every other bit flipped (A-law) on
// the wire.
int mulaw_value(unsigned char code) {
  code = static_cast<unsigned char>(~code);
  const int exponent = (code >> 4) & 7, mantissa = code & 0x0F;
  const int magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return (code & 0x80) != 0 ? -magnitude : magnitude;
}

int alaw_value(unsigned char code) {
  code ^= 0x55;
  const int exponent = (code >> 4) & 7, mantissa = code & 0x0F;
  const int magnitude = exponent == 0 ? (mantissa << 4) + 8 : ((mantissa << 4) + 0x108) << (exponent - 1);
  return (code & 0x80) != 0 ? magnitude : -magnitude;
}

}  // namespace

std::optional<std::vector<float>> decode_pcm(std::string_view bytes, PcmEncoding encoding) {
  if (bytes.empty()) return std::nullopt;
  std::vector<float> samples;
  if (encoding == PcmEncoding::Pcm16) {
    if (bytes.size() % 2 != 0) return std::nullopt;
    samples.resize(bytes.size() / 2);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      const auto lo = static_cast<unsigned char>(bytes[2 * i]), hi = static_cast<unsigned char>(bytes[2 * i + 1]);
      samples[i] = static_cast<float>(static_cast<std::int16_t>(lo | (hi << 8))) / 32768.0f;
    }
    return samples;
  }
  samples.resize(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto code = static_cast<unsigned char>(bytes[i]);
    samples[i] = static_cast<float>(encoding == PcmEncoding::Mulaw ? mulaw_value(code) : alaw_value(code)) / 32768.0f;
  }
  return samples;
}

const char* encoding_name(PcmEncoding encoding) {
  switch (encoding) {
    case PcmEncoding::Mulaw: return "g711_ulaw";
    case PcmEncoding::Alaw: return "g711_alaw";
    default: return "pcm16";
  }
}

}  // namespace voxtral
