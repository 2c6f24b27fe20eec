#include "cli/microphone.h"

#include <alsa/asoundlib.h>

#include <cerrno>

#include "core/error.h"

namespace voxtral {

namespace {
snd_pcm_t* handle(void* p) { return static_cast<snd_pcm_t*>(p); }

// ALSA prints its own diagnostics to stderr; ours (below) say the same in one line.
void quiet_alsa(const char*, int, const char*, int, const char*, ...) {}
}  // namespace

Microphone::Microphone(const std::string& device, int sample_rate) : device_(device) {
  snd_lib_error_set_handler(quiet_alsa);
  snd_pcm_t* pcm = nullptr;
  int err = snd_pcm_open(&pcm, device.c_str(), SND_PCM_STREAM_CAPTURE, 0);
  if (err < 0) {
    fail("microphone", cat("no audio capture device: ALSA cannot open \"", device, "\" (", snd_strerror(err),
                           "); use --mic-device to name one (see `arecord -L`)"));
  }
  pcm_ = pcm;
  err = snd_pcm_set_params(pcm, SND_PCM_FORMAT_S16_LE, SND_PCM_ACCESS_RW_INTERLEAVED, 1,
                           static_cast<unsigned>(sample_rate), 1, 100000);
  if (err < 0) {
    snd_pcm_close(pcm);
    pcm_ = nullptr;
    fail("microphone", cat("\"", device, "\" cannot capture 16-bit mono at ", sample_rate, " Hz (", snd_strerror(err), ")"));
  }
}

Microphone::~Microphone() {
  if (pcm_ != nullptr) snd_pcm_close(handle(pcm_));
}

std::size_t Microphone::read(std::vector<float>& out, std::size_t max_frames) {
  buffer_.resize(max_frames);
  for (;;) {
    const snd_pcm_sframes_t got = snd_pcm_readi(handle(pcm_), buffer_.data(), max_frames);
    if (got >= 0) {
      for (snd_pcm_sframes_t i = 0; i < got; ++i) out.push_back(static_cast<float>(buffer_[static_cast<std::size_t>(i)]) / 32768.0f);
      return static_cast<std::size_t>(got);
    }
    if (got == -EINTR) return 0;
    // An overrun (the reader fell behind) or a suspend: recover and go on.
    if (snd_pcm_recover(handle(pcm_), static_cast<int>(got), 1) < 0) {
      fail("microphone", cat("capture from \"", device_, "\" failed: ", snd_strerror(static_cast<int>(got))));
    }
  }
}

}  // namespace voxtral
