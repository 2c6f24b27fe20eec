// voxtral: transcribe a recording, a stream on stdin, or a microphone, with Voxtral Realtime.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <string>

#include "cli/microphone.h"
#include "cli/option_checks.h"
#include "cli/output.h"
#include "core/audio.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model.h"
#include "model/schedule.h"
#include "runtime/transcriber.h"

namespace {

using namespace voxtral;

// Exit codes, documented in --help.
enum ExitCode : int {
  kOk = 0,
  kUsage = 2,
  kModelError = 3,
  kAudioError = 4,
  kTranscriptionError = 5,
  kOutputError = 6,
};

const char* kExitCodes =
    "Exit codes:\n"
    "  0  transcribed\n"
    "  2  bad command line\n"
    "  3  the model could not be loaded (missing or invalid files, no usable GPU for --backend cuda)\n"
    "  4  the audio could not be read (missing file, not WAV, malformed, empty, no capture device)\n"
    "  5  transcription failed (e.g. audio longer than the model handles, with --no-continuous)\n"
    "  6  the transcript could not be written (e.g. the disk is full, stdout closed)\n";

struct Options {
  std::string model_dir;
  std::string input;
  bool from_stdin = false;
  bool from_mic = false;
  std::string mic_device = "default";
  double mic_seconds = 0;
  int delay_ms = 0;
  double interval = 0;
  double flush_after = 1.0;
  bool continuous = true;
  double alt_cutoff = -1;
  bool timestamps = false;
  std::string format = "text";
  ModelOptions model{"auto"};  // backend, threads, precision, K/V cache, weight storage
  bool silent = false;
  bool debug = false;
};

std::atomic<bool> interrupted{false};

void on_interrupt(int) { interrupted = true; }

// Ctrl-C ends the input (the stream is finished and the transcript completed); blocking
// reads return instead of being restarted.
void catch_interrupt() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// A closed pipe on stdout is a write error (EPIPE, exit 6 with a message), not a silent death
// by SIGPIPE.
void ignore_broken_pipe() {
  struct sigaction sa {};
  sa.sa_handler = SIG_IGN;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGPIPE, &sa, nullptr);
}

class AudioError : public Error {
 public:
  using Error::Error;
};

// Warnings about how the audio was read (e.g. one channel of a stereo file whose channels
// cancel) go to stderr unless --silent.
WarningHandler audio_warnings(const Options& o) {
  if (o.silent) return {};
  return [](const std::string& message) { std::fprintf(stderr, "voxtral: %s\n", message.c_str()); };
}

// Reads a stream (stdin, or a FIFO or device given to -i) as it arrives; a pause of
// `flush_after` seconds in the input flushes the stream so that what was said before it
// comes out.
void stream_input(Stream& stream, const Options& o, int rate, int fd, const std::string& source, AudioFormat format,
                  const std::function<void()>& drain) {
  AudioDecoder decoder(source, rate, format, audio_warnings(o));
  std::vector<std::byte> bytes(1 << 16);
  std::vector<float> samples;
  const int timeout_ms = o.flush_after > 0 ? static_cast<int>(o.flush_after * 1000) : -1;
  while (!interrupted) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, timeout_ms);
    if (ready == 0) {
      stream.flush();
      drain();
      continue;
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      throw AudioError(cat(source, ": poll failed: ", std::strerror(errno)));
    }
    const ssize_t n = ::read(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw AudioError(cat(source, ": read failed: ", std::strerror(errno)));
    }
    if (n == 0) break;
    samples.clear();
    try {
      decoder.push(std::span(bytes).first(static_cast<std::size_t>(n)), samples);
    } catch (const Error& e) {
      throw AudioError(e.what());
    }
    stream.feed(samples);
    drain();
  }
  samples.clear();
  try {
    decoder.finish(samples);
  } catch (const Error& e) {
    throw AudioError(e.what());
  }
  stream.feed(samples);
}

void stream_microphone(Stream& stream, const Options& o, int rate, const std::function<void()>& drain) {
  std::unique_ptr<Microphone> mic;
  try {
    mic = std::make_unique<Microphone>(o.mic_device, rate);
  } catch (const Error& e) {
    throw AudioError(e.what());
  }
  if (!o.silent) std::fprintf(stderr, "voxtral: listening on \"%s\"; Ctrl-C to stop\n", o.mic_device.c_str());
  std::vector<float> samples;
  std::int64_t total = 0;
  const auto limit = static_cast<std::int64_t>(o.mic_seconds * rate);
  while (!interrupted && (limit == 0 || total < limit)) {
    samples.clear();
    const std::size_t want = static_cast<std::size_t>(rate / 25);  // 40 ms
    mic->read(samples, limit > 0 ? std::min<std::size_t>(want, static_cast<std::size_t>(limit - total)) : want);
    total += static_cast<std::int64_t>(samples.size());
    stream.feed(samples);
    drain();
  }
}

void report(const Options& o, const StreamStats& s, double wall_ms) {
  if (o.silent) return;
  const double per_step = s.step_ms.empty() ? 0.0 : s.decode_ms / static_cast<double>(s.step_ms.size());
  const double rtf = s.audio_seconds > 0 ? wall_ms / 1000.0 / s.audio_seconds : 0.0;
  std::fprintf(stderr,
               "voxtral: audio %.2f s (%lld positions, %d segment%s); mel %.0f ms, encoder %.0f ms, prefill %.0f ms, "
               "decoder %zu steps at %.1f ms/step\n"
               "voxtral: total %.0f ms after loading, real-time factor %.3f (%.1fx real time)\n",
               s.audio_seconds, static_cast<long long>(s.positions), s.segments, s.segments == 1 ? "" : "s", s.mel_ms,
               s.encoder_ms, s.prefill_ms, s.step_ms.size(), per_step, wall_ms, rtf, rtf > 0 ? 1.0 / rtf : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"voxtral: speech to text with Voxtral Realtime 4B, on an NVIDIA GPU or the CPU.\n"
               "Prints the transcript to stdout as it is produced; progress and timings go to stderr."};
  app.footer(kExitCodes);
  app.add_option("-d,--model", o.model_dir, "Model directory (params.json, tekken.json, consolidated.safetensors)")
      ->required();
  auto* input = app.add_option("-i,--input", o.input,
                               "Audio file to transcribe (WAV, any rate and channel count); a FIFO or a device "
                               "is read as it arrives, like --stdin");
  auto* stdin_flag = app.add_flag("--stdin", o.from_stdin,
                                  "Transcribe standard input as it arrives (WAV or raw s16le 16 kHz mono), e.g.\n"
                                  "ffmpeg -i talk.mp3 -ar 16000 -ac 1 -f s16le - | voxtral -d MODEL --stdin");
  auto* mic_flag = app.add_flag("--from-mic", o.from_mic, "Transcribe the microphone (ALSA) until Ctrl-C");
  input->excludes(stdin_flag)->excludes(mic_flag);
  stdin_flag->excludes(mic_flag);
  app.add_option("--mic-device", o.mic_device, "ALSA capture device for --from-mic (default \"default\")");
  app.add_option("--mic-seconds", o.mic_seconds, "Stop --from-mic after this many seconds (default: Ctrl-C)")
      ->check(finite_range(0.0, 1e7));
  app.add_option("--delay", o.delay_ms, "Transcription delay in ms: a multiple of 80 from 80 to 1200, or 2400 "
                                        "(default: the model's, 480)")
      ->check(CLI::Range(1, 100000));
  app.add_option("-I,--interval", o.interval,
                 "Processing interval in seconds: how much new audio to gather before running the encoder "
                 "(default 0: every 80 ms; larger is more efficient, later)")
      ->check(finite_range(0.0, kMaxProcessingIntervalSeconds));
  app.add_option("--flush-after", o.flush_after,
                 "With --stdin: a pause of this many seconds in the input brings out what was said before it "
                 "(default 1; 0 never)")
      ->check(finite_range(0.0, 3600.0));
  app.add_flag("--continuous,!--no-continuous", o.continuous,
               "Restart the decoder by itself before the model's maximum length (default on); without it, "
               "longer audio is an error");
  app.add_option("--alt", o.alt_cutoff,
                 "Show alternatives inline as {chosen|other|...}: candidates with at least this probability")
      ->check(finite_range(0.0, 1.0));
  app.add_flag("--timestamps", o.timestamps, "Text with one timestamped line per segment");
  app.add_option("--format", o.format, "Output: text, json (segments and words with times), srt or vtt")
      ->check(CLI::IsMember({"text", "json", "srt", "vtt"}));
  app.add_option("-t,--threads", o.model.threads, "CPU threads (default: one per core)")->check(CLI::Range(1, kMaxThreads));
  app.add_option("--backend", o.model.backend,
                 "cpu, cuda, or auto: the GPU when this build has CUDA and a GPU is usable, otherwise the CPU "
                 "with a warning (default auto)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", o.model.precision,
                 "GPU matrix products: exact (near-F32, two BF16 passes) or fast (BF16 activations); default exact")
      ->check(CLI::IsMember({"auto", "exact", "fast"}));
  app.add_option("--kv-cache", o.model.kv_cache, "K/V cache type: f32 or bf16 (default: f32 on the CPU, bf16 on the GPU)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}));
  app.add_option("--weights", o.model.weights, "GPU weight storage: bf16 (exact, default) or fp16")
      ->check(CLI::IsMember({"bf16", "fp16"}));
  app.add_flag("--silent", o.silent, "Print nothing but the transcript (and errors)");
  app.add_flag("--debug", o.debug, "Print every token (id, position, time, text) to stderr");
  try {
    app.parse(argc, argv);
    if (input->count() > 0 && o.input.empty()) throw CLI::ValidationError("--input", "the file name is empty");
    if (o.input.empty() && !o.from_stdin && !o.from_mic) throw CLI::RequiredError("one of --input, --stdin or --from-mic");
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }

  ignore_broken_pipe();
  std::unique_ptr<Model> model;
  try {
    o.model.quiet = o.silent;
    model = Model::load(o.model_dir, o.model);
  } catch (const std::exception& e) {  // Error, and anything else (e.g. out of memory)
    std::fprintf(stderr, "voxtral: %s\n", e.what());
    return kModelError;
  }
  if (o.delay_ms > 0) {
    try {
      delay_positions(o.delay_ms, model->config());
    } catch (const Error& e) {
      std::fprintf(stderr, "voxtral: %s\n", e.what());
      return kUsage;
    }
  }
  if (!o.silent) {
    std::fprintf(stderr, "voxtral: loaded %s in %.0f ms on %s (%.1f MB of weights)\n", o.model_dir.c_str(),
                 model->load_seconds() * 1000.0, model->backend().name().c_str(),
                 static_cast<double>(model->backend().weight_bytes()) / 1e6);
  }

  StreamOptions so;
  so.delay_ms = o.delay_ms;
  so.processing_interval_s = o.interval;
  so.continuous = o.continuous;
  if (o.alt_cutoff >= 0) {
    so.alternatives = 4;
    so.alternative_cutoff = o.alt_cutoff;
  }
  const OutputFormat format = o.format == "json" ? OutputFormat::Json
                              : o.format == "srt" ? OutputFormat::Srt
                              : o.format == "vtt" ? OutputFormat::Vtt
                                                  : OutputFormat::Text;
  if (format == OutputFormat::Json) so.report_chosen_probabilities();  // for avg_logprob
  const int rate = model->config().audio.sampling_rate;

  // A file is read whole; a FIFO or a device named by -i is streamed like stdin (WAV only).
  std::vector<float> samples;
  int input_fd = -1;
  struct CloseFd {
    int& fd;
    ~CloseFd() {
      if (fd >= 0) ::close(fd);
    }
  } close_input{input_fd};
  if (!o.input.empty()) {
    try {
      if (file_kind(o.input) == FileKind::Stream) {
        input_fd = ::open(o.input.c_str(), O_RDONLY | O_CLOEXEC);
        if (input_fd < 0) fail(o.input, cat("cannot open: ", std::strerror(errno)));
      } else {
        samples = load_audio_file(o.input, rate, AudioFormat::Wav, audio_warnings(o));
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "voxtral: %s\n", e.what());
      return kAudioError;
    }
  }
  catch_interrupt();
  const auto start = std::chrono::steady_clock::now();
  StreamStats stats;
  try {
    TranscriptPrinter printer(format, o.timestamps, o.alt_cutoff >= 0, o.debug, model->tokenizer());
    if (!o.input.empty() && input_fd < 0) {
      const auto t = transcribe(*model, samples, so, [&](const TextPiece& p) { printer.add(p); });
      stats = t.stats;
    } else {
      Stream stream(*model, so);
      auto drain = [&] {
        for (const auto& p : stream.take_pieces()) printer.add(p);
      };
      if (input_fd >= 0) {
        stream_input(stream, o, rate, input_fd, o.input, AudioFormat::Wav, drain);
      } else if (o.from_stdin) {
        stream_input(stream, o, rate, STDIN_FILENO, "stdin", AudioFormat::Auto, drain);
      } else {
        stream_microphone(stream, o, rate, drain);
      }
      stream.finish();
      drain();
      stats = stream.stats();
    }
    printer.finish(stats.audio_seconds);
  } catch (const OutputError& e) {
    std::fprintf(stderr, "\nvoxtral: %s\n", e.what());
    return kOutputError;
  } catch (const AudioError& e) {
    std::fprintf(stderr, "\nvoxtral: %s\n", e.what());
    return kAudioError;
  } catch (const std::exception& e) {  // Error, and anything else (e.g. out of memory)
    std::fprintf(stderr, "\nvoxtral: %s\n", e.what());
    return kTranscriptionError;
  }
  report(o, stats, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  return kOk;
}
