#include "core/audio.h"

#include <fcntl.h>
#include <soxr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <string_view>

#include "core/error.h"
#include "core/mapped_file.h"
#include "core/wav.h"

namespace voxtral {

namespace {

// Enough bytes to tell every container we know from the others.
constexpr std::size_t kSniffBytes = 12;
constexpr std::size_t kStreamReadBytes = 64 * 1024;

bool has_at(std::span<const std::byte> head, std::size_t offset, std::string_view literal) {
  if (head.size() < offset + literal.size()) return false;
  return std::memcmp(head.data() + offset, literal.data(), literal.size()) == 0;
}

// A FIFO's open waits for a writer: a signal (Ctrl-C, a Python handler's SIGALRM; Python
// installs its handlers without SA_RESTART) interrupts that wait, and it is resumed.
std::FILE* open_stream(const std::filesystem::path& path, const InterruptedWait& on_interrupted) {
  for (;;) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      std::FILE* stream = ::fdopen(fd, "rb");
      if (stream == nullptr) {
        const int error = errno;
        ::close(fd);
        fail(path.string(), cat("cannot open: ", std::strerror(error)));
      }
      return stream;
    }
    if (errno != EINTR) fail(path.string(), cat("cannot open: ", std::strerror(errno)));
    if (on_interrupted) on_interrupted();
  }
}

unsigned byte_at(std::span<const std::byte> head, std::size_t i) { return std::to_integer<unsigned>(head[i]); }

// An MPEG audio frame header (layer II or III) with no reserved or "free"/"bad" field.
// Layer I and free-format bitrates are left out on purpose: raw s16le that starts with a
// sample of -1 or -2 (bytes FF FF / FE FF) followed by near-silence would look like them.
std::string_view mpeg_audio_layer(std::span<const std::byte> head) {
  if (head.size() < 3 || byte_at(head, 0) != 0xFF || (byte_at(head, 1) & 0xE0) != 0xE0) return "";
  const unsigned version = (byte_at(head, 1) >> 3) & 3;
  const unsigned layer = (byte_at(head, 1) >> 1) & 3;
  const unsigned bitrate_index = byte_at(head, 2) >> 4;
  const unsigned rate_index = (byte_at(head, 2) >> 2) & 3;
  if (version == 1 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3) return "";
  if (layer == 1) return "MP3";
  if (layer == 2) return "MP2";
  return "";
}

// An AAC ADTS frame header: 12-bit sync, layer 0, a sampling-frequency index in range.
bool is_adts(std::span<const std::byte> head) {
  if (head.size() < 3 || byte_at(head, 0) != 0xFF || (byte_at(head, 1) & 0xF6) != 0xF0) return false;
  return ((byte_at(head, 2) >> 2) & 0xF) <= 12;
}

// At the end of a short input, a prefix of a magic counts (the WAV parser then reports
// the truncated header).
bool starts_like_riff(std::span<const std::byte> head) {
  if (head.empty()) return false;
  for (std::string_view magic : {"RIFF", "RF64", "BW64", "RIFX"}) {
    if (has_at(head, 0, magic.substr(0, std::min(head.size(), magic.size())))) return true;
  }
  return false;
}

std::string compressed_format_problem(std::string_view format, bool wav_required) {
  return cat(wav_required ? "not a WAV file: " : "unsupported audio format: ", "this looks like ", format,
             ", which is not decoded here; convert it to WAV first, e.g. with "
             "ffmpeg -i input -ar 16000 -ac 1 -c:a pcm_s16le output.wav");
}

}  // namespace

std::string sniff_compressed_format(std::span<const std::byte> head) {
  if (has_at(head, 0, "ID3")) return "MP3";
  if (has_at(head, 0, "OggS")) return "Ogg";
  if (has_at(head, 0, "fLaC")) return "FLAC";
  if (has_at(head, 4, "ftyp")) return "MP4/M4A";
  if (has_at(head, 0, "\x1A\x45\xDF\xA3")) return "WebM/Matroska";
  if (has_at(head, 0, "FORM") && (has_at(head, 8, "AIFF") || has_at(head, 8, "AIFC"))) return "AIFF";
  if (has_at(head, 0, "#!AMR")) return "AMR";
  if (has_at(head, 0, "caff")) return "CAF";
  if (has_at(head, 0, "\x30\x26\xB2\x75\x8E\x66\xCF\x11")) return "WMA/ASF";
  if (has_at(head, 0, ".snd")) return "Sun AU";
  if (const std::string_view layer = mpeg_audio_layer(head); !layer.empty()) return std::string(layer);
  if (is_adts(head)) return "AAC (ADTS)";
  return "";
}

// ---------------------------------------------------------------------------------------

struct Resampler::Impl {
  soxr_t soxr = nullptr;  // null: equal rates, samples pass through
  double ratio = 1.0;
  ~Impl() {
    if (soxr != nullptr) soxr_delete(soxr);
  }

  // Runs soxr until it has taken all of `input` (null: end of input, until drained).
  void process(const float* input, std::size_t length, std::vector<float>& out) {
    std::size_t consumed = 0;
    for (;;) {
      const std::size_t left = length - consumed;
      const std::size_t capacity =
          std::max<std::size_t>(static_cast<std::size_t>(std::ceil(static_cast<double>(left) * ratio)) + 64, 4096);
      const std::size_t old_size = out.size();
      out.resize(old_size + capacity);
      std::size_t used = 0;
      std::size_t produced = 0;
      const soxr_error_t error = soxr_process(soxr, input == nullptr ? nullptr : input + consumed, left, &used,
                                              out.data() + old_size, capacity, &produced);
      out.resize(old_size + produced);
      if (error != nullptr) fail("resampler", cat("libsoxr failed: ", error));
      consumed += used;
      // A full output buffer may mean more is waiting inside soxr.
      if (consumed >= length && produced < capacity) return;
    }
  }
};

Resampler::Resampler(double input_rate, double output_rate) : impl_(std::make_unique<Impl>()) {
  if (!(std::isfinite(input_rate) && std::isfinite(output_rate) && input_rate > 0 && output_rate > 0)) {
    fail("resampler", cat("invalid sample rates ", input_rate, " Hz -> ", output_rate, " Hz"));
  }
  if (input_rate == output_rate) return;
  impl_->ratio = output_rate / input_rate;
  soxr_error_t error = nullptr;
  const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  const soxr_quality_spec_t quality = soxr_quality_spec(SOXR_HQ, 0);
  impl_->soxr = soxr_create(input_rate, output_rate, 1, &error, &io, &quality, nullptr);
  if (error != nullptr || impl_->soxr == nullptr) {
    fail("resampler", cat("cannot resample ", input_rate, " Hz -> ", output_rate,
                          " Hz: libsoxr: ", error != nullptr ? error : "unknown error"));
  }
}

Resampler::~Resampler() = default;

void Resampler::push(std::span<const float> input, std::vector<float>& out) {
  if (input.empty()) return;  // soxr reads a null/empty input as the end of the stream
  if (impl_->soxr == nullptr) {
    out.insert(out.end(), input.begin(), input.end());
    return;
  }
  impl_->process(input.data(), input.size(), out);
}

void Resampler::finish(std::vector<float>& out) {
  if (impl_->soxr != nullptr) impl_->process(nullptr, 0, out);
}

// ---------------------------------------------------------------------------------------

struct AudioDecoder::Impl {
  std::string source;
  int target_rate;
  AudioFormat requested;
  WarningHandler on_warning;
  AudioFormat detected = AudioFormat::Auto;
  std::vector<std::byte> head;  // bytes held back until the container is known
  std::optional<WavReader> wav;
  std::unique_ptr<Resampler> resampler;
  std::vector<float> mono;               // scratch: one push's samples before resampling
  std::optional<std::byte> odd_raw_byte;  // raw s16le sample split across pushes
  std::uint64_t bytes_in = 0;
  std::uint64_t samples_in = 0;

  void decide() {
    if (requested == AudioFormat::RawS16le) {
      detected = AudioFormat::RawS16le;
      return;
    }
    if (starts_like_riff(head)) {
      detected = AudioFormat::Wav;  // WavReader reports RIFX and non-WAVE forms itself
      wav.emplace(source, on_warning);
      return;
    }
    const bool wav_required = requested == AudioFormat::Wav;
    if (const std::string compressed = sniff_compressed_format(head); !compressed.empty()) {
      fail(source, compressed_format_problem(compressed, wav_required));
    }
    if (wav_required) fail(source, "not a WAV file (no RIFF header)");
    detected = AudioFormat::RawS16le;
  }

  void feed(std::span<const std::byte> bytes, std::vector<float>& out) {
    if (detected == AudioFormat::Wav) {
      mono.clear();
      wav->push(bytes, mono);
      samples_in += mono.size();
      if (resampler == nullptr && wav->has_format()) {
        resampler = std::make_unique<Resampler>(wav->format().sample_rate, target_rate);
      }
      if (!mono.empty()) resampler->push(mono, out);
    } else {
      feed_raw(bytes, out);
    }
  }

  void feed_raw(std::span<const std::byte> bytes, std::vector<float>& out) {
    if (bytes.empty()) return;
    auto put = [&](std::byte low, std::byte high) {
      const auto value = static_cast<std::int16_t>(std::to_integer<unsigned>(low) |
                                                   (std::to_integer<unsigned>(high) << 8));
      out.push_back(static_cast<float>(value / 32768.0));
    };
    if (odd_raw_byte) {
      put(*odd_raw_byte, bytes[0]);
      ++samples_in;
      odd_raw_byte.reset();
      bytes = bytes.subspan(1);
    }
    const std::size_t pairs = bytes.size() / 2;
    out.reserve(out.size() + pairs);
    for (std::size_t i = 0; i < pairs; ++i) put(bytes[2 * i], bytes[2 * i + 1]);
    samples_in += pairs;
    if (bytes.size() % 2 != 0) odd_raw_byte = bytes.back();
  }

  void feed_head(std::vector<float>& out) {
    const std::vector<std::byte> held = std::move(head);
    head.clear();
    feed(held, out);
  }
};

AudioDecoder::AudioDecoder(std::string source, int target_rate, AudioFormat format, WarningHandler on_warning)
    : impl_(std::make_unique<Impl>()) {
  if (target_rate < kMinTargetRate || target_rate > kMaxTargetRate) {
    fail(source, cat("invalid target sample rate ", target_rate, " Hz (supported: ", kMinTargetRate, " to ",
                     kMaxTargetRate, " Hz)"));
  }
  impl_->source = std::move(source);
  impl_->target_rate = target_rate;
  impl_->requested = format;
  impl_->on_warning = std::move(on_warning);
}

AudioDecoder::~AudioDecoder() = default;

void AudioDecoder::push(std::span<const std::byte> bytes, std::vector<float>& out) {
  Impl& d = *impl_;
  d.bytes_in += bytes.size();
  if (d.detected != AudioFormat::Auto) {
    d.feed(bytes, out);
    return;
  }
  d.head.insert(d.head.end(), bytes.begin(), bytes.end());
  if (d.head.size() < kSniffBytes && d.requested != AudioFormat::RawS16le) return;
  d.decide();
  d.feed_head(out);
}

void AudioDecoder::finish(std::vector<float>& out) {
  Impl& d = *impl_;
  if (d.detected == AudioFormat::Auto && !d.head.empty()) {
    d.decide();
    d.feed_head(out);
  }
  if (d.wav) {
    d.mono.clear();
    d.wav->finish(d.mono);  // a truncated header says more than "no samples"
    d.samples_in += d.mono.size();
    if (!d.mono.empty()) d.resampler->push(d.mono, out);
  }
  if (d.samples_in == 0) {
    fail(d.source, d.bytes_in == 0 ? "no audio samples (the input is empty)" : "no audio samples");
  }
  if (d.resampler) d.resampler->finish(out);
}

AudioFormat AudioDecoder::detected_format() const { return impl_->detected; }

int AudioDecoder::input_rate() const {
  if (impl_->detected == AudioFormat::RawS16le) return impl_->target_rate;
  if (impl_->wav && impl_->wav->has_format()) return impl_->wav->format().sample_rate;
  return 0;
}

int AudioDecoder::input_channels() const {
  if (impl_->detected == AudioFormat::RawS16le) return 1;
  if (impl_->wav && impl_->wav->has_format()) return impl_->wav->format().channels;
  return 0;
}

// ---------------------------------------------------------------------------------------

std::vector<float> load_audio_file(const std::filesystem::path& path, int target_rate, AudioFormat format,
                                   const WarningHandler& on_warning, const InterruptedWait& on_interrupted) {
  if (file_kind(path.string()) == FileKind::Stream) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> stream(open_stream(path, on_interrupted), &std::fclose);
    return read_audio_stream(stream.get(), path.string(), target_rate, format, on_warning, on_interrupted);
  }
  const MappedFile file(path);
  if (file.bytes().empty()) fail(file.path(), "empty file");
  AudioDecoder decoder(file.path(), target_rate, format, on_warning);
  std::vector<float> samples;
  decoder.push(file.bytes(), samples);
  decoder.finish(samples);
  return samples;
}

std::vector<float> read_audio_stream(std::FILE* stream, const std::string& source, int target_rate,
                                     AudioFormat format, const WarningHandler& on_warning,
                                     const InterruptedWait& on_interrupted) {
  AudioDecoder decoder(source, target_rate, format, on_warning);
  std::vector<float> samples;
  std::vector<std::byte> piece(kStreamReadBytes);
  const auto max_samples = static_cast<std::size_t>(kMaxStreamReadSeconds * target_rate);
  for (;;) {
    errno = 0;
    const std::size_t n = std::fread(piece.data(), 1, piece.size(), stream);
    const int read_error = errno;  // before the decoder's calls can change it
    if (n > 0) decoder.push(std::span(piece).first(n), samples);
    if (samples.size() > max_samples) {
      fail(source, cat("longer than ", kMaxStreamReadSeconds / 3600, " hours, the most audio a whole-stream read "
                       "holds (stream it instead: the CLI's --stdin, or feed a voxtral stream piece by piece)"));
    }
    if (n < piece.size()) {
      if (std::ferror(stream)) {
        // A signal interrupted the wait for more bytes (those read before it are in `n`).
        if (read_error != EINTR) fail(source, cat("read error: ", std::strerror(read_error)));
        std::clearerr(stream);
        if (on_interrupted) on_interrupted();
        continue;
      }
      if (std::feof(stream)) break;
    }
  }
  decoder.finish(samples);
  return samples;
}

}  // namespace voxtral
