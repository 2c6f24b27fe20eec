// Audio input: files and streams to 16 kHz mono float samples. Detects the container
// (WAV, or raw s16le on streams), recognises common compressed formats to give a helpful
// error instead of decoding them as noise, mixes channels to mono and resamples with
// libsoxr at HQ quality (as the Python references do).
#pragma once

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/channel_mix.h"

namespace voxtral {

enum class AudioFormat {
  Auto,      // WAV when the stream starts with a RIFF/RF64 header, else raw s16le
  Wav,       // must be WAV
  RawS16le,  // headerless 16-bit little-endian mono at the target rate
};

// Streaming resampler (libsoxr, HQ). Pass-through when the rates are equal.
class Resampler {
 public:
  Resampler(double input_rate, double output_rate);
  ~Resampler();
  Resampler(const Resampler&) = delete;
  Resampler& operator=(const Resampler&) = delete;
  void push(std::span<const float> input, std::vector<float>& out);
  void finish(std::vector<float>& out);  // drains the filter's delay line

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class AudioDecoder {
 public:
  // `on_warning` hears about input read other than as plain averaging (channels that cancel).
  AudioDecoder(std::string source, int target_rate, AudioFormat format = AudioFormat::Auto,
               WarningHandler on_warning = {});
  ~AudioDecoder();
  AudioDecoder(const AudioDecoder&) = delete;
  AudioDecoder& operator=(const AudioDecoder&) = delete;

  // Appends target-rate mono samples decoded from the new bytes to `out`.
  void push(std::span<const std::byte> bytes, std::vector<float>& out);
  // End of input: flushes the resampler; throws if the input held no audio samples or
  // ended inside a header or a declared data chunk.
  void finish(std::vector<float>& out);

  // Known once enough bytes arrived to tell (otherwise Auto / 0).
  AudioFormat detected_format() const;
  int input_rate() const;
  int input_channels() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The sample rates a caller may ask audio to be resampled to (Hz): below, nothing of speech
// survives; above, no audio hardware runs, and the resampler's output would be enormous.
inline constexpr int kMinTargetRate = 1000;
inline constexpr int kMaxTargetRate = 384000;

// The most audio a whole-stream read (a FIFO, a device, stdin) holds: its end is not known in
// advance, and an endless source (a WAV header declaring 0xFFFFFFFF bytes, then samples
// forever) must not take all memory. 4 hours is 230 M samples (0.9 GB) at 16 kHz. A regular
// file is bounded by its size and read whole.
inline constexpr double kMaxStreamReadSeconds = 4 * 3600.0;

// Called when a signal interrupted a wait for input (EINTR) before it is waited for again:
// whatever it throws ends the read (Python raises KeyboardInterrupt there on Ctrl-C). A wait
// interrupted with none given is simply resumed.
using InterruptedWait = std::function<void()>;

// Reads a whole audio file (WAV unless `format` says raw). Errors name the path. A FIFO or
// a character device (e.g. /dev/stdin) is read as a stream to its end, at most
// kMaxStreamReadSeconds of audio (more is an Error); its open and reads are resumed after a
// signal (`on_interrupted` first).
std::vector<float> load_audio_file(const std::filesystem::path& path, int target_rate,
                                   AudioFormat format = AudioFormat::Wav, const WarningHandler& on_warning = {},
                                   const InterruptedWait& on_interrupted = {});

// Reads a stream to its end (e.g. stdin), auto-detecting WAV or raw s16le by default; more
// than kMaxStreamReadSeconds of audio is an Error. A read a signal interrupted is resumed
// (`on_interrupted` first).
std::vector<float> read_audio_stream(std::FILE* stream, const std::string& source, int target_rate,
                                     AudioFormat format = AudioFormat::Auto, const WarningHandler& on_warning = {},
                                     const InterruptedWait& on_interrupted = {});

// Names a known non-WAV container from its first bytes ("MP3", "Ogg", "FLAC", ...), or ""
// when the bytes match none of them.
std::string sniff_compressed_format(std::span<const std::byte> head);

}  // namespace voxtral
