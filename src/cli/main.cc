// voxtral: transcribe a recording (or a stream on stdin) with a Voxtral Realtime model.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "core/audio.h"
#include "core/error.h"
#include "model/model.h"
#include "model/schedule.h"
#include "model/transcriber.h"

namespace {

// Exit codes, documented in --help.
enum ExitCode : int {
  kOk = 0,
  kUsage = 2,
  kModelError = 3,
  kAudioError = 4,
  kTranscriptionError = 5,
};

const char* kExitCodes =
    "Exit codes:\n"
    "  0  transcribed\n"
    "  2  bad command line\n"
    "  3  the model could not be loaded (missing or invalid files)\n"
    "  4  the audio could not be read (missing file, not WAV, malformed, empty)\n"
    "  5  transcription failed (e.g. the audio is longer than the model handles)\n";

struct Options {
  std::string model_dir;
  std::string input;
  bool from_stdin = false;
  int delay_ms = 0;
  int threads = 0;
  std::string backend = "auto";
  std::string precision = "auto";
  std::string kv_cache = "auto";
  std::string weights = "bf16";
  bool silent = false;
  bool debug = false;
};

void report(const Options& o, const voxtral::Model& model, const voxtral::Transcript& t, double wall_ms) {
  if (o.silent) return;
  const auto& s = t.stats;
  const double per_step = s.step_ms.empty() ? 0.0 : s.decode_ms / static_cast<double>(s.step_ms.size());
  const double rtf = s.audio_seconds > 0 ? wall_ms / 1000.0 / s.audio_seconds : 0.0;
  std::fprintf(stderr,
               "voxtral: audio %.2f s (%lld positions); mel %.0f ms, encoder %.0f ms, prefill %.0f ms, "
               "decoder %zu steps at %.1f ms/step\n"
               "voxtral: total %.0f ms after loading, real-time factor %.3f (%.1fx real time)\n",
               s.audio_seconds, static_cast<long long>(s.positions), s.mel_ms, s.encoder_ms, s.prefill_ms,
               s.step_ms.size(), per_step, wall_ms, rtf, rtf > 0 ? 1.0 / rtf : 0.0);
  (void)model;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"voxtral: speech to text with Voxtral Realtime 4B, on an NVIDIA GPU or the CPU.\n"
               "Prints the transcript to stdout as it is produced; progress and timings go to stderr."};
  app.footer(kExitCodes);
  app.add_option("-d,--model", o.model_dir, "Model directory (params.json, tekken.json, consolidated.safetensors)")
      ->required();
  auto* input = app.add_option("-i,--input", o.input, "Audio file to transcribe (WAV, any rate and channel count)");
  auto* stdin_flag = app.add_flag("--stdin", o.from_stdin, "Read audio from standard input (WAV or raw s16le 16 kHz mono)");
  input->excludes(stdin_flag);
  app.add_option("--delay", o.delay_ms, "Transcription delay in ms: a multiple of 80 from 80 to 1200, or 2400 "
                                        "(default: the model's, 480)")
      ->check(CLI::Range(1, 100000));
  app.add_option("-t,--threads", o.threads, "CPU threads (default: one per core)")->check(CLI::Range(1, 1024));
  app.add_option("--backend", o.backend,
                 "cpu, cuda, or auto: the GPU when this build has CUDA and a GPU is usable, otherwise the CPU "
                 "with a warning (default auto)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", o.precision,
                 "GPU matrix products: exact (near-F32, two BF16 passes) or fast (BF16 activations); default exact")
      ->check(CLI::IsMember({"auto", "exact", "fast"}));
  app.add_option("--kv-cache", o.kv_cache, "K/V cache type: f32 or bf16 (default: f32 on the CPU, bf16 on the GPU)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}));
  app.add_option("--weights", o.weights, "GPU weight storage: bf16 (exact, default) or fp16")
      ->check(CLI::IsMember({"bf16", "fp16"}));
  app.add_flag("--silent", o.silent, "Print nothing but the transcript (and errors)");
  app.add_flag("--debug", o.debug, "Print every token (id, position, text) to stderr");
  try {
    app.parse(argc, argv);
    if (o.input.empty() && !o.from_stdin) throw CLI::RequiredError("one of --input or --stdin");
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }

  std::unique_ptr<voxtral::Model> model;
  try {
    voxtral::ModelOptions mo;
    mo.threads = o.threads;
    mo.backend = o.backend;
    mo.precision = o.precision;
    mo.kv_cache = o.kv_cache;
    mo.weights = o.weights;
    mo.quiet = o.silent;
    model = voxtral::Model::load(o.model_dir, mo);
    if (o.delay_ms > 0) voxtral::delay_positions(o.delay_ms, model->config());
  } catch (const voxtral::Error& e) {
    std::fprintf(stderr, "voxtral: %s\n", e.what());
    return o.delay_ms > 0 && std::string(e.what()).starts_with("delay") ? kUsage : kModelError;
  }
  if (!o.silent) {
    std::fprintf(stderr, "voxtral: loaded %s in %.0f ms on %s (%.1f MB of weights)\n", o.model_dir.c_str(),
                 model->load_seconds() * 1000.0, model->backend().name().c_str(),
                 static_cast<double>(model->backend().weight_bytes()) / 1e6);
  }

  std::vector<float> samples;
  try {
    const int rate = model->config().audio.sampling_rate;
    samples = o.from_stdin ? voxtral::read_audio_stream(stdin, "stdin", rate)
                           : voxtral::load_audio_file(o.input, rate);
  } catch (const voxtral::Error& e) {
    std::fprintf(stderr, "voxtral: %s\n", e.what());
    return kAudioError;
  }

  try {
    const auto start = std::chrono::steady_clock::now();
    voxtral::TranscribeOptions to;
    to.delay_ms = o.delay_ms;
    const auto transcript = voxtral::transcribe(*model, samples, to, [&](const voxtral::TokenEvent& ev) {
      if (o.debug) {
        std::fprintf(stderr, "voxtral: position %lld token %d %s\n", static_cast<long long>(ev.position), ev.id,
                     ev.id >= 0 && model->tokenizer().is_special(ev.id)
                         ? std::string(model->tokenizer().special_name(ev.id)).c_str()
                         : ("\"" + ev.text + "\"").c_str());
      }
      if (!ev.text.empty()) {
        std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
        std::fflush(stdout);
      }
    });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    report(o, *model, transcript, wall_ms);
  } catch (const voxtral::Error& e) {
    std::fprintf(stderr, "\nvoxtral: %s\n", e.what());
    return kTranscriptionError;
  }
  return kOk;
}
