#include "server/wyoming_audio.h"

#include <cstring>

namespace voxtral {

namespace {

// A whole number within [low, high] at data[name]; "" when it is, else the problem.
std::string whole_number(const nlohmann::json& data, const char* name, long long low, long long high, int& out) {
  const auto it = data.find(name);
  if (it == data.end() || it->is_null()) return std::string("`") + name + "` is required";
  if (!it->is_number_integer()) {
    return std::string("`") + name + "` must be a whole number, not " +
           (it->is_number() ? std::string("a fraction") : std::string(it->type_name()));
  }
  // Unsigned beyond long long's range is out of range anyway.
  const bool huge = it->is_number_unsigned() && it->get<unsigned long long>() > static_cast<unsigned long long>(high);
  const long long value = huge ? high + 1 : it->get<long long>();
  if (value < low || value > high) {
    return std::string("`") + name + "` is " + it->dump() + ", outside [" + std::to_string(low) + ", " +
           std::to_string(high) + "]";
  }
  out = static_cast<int>(value);
  return "";
}

}  // namespace

std::string WyomingAudioFormat::text() const {
  return std::to_string(rate) + " Hz, " + std::to_string(width) + "-byte samples, " + std::to_string(channels) +
         (channels == 1 ? " channel" : " channels");
}

std::optional<WyomingAudioFormat> wyoming_audio_format(const nlohmann::json& data, std::string& error) {
  WyomingAudioFormat format;
  error = whole_number(data, "rate", kMinWyomingRate, kMaxWyomingRate, format.rate);
  if (error.empty()) error = whole_number(data, "width", 1, 8, format.width);
  if (error.empty() && (format.width < 2 || format.width > 4)) {
    error = "`width` is " + std::to_string(format.width) + " bytes: samples must be 2, 3 or 4 bytes (16-, 24- or " +
            "32-bit signed PCM; 8-bit PCM is refused as its signedness is ambiguous)";
  }
  if (error.empty()) error = whole_number(data, "channels", 1, kMaxWyomingChannels, format.channels);
  if (!error.empty()) return std::nullopt;
  return format;
}

std::string WyomingAudio::chunk_error(const WyomingAudioFormat& format, std::size_t bytes) {
  if (bytes % static_cast<std::size_t>(format.frame_bytes()) == 0) return "";
  return "a chunk of " + std::to_string(bytes) + " bytes is not whole frames of " + std::to_string(format.frame_bytes()) +
         " bytes (" + format.text() + ")";
}

WyomingAudio::WyomingAudio(WyomingAudioFormat format, int target_rate)
    : format_(format), resampler_(format.rate, target_rate) {
  if (format.channels > 1) mixer_.emplace("wyoming audio", format.channels, format.rate);
}

void WyomingAudio::push(std::string_view pcm, std::vector<float>& out) {
  const auto width = static_cast<std::size_t>(format_.width);
  const std::size_t samples = pcm.size() / width;
  const std::size_t frames = samples / static_cast<std::size_t>(format_.channels);
  if (frames == 0) return;
  const double scale = 1.0 / static_cast<double>(1ull << (8 * width - 1));
  interleaved_.resize(frames * static_cast<std::size_t>(format_.channels));
  const auto* bytes = reinterpret_cast<const unsigned char*>(pcm.data());
  for (std::size_t i = 0; i < interleaved_.size(); ++i) {
    // Little-endian, sign-extended from the top byte.
    std::uint32_t bits = 0;
    for (std::size_t b = 0; b < width; ++b) bits |= static_cast<std::uint32_t>(bytes[i * width + b]) << (8 * b);
    const unsigned shift = static_cast<unsigned>(32 - 8 * width);
    const auto value = static_cast<std::int32_t>(bits << shift) >> shift;
    interleaved_[i] = static_cast<double>(value) * scale;
  }
  frames_ += static_cast<std::int64_t>(frames);
  mono_.clear();
  if (mixer_) {
    mixer_->push(interleaved_.data(), frames, mono_);
  } else {
    mono_.assign(interleaved_.begin(), interleaved_.end());
  }
  resampler_.push(mono_, out);
}

void WyomingAudio::finish(std::vector<float>& out) {
  mono_.clear();
  if (mixer_) mixer_->finish(mono_);
  resampler_.push(mono_, out);
  resampler_.finish(out);
}

}  // namespace voxtral
