// The log-mel front end, exactly as the reference computes it: periodic Hann window,
// n_fft = window_size, hop_length, STFT with center=True (reflect padding of n_fft/2 on both
// sides), the last frame dropped, power spectrum, Slaney-scale mel filters with Slaney area
// normalisation over 0..sampling_rate/2, log10(max(mel, 1e-10)), floored at
// global_log_mel_max - 8, then (x + 4) / 4.
#pragma once

#include <complex>
#include <memory>
#include <span>
#include <vector>

#include "core/config.h"

namespace voxtral {

class MelSpectrogram {
 public:
  explicit MelSpectrogram(const AudioFrontEndConfig& config);
  ~MelSpectrogram();
  MelSpectrogram(MelSpectrogram&&) noexcept;
  MelSpectrogram& operator=(MelSpectrogram&&) noexcept;

  int num_mels() const { return num_mels_; }
  int hop_length() const { return hop_; }
  int window_size() const { return n_fft_; }
  int num_frequencies() const { return n_fft_ / 2 + 1; }
  // Mel filter bank, [num_frequencies][num_mels], row-major.
  const std::vector<float>& filters() const { return filters_; }

  // Whole signal: returns frames-major log-mel [n_frames][num_mels] with
  // n_frames = samples.size() / hop_length (the STFT's last frame is dropped).
  std::vector<float> compute(std::span<const float> samples) const;

  // One frame from the n_fft samples centred on it (edges already reflect-padded).
  void compute_frame(const float* window_samples, float* out_mels) const;

 private:
  struct Fft;
  int num_mels_ = 0;
  int hop_ = 0;
  int n_fft_ = 0;
  float log_floor_ = 0;
  std::vector<double> window_;
  std::vector<float> filters_;
  std::unique_ptr<Fft> fft_;
};

// Slaney-scale mel filter bank with Slaney area normalisation, [n_freq][n_mels] (as
// transformers' mel_filter_bank(norm="slaney", mel_scale="slaney")).
std::vector<double> slaney_mel_filters(int n_freq, int n_mels, double min_hz, double max_hz, int sampling_rate);

}  // namespace voxtral
