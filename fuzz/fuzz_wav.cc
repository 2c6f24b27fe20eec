// Feeds arbitrary bytes to the WAV reader and the audio decoder. Only voxtral::Error may
// escape them; anything else (another exception, a sanitizer report) is a bug. The reader
// must also give the same result whether the bytes come in one piece or in two. The first
// two bytes of an input choose the split (so the seeds in fuzz/seeds/fuzz_wav/ start with
// two extra bytes before the WAV file).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <vector>

#include "core/audio.h"
#include "core/error.h"
#include "core/wav.h"

namespace {

// Decoded samples, or nullopt when the reader rejected the input.
std::optional<std::vector<float>> read_wav(std::span<const std::byte> bytes, std::size_t split) {
  voxtral::WavReader reader("fuzz");
  std::vector<float> mono;
  try {
    reader.push(bytes.first(split), mono);
    reader.push(bytes.subspan(split), mono);
    reader.finish(mono);
  } catch (const voxtral::Error&) {
    return std::nullopt;
  }
  return mono;
}

void decode_audio(std::span<const std::byte> bytes, std::size_t split) {
  try {
    voxtral::AudioDecoder decoder("fuzz", 16000, voxtral::AudioFormat::Auto);
    std::vector<float> out;
    decoder.push(bytes.first(split), out);
    decoder.push(bytes.subspan(split), out);
    decoder.finish(out);
  } catch (const voxtral::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  // The first two bytes choose where the rest is split, so that every cut point in the
  // header and the data gets explored.
  const std::size_t split_seed = static_cast<std::size_t>(data[0]) | (static_cast<std::size_t>(data[1]) << 8);
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  const std::size_t split = bytes.empty() ? 0 : split_seed % (bytes.size() + 1);

  const auto whole = read_wav(bytes, bytes.size());
  const auto in_two = read_wav(bytes, split);
  if (whole.has_value() != in_two.has_value()) std::abort();
  if (whole && *whole != *in_two) std::abort();  // NaN cannot occur: the reader rejects it

  decode_audio(bytes, split);
  return 0;
}
