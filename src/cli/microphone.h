// Audio capture from a microphone through ALSA (Linux).
#pragma once

#include <string>
#include <vector>

namespace voxtral {

class Microphone {
 public:
  // Opens `device` ("default", "hw:1", "null", ...) for 16-bit mono capture at `sample_rate`
  // (ALSA resamples if the hardware needs it). Throws Error("microphone: ...") when it
  // cannot, e.g. on a machine without a capture device.
  Microphone(const std::string& device, int sample_rate);
  ~Microphone();
  Microphone(const Microphone&) = delete;
  Microphone& operator=(const Microphone&) = delete;

  // Blocks until up to `max_frames` samples arrive; appends them to `out` as floats in
  // [-1, 1]. Returns 0 when interrupted by a signal.
  std::size_t read(std::vector<float>& out, std::size_t max_frames);

 private:
  void* pcm_ = nullptr;  // snd_pcm_t
  std::string device_;
  std::vector<short> buffer_;
};

}  // namespace voxtral
