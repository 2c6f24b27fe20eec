// Builds WAV files byte by byte for the audio tests, including deliberately broken ones.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace voxtral::testing {

inline std::string le16(std::uint16_t v) {
  return {static_cast<char>(v & 0xFF), static_cast<char>(v >> 8)};
}
inline std::string le32(std::uint32_t v) {
  return le16(static_cast<std::uint16_t>(v)) + le16(static_cast<std::uint16_t>(v >> 16));
}
inline std::string le64(std::uint64_t v) {
  return le32(static_cast<std::uint32_t>(v)) + le32(static_cast<std::uint32_t>(v >> 32));
}

// One chunk: id, size (the body's unless overridden), body, and a pad byte when odd.
inline std::string chunk(std::string_view id, const std::string& body,
                         std::optional<std::uint32_t> declared_size = std::nullopt) {
  std::string out(id);
  out += le32(declared_size.value_or(static_cast<std::uint32_t>(body.size())));
  out += body;
  if (body.size() % 2 != 0) out += '\0';
  return out;
}

constexpr std::uint16_t kPcm = 1;
constexpr std::uint16_t kFloat = 3;

// A plain 16-byte fmt body; block_align defaults to the consistent value.
inline std::string fmt_body(std::uint16_t tag, int channels, int rate, int bits,
                            std::optional<int> block_align = std::nullopt) {
  const int align = block_align.value_or(channels * ((bits + 7) / 8));
  return le16(tag) + le16(static_cast<std::uint16_t>(channels)) + le32(static_cast<std::uint32_t>(rate)) +
         le32(static_cast<std::uint32_t>(rate * align)) + le16(static_cast<std::uint16_t>(align)) +
         le16(static_cast<std::uint16_t>(bits));
}

// A 40-byte WAVE_FORMAT_EXTENSIBLE fmt body with the standard SubFormat GUID for `sub_tag`.
inline std::string extensible_fmt_body(std::uint16_t sub_tag, int channels, int rate, int bits, int valid_bits,
                                       std::string guid_tail = std::string(
                                           "\x00\x00\x00\x00\x10\x00\x80\x00\x00\xAA\x00\x38\x9B\x71", 14)) {
  std::string body = fmt_body(0xFFFE, channels, rate, bits);
  body += le16(22) + le16(static_cast<std::uint16_t>(valid_bits)) + le32(0) + le16(sub_tag) + guid_tail;
  return body;
}

// "RIFF" <size> "WAVE" <chunks>; the size defaults to the true one.
inline std::string riff(const std::string& chunks, std::optional<std::uint32_t> riff_size = std::nullopt,
                        std::string_view magic = "RIFF") {
  return std::string(magic) + le32(riff_size.value_or(static_cast<std::uint32_t>(4 + chunks.size()))) + "WAVE" +
         chunks;
}

// A complete file: fmt then data.
inline std::string simple_wav(const std::string& fmt, const std::string& data) {
  return riff(chunk("fmt ", fmt) + chunk("data", data));
}

inline std::string s16_bytes(const std::vector<std::int16_t>& samples) {
  std::string out;
  for (std::int16_t s : samples) out += le16(static_cast<std::uint16_t>(s));
  return out;
}

inline std::string s24_bytes(const std::vector<std::int32_t>& samples) {
  std::string out;
  for (std::int32_t s : samples) out += le32(static_cast<std::uint32_t>(s)).substr(0, 3);
  return out;
}

inline std::string s32_bytes(const std::vector<std::int32_t>& samples) {
  std::string out;
  for (std::int32_t s : samples) out += le32(static_cast<std::uint32_t>(s));
  return out;
}

inline std::string f32_bytes(const std::vector<float>& samples) {
  std::string out;
  for (float s : samples) {
    std::uint32_t bits;
    std::memcpy(&bits, &s, sizeof bits);
    out += le32(bits);
  }
  return out;
}

inline std::string f64_bytes(const std::vector<double>& samples) {
  std::string out;
  for (double s : samples) {
    std::uint64_t bits;
    std::memcpy(&bits, &s, sizeof bits);
    out += le64(bits);
  }
  return out;
}

inline std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace voxtral::testing
