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
#include <algorithm>
#include <filesystem>
#include <string>

#include "cli/batch.h"
#include "cli/exit_codes.h"
#include "cli/microphone.h"
#include "cli/model_options.h"
#include "cli/option_checks.h"
#include "cli/output.h"
#include "core/audio.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model.h"
#include "model/schedule.h"
#include "runtime/transcriber.h"
#include "runtime/voice_activity.h"

namespace {

using namespace voxtral;

const char* kExitCodes =
    "Exit codes:\n"
    "  0  transcribed\n"
    "  2  bad command line\n"
    "  3  the model could not be loaded (missing or invalid files, no usable GPU for --backend cuda)\n"
    "  4  the audio could not be read (missing file, not WAV, malformed, empty, no capture device)\n"
    "  5  transcription failed (e.g. audio longer than the model handles, with --no-continuous)\n"
    "  6  the transcript could not be written (e.g. the disk is full, stdout closed)\n"
    "With several files, the others are still transcribed after one fails; the code is then the first\n"
    "failed file's (in input order).\n";

struct Options {
  std::string model_dir;
  std::vector<std::string> inputs;
  int batch = 0;
  std::string output_dir;
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
  std::vector<std::string> formats{"text"};
  ModelOptions model{"auto"};  // backend, threads, precision, K/V cache, weight storage
  bool vad = false;
  TurnDetectionOptions turns;
  bool silent = false;
  bool debug = false;
};

// --vad: the stream is flushed where the detector finds the end of an utterance, so each
// utterance's words come out then (and, as plain text, on a line of their own).
class TurnFlusher final : private TurnSink {
 public:
  TurnFlusher(const Options& o, Stream& stream, TranscriptPrinter& printer)
      : stream_(stream), printer_(printer), debug_(o.debug) {
    if (o.vad) detector_ = std::make_unique<TurnDetector>(o.turns);
  }
  // Feeds `samples` to the stream, in pieces of 100 ms so that a flush follows the end of
  // an utterance by at most that; `drain` prints what came out.
  void feed(std::span<const float> samples, const std::function<void()>& drain) {
    if (!detector_) {
      stream_.feed(samples);
      return;
    }
    constexpr std::size_t kPiece = 1600;
    for (std::size_t at = 0; at < samples.size(); at += kPiece) {
      const auto piece = samples.subspan(at, std::min(kPiece, samples.size() - at));
      stream_.feed(piece);
      detector_->push(piece, *this);
      if (ended_) {
        ended_ = false;
        stream_.flush();
        drain();
        printer_.end_turn();
      }
    }
  }

 private:
  void speech_started(std::int64_t, std::int64_t speech_start) override {
    if (debug_) std::fprintf(stderr, "voxtral: speech starts at %.2f s\n", static_cast<double>(speech_start) / 16000);
  }
  void turn_audio(std::span<const float>) override {}
  void speech_stopped(std::int64_t speech_end, std::int64_t) override {
    if (debug_) std::fprintf(stderr, "voxtral: speech ends at %.2f s\n", static_cast<double>(speech_end) / 16000);
    ended_ = true;
  }

  Stream& stream_;
  TranscriptPrinter& printer_;
  bool debug_;
  std::unique_ptr<TurnDetector> detector_;
  bool ended_ = false;
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
void stream_input(Stream& stream, TurnFlusher& turns, const Options& o, int rate, int fd, const std::string& source,
                  AudioFormat format, const std::function<void()>& drain) {
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
    turns.feed(samples, drain);
    drain();
  }
  samples.clear();
  try {
    decoder.finish(samples);
  } catch (const Error& e) {
    throw AudioError(e.what());
  }
  turns.feed(samples, drain);
}

void stream_microphone(TurnFlusher& turns, const Options& o, int rate, const std::function<void()>& drain) {
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
    turns.feed(samples, drain);
    drain();
  }
}

void report(const Options& o, const StreamStats& s, double wall_ms) {
  if (o.silent) return;
  const double per_step = s.step_ms.empty() ? 0.0 : s.decode_ms / static_cast<double>(s.step_ms.size());
  const double rtf = s.audio_seconds > 0 ? wall_ms / 1000.0 / s.audio_seconds : 0.0;
  std::fprintf(stderr,
               "voxtral: audio %.2f s (%lld positions, %d segment%s); mel %.0f ms, encoder %.0f ms, prefill %.0f ms, "
               "decoder %zu tokens in %d steps at %.1f ms/token\n"
               "voxtral: total %.0f ms after loading, real-time factor %.3f (%.1fx real time)\n",
               s.audio_seconds, static_cast<long long>(s.positions), s.segments, s.segments == 1 ? "" : "s", s.mel_ms,
               s.encoder_ms, s.prefill_ms, s.step_ms.size(), s.decode_passes, per_step, wall_ms, rtf, rtf > 0 ? 1.0 / rtf : 0.0);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"voxtral: speech to text with Voxtral Realtime 4B, on an NVIDIA GPU or the CPU.\n"
               "Prints the transcript to stdout as it is produced; progress and timings go to stderr."};
  app.footer(kExitCodes);
  app.add_option("-d,--model", o.model_dir, "Model directory (params.json, tekken.json, consolidated.safetensors)")
      ->required();
  auto* input_option = app.add_option("-i,--input", o.inputs,
                               "Audio file to transcribe (WAV, any rate and channel count); a FIFO or a device "
                               "is read as it arrives, like --stdin. Several files (-i a.wav b.wav, or -i repeated) "
                               "or a directory (its *.wav files, sorted by name, not hidden ones or subdirectories) are "
                               "transcribed together, each file's transcript after a line \"==> FILE <==\" "
                               "(JSON: one array of objects naming their \"file\")");
  auto* stdin_flag = app.add_flag("--stdin", o.from_stdin,
                                  "Transcribe standard input as it arrives (WAV or raw s16le 16 kHz mono), e.g.\n"
                                  "ffmpeg -i talk.mp3 -ar 16000 -ac 1 -f s16le - | voxtral -d MODEL --stdin");
  auto* mic_flag = app.add_flag("--from-mic", o.from_mic, "Transcribe the microphone (ALSA) until Ctrl-C");
  input_option->excludes(stdin_flag)->excludes(mic_flag);
  stdin_flag->excludes(mic_flag);
  app.add_option("--mic-device", o.mic_device, "ALSA capture device for --from-mic (default \"default\")");
  app.add_option("--mic-seconds", o.mic_seconds, "Stop --from-mic after this many seconds (default: Ctrl-C)")
      ->check(finite_range(0.0, 1e7));
  auto* batch = app.add_option("--batch", o.batch,
                               "With several files: the most that decode at once, in one batched decoder step "
                               "(default: the model's --max-streams)")
                    ->check(whole_range(1, kMaxStreams));
  app.add_option("--output-dir", o.output_dir,
                 "Write each input's transcript to DIR/<file name without extension>.<txt|json|srt|vtt>, one "
                 "file per --format (which may then list several: --format text,srt), instead of stdout")
      ->needs(input_option);
  add_delay_option(app, o.delay_ms);
  add_interval_option(app, o.interval);
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
  app.add_flag("--timestamps", o.timestamps,
               "Text with one timestamped line per segment (for --format text: the other formats carry times)");
  app.add_option("--format", o.formats, "Output: text, json (segments and words with times), srt or vtt")
      ->check(CLI::IsMember({"text", "json", "srt", "vtt"}))
      ->delimiter(',');
  add_model_options(app, o.model);
  add_turn_detection_options(app, o.vad, o.turns,
                             "end the utterance there: its words come out at once, as a line of their own (with "
                             "--debug, where speech starts and ends goes to stderr)");
  app.add_flag("--silent", o.silent, "Print nothing but the transcript (and errors)");
  app.add_flag("--debug", o.debug, "Print every token (id, position, time, text) to stderr");
  try {
    app.parse(argc, argv);
    for (const auto& name : o.inputs) {
      if (name.empty()) throw CLI::ValidationError("--input", "the file name is empty");
    }
    if (o.inputs.empty() && !o.from_stdin && !o.from_mic) throw CLI::RequiredError("one of --input, --stdin or --from-mic");
    if (batch->count() > 0 && (o.from_stdin || o.from_mic)) {
      throw CLI::ValidationError("--batch", cat("is for several files (-i a.wav b.wav, or a directory); ",
                                                o.from_stdin ? "--stdin" : "--from-mic", " is one stream"));
    }
    if (o.vad && (o.inputs.size() > 1 || !o.output_dir.empty())) {
      throw CLI::ValidationError("--vad", "is for one stream (one file, --stdin or --from-mic)");
    }
    if (o.timestamps && std::none_of(o.formats.begin(), o.formats.end(), [](const std::string& f) { return f == "text"; })) {
      throw CLI::ValidationError("--timestamps", "is for --format text (json, srt and vtt carry their own times)");
    }
    if (o.formats.size() > 1 && o.output_dir.empty()) {
      throw CLI::ValidationError("--format", "several formats need --output-dir (stdout takes one)");
    }
    const CLI::Option* max_streams = app.get_option("--max-streams");
    // More streams than files only costs memory (each holds its encoder window).
    const bool directories = std::any_of(o.inputs.begin(), o.inputs.end(), [](const std::string& name) {
      std::error_code ec;
      return std::filesystem::is_directory(name, ec);
    });
    if (batch->count() > 0 && !directories && !o.inputs.empty()) {
      o.batch = std::min(o.batch, static_cast<int>(o.inputs.size()));
    }
    if (batch->count() > 0 && max_streams->count() > 0 && o.batch > o.model.max_streams) {
      throw CLI::ValidationError("--batch", cat(o.batch, " files at once need --max-streams ", o.batch, " or more (it is ",
                                                o.model.max_streams, ")"));
    }
    if (batch->count() > 0 && max_streams->count() == 0) o.model.max_streams = o.batch;
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
    std::fprintf(stderr, "voxtral: loaded %s in %.0f ms on %s (%.1f MB of weights in %s)\n", o.model_dir.c_str(),
                 model->load_seconds() * 1000.0, model->backend().name().c_str(),
                 static_cast<double>(model->backend().weight_bytes()) / 1e6,
                 std::string(weight_format_name(model->weight_format())).c_str());
  }

  StreamOptions so;
  so.delay_ms = o.delay_ms;
  so.processing_interval_s = o.interval;
  so.continuous = o.continuous;
  if (o.alt_cutoff >= 0) {
    so.alternatives = 4;
    so.alternative_cutoff = o.alt_cutoff;
  }
  std::vector<OutputFormat> formats;
  for (const auto& name : o.formats) {
    formats.push_back(name == "json" ? OutputFormat::Json
                      : name == "srt" ? OutputFormat::Srt
                      : name == "vtt" ? OutputFormat::Vtt
                                      : OutputFormat::Text);
    if (formats.back() == OutputFormat::Json) so.report_chosen_probabilities();  // for avg_logprob
  }
  const OutputFormat format = formats.front();
  const int rate = model->config().audio.sampling_rate;

  std::error_code not_directory;
  if (o.inputs.size() > 1 || !o.output_dir.empty() ||
      (o.inputs.size() == 1 && std::filesystem::is_directory(o.inputs.front(), not_directory))) {
    if (o.vad) {
      std::fprintf(stderr, "voxtral: --vad is for one stream (one file, --stdin or --from-mic), not a directory\n");
      return kUsage;
    }
    BatchOptions bo;
    bo.max_files = o.batch > 0 ? o.batch : model->decoder().options().max_sequences;
    bo.formats = formats;
    bo.output_dir = o.output_dir;
    bo.timestamps = o.timestamps;
    bo.alternatives = o.alt_cutoff >= 0;
    bo.debug = o.debug;
    bo.silent = o.silent;
    bo.stream = so;
    return transcribe_files(*model, expand_inputs(o.inputs), bo);
  }
  const std::string input = o.inputs.empty() ? std::string() : o.inputs.front();

  // A file is read whole; a FIFO or a device named by -i is streamed like stdin (WAV only).
  std::vector<float> samples;
  int input_fd = -1;
  struct CloseFd {
    int& fd;
    ~CloseFd() {
      if (fd >= 0) ::close(fd);
    }
  } close_input{input_fd};
  if (!input.empty()) {
    try {
      if (file_kind(input) == FileKind::Stream) {
        input_fd = ::open(input.c_str(), O_RDONLY | O_CLOEXEC);
        if (input_fd < 0) fail(input, cat("cannot open: ", std::strerror(errno)));
      } else {
        samples = load_audio_file(input, rate, AudioFormat::Wav, audio_warnings(o));
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "voxtral: %s\n", e.what());
      return kAudioError;
    }
  }
  catch_interrupt();
  // Errors name what was being transcribed, as the many-file mode's do.
  const std::string source = !input.empty() ? input : o.from_stdin ? "stdin" : "microphone";
  const auto start = std::chrono::steady_clock::now();
  StreamStats stats;
  try {
    TranscriptPrinter printer(format, o.timestamps, o.alt_cutoff >= 0, o.debug, model->tokenizer());
    if (!input.empty() && input_fd < 0 && !o.vad) {
      const auto t = transcribe(*model, samples, so, [&](const TextPiece& p) { printer.add(p); });
      stats = t.stats;
    } else {
      Stream stream(*model, so);
      auto drain = [&] {
        for (const auto& p : stream.take_pieces()) printer.add(p);
      };
      TurnFlusher turns(o, stream, printer);
      if (!input.empty() && input_fd < 0) {
        turns.feed(samples, drain);
      } else if (input_fd >= 0) {
        stream_input(stream, turns, o, rate, input_fd, input, AudioFormat::Wav, drain);
      } else if (o.from_stdin) {
        stream_input(stream, turns, o, rate, STDIN_FILENO, "stdin", AudioFormat::Auto, drain);
      } else {
        stream_microphone(turns, o, rate, drain);
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
  } catch (const BusyError& e) {  // the cache cannot hold this stream
    std::fprintf(stderr, "\nvoxtral: %s: %s (raise --kv-cache-mb)\n", source.c_str(), e.what());
    return kTranscriptionError;
  } catch (const std::exception& e) {  // Error, and anything else (e.g. out of memory)
    std::fprintf(stderr, "\nvoxtral: %s: %s\n", source.c_str(), e.what());
    return kTranscriptionError;
  }
  report(o, stats, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  return kOk;
}
