#include "core/mel.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <numbers>

#include <kissfft.hh>

#include "core/error.h"

namespace voxtral {

namespace {

// Slaney's mel scale: linear below 1 kHz, logarithmic above.
constexpr double kMinLogHz = 1000.0;
constexpr double kMinLogMel = 15.0;
const double kMelsPerLogHz = 27.0 / std::log(6.4);

double hz_to_mel(double hz) {
  return hz < kMinLogHz ? 3.0 * hz / 200.0 : kMinLogMel + std::log(hz / kMinLogHz) * kMelsPerLogHz;
}

double mel_to_hz(double mel) {
  return mel < kMinLogMel ? 200.0 * mel / 3.0 : kMinLogHz * std::exp((mel - kMinLogMel) / kMelsPerLogHz);
}

// Index into a signal of length n reflected at both ends without repeating the edge sample
// (torch's "reflect" padding), extended by repeated reflection for very short signals.
std::size_t reflect_index(long i, std::size_t n) {
  if (n == 1) return 0;
  const long period = 2 * (static_cast<long>(n) - 1);
  long m = i % period;
  if (m < 0) m += period;
  return static_cast<std::size_t>(m < static_cast<long>(n) ? m : period - m);
}

}  // namespace

std::vector<double> slaney_mel_filters(int n_freq, int n_mels, double min_hz, double max_hz, int sampling_rate) {
  const double mel_min = hz_to_mel(min_hz);
  const double mel_max = hz_to_mel(max_hz);
  std::vector<double> edges(static_cast<std::size_t>(n_mels) + 2);
  for (std::size_t i = 0; i < edges.size(); ++i) {
    edges[i] = mel_to_hz(mel_min + (mel_max - mel_min) * static_cast<double>(i) / (n_mels + 1));
  }
  std::vector<double> filters(static_cast<std::size_t>(n_freq) * static_cast<std::size_t>(n_mels));
  const double nyquist = sampling_rate / 2;  // integer division, as the reference does
  for (int f = 0; f < n_freq; ++f) {
    const double hz = n_freq > 1 ? nyquist * f / (n_freq - 1) : 0.0;
    for (int m = 0; m < n_mels; ++m) {
      const auto k = static_cast<std::size_t>(m);
      const double down = (hz - edges[k]) / (edges[k + 1] - edges[k]);
      const double up = (edges[k + 2] - hz) / (edges[k + 2] - edges[k + 1]);
      const double weight = std::max(0.0, std::min(down, up));
      // Area normalisation: each triangle integrates to the same value.
      filters[static_cast<std::size_t>(f) * n_mels + k] = weight * 2.0 / (edges[k + 2] - edges[k]);
    }
  }
  return filters;
}

struct MelSpectrogram::Fft {
  explicit Fft(int n_fft) : half(static_cast<std::size_t>(n_fft / 2)) {}
  // The half-size complex FFT driving the real transform, one per thread: kissfft's general
  // radix keeps scratch in the object, so threads must not share one (frames of one batch
  // are computed on several threads, see Stream::encode_next).
  const kissfft<double>& transform() const {
    thread_local std::unique_ptr<kissfft<double>> fft;
    thread_local std::size_t fft_size = 0;
    if (!fft || fft_size != half) {
      fft = std::make_unique<kissfft<double>>(half, false);
      fft_size = half;
    }
    return *fft;
  }
  std::size_t half;
  // The non-zero span of each mel filter, so a frame costs ~2 x n_freq multiplies.
  std::vector<int> first_bin, last_bin;
};

MelSpectrogram::MelSpectrogram(const AudioFrontEndConfig& config)
    : num_mels_(config.num_mel_bins),
      hop_(config.hop_length),
      n_fft_(config.window_size),
      log_floor_(config.global_log_mel_max - 8.0f),
      fft_(std::make_unique<Fft>(config.window_size)) {
  if (n_fft_ < 2 || n_fft_ % 2 != 0 || hop_ < 1 || num_mels_ < 1) {
    fail("mel", cat("unsupported front end: window ", n_fft_, ", hop ", hop_, ", ", num_mels_, " mel bins"));
  }
  // Periodic Hann window, rounded to float32 as the reference's window is.
  window_.resize(static_cast<std::size_t>(n_fft_));
  for (int n = 0; n < n_fft_; ++n) {
    const double w = 0.5 - 0.5 * std::cos(2.0 * std::numbers::pi * n / n_fft_);
    window_[static_cast<std::size_t>(n)] = static_cast<float>(w);
  }
  const int n_freq = num_frequencies();
  const auto exact = slaney_mel_filters(n_freq, num_mels_, 0.0, config.sampling_rate / 2.0, config.sampling_rate);
  filters_.assign(exact.begin(), exact.end());  // float32 coefficients, as the reference uses
  fft_->first_bin.assign(static_cast<std::size_t>(num_mels_), n_freq);
  fft_->last_bin.assign(static_cast<std::size_t>(num_mels_), -1);
  for (int f = 0; f < n_freq; ++f) {
    for (int m = 0; m < num_mels_; ++m) {
      if (filters_[static_cast<std::size_t>(f) * num_mels_ + m] != 0.0f) {
        auto k = static_cast<std::size_t>(m);
        fft_->first_bin[k] = std::min(fft_->first_bin[k], f);
        fft_->last_bin[k] = std::max(fft_->last_bin[k], f);
      }
    }
  }
}

MelSpectrogram::~MelSpectrogram() = default;
MelSpectrogram::MelSpectrogram(MelSpectrogram&&) noexcept = default;
MelSpectrogram& MelSpectrogram::operator=(MelSpectrogram&&) noexcept = default;

void MelSpectrogram::compute_frame(const float* window_samples, float* out_mels) const {
  const auto n = static_cast<std::size_t>(n_fft_);
  // Per-thread scratch: a frame is computed every 10 ms of audio, so no allocations here.
  thread_local std::vector<double> windowed, power;
  thread_local std::vector<std::complex<double>> spectrum;
  windowed.resize(n);
  spectrum.resize(n / 2);
  for (std::size_t i = 0; i < n; ++i) windowed[i] = window_samples[i] * window_[i];
  fft_->transform().transform_real(windowed.data(), spectrum.data());

  const int n_freq = num_frequencies();
  power.resize(static_cast<std::size_t>(n_freq));
  // transform_real packs the DC and Nyquist bins, both real, into spectrum[0].
  power[0] = spectrum[0].real() * spectrum[0].real();
  power[n / 2] = spectrum[0].imag() * spectrum[0].imag();
  for (std::size_t k = 1; k < n / 2; ++k) power[k] = std::norm(spectrum[k]);

  for (int m = 0; m < num_mels_; ++m) {
    const auto k = static_cast<std::size_t>(m);
    double energy = 0;
    for (int f = fft_->first_bin[k]; f <= fft_->last_bin[k]; ++f) {
      energy += power[static_cast<std::size_t>(f)] * filters_[static_cast<std::size_t>(f) * num_mels_ + k];
    }
    const double log_mel = std::max(std::log10(std::max(energy, 1e-10)), static_cast<double>(log_floor_));
    out_mels[m] = static_cast<float>((log_mel + 4.0) / 4.0);
  }
}

std::vector<float> MelSpectrogram::compute(std::span<const float> samples) const {
  const std::size_t n = samples.size();
  const std::size_t n_frames = n / static_cast<std::size_t>(hop_);
  std::vector<float> out(n_frames * static_cast<std::size_t>(num_mels_));
  std::vector<float> frame(static_cast<std::size_t>(n_fft_));
  const long half = n_fft_ / 2;
  for (std::size_t t = 0; t < n_frames; ++t) {
    const long start = static_cast<long>(t) * hop_ - half;
    const bool inside = start >= 0 && start + n_fft_ <= static_cast<long>(n);
    for (long i = 0; i < n_fft_; ++i) {
      const long at = start + i;
      frame[static_cast<std::size_t>(i)] = inside ? samples[static_cast<std::size_t>(at)] : samples[reflect_index(at, n)];
    }
    compute_frame(frame.data(), out.data() + t * static_cast<std::size_t>(num_mels_));
  }
  return out;
}

}  // namespace voxtral
