// voxtral-bench: writes full-size random models and measures the engine on them.
//   voxtral-bench make-model --params params.json --out DIR [--seed N]
//   voxtral-bench run -d DIR -i FILE [--seconds S] [--threads N] [--batch N] [--json]
//   voxtral-bench step -d DIR --batch N[,N...] --context C[,C...] [--backend cuda] [--json]
//   voxtral-bench encoder -d DIR -i FILE [--seconds S] [--repeats N] [--precision fast] [--variant V] [--json]
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench/memory_bandwidth.h"
#include "bench/batch_run.h"
#include "bench/encoder_bench.h"
#include "bench/random_model.h"
#include "bench/step_bench.h"
#include "cli/model_options.h"
#include "core/audio.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/stream.h"
#include "runtime/transcriber.h"
#ifdef VOXTRAL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace {

using namespace voxtral;

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(rank);
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

struct RunOptions {
  std::string model_dir, input;
  double seconds = 0;
  int delay_ms = 0;
  bool json = false;
  bool skip_bandwidth = false;
  ModelOptions model;  // backend (cpu unless told), threads, precision, K/V cache, weights
  std::string dump_logits;  // prefix of files receiving every step's input id and logits
  std::string teacher;      // PREFIX.ids of an earlier --dump-logits run: force its tokens
  bool realtime = false;    // feed at real-time pace and measure per-token latency
  double interval = 0;      // processing interval for --realtime
  int late_steps = 100;     // the "late" median covers this many final steps (long context)
  int batch = 0;            // > 0: that many streams at once through the scheduler (bench/batch_run.h)
};

// Feeds the audio at real-time pace, 10 ms at a time, and measures for every token the time
// from the arrival of the audio that produced it (the end of its position) to the token.
int run_realtime(const RunOptions& o, Model& model, const std::vector<float>& samples) {
  using Clock = std::chrono::steady_clock;
  StreamOptions so;
  so.delay_ms = o.delay_ms;
  so.processing_interval_s = o.interval;
  so.ignore_eos = true;
  so.continuous = true;
  Stream stream(model, so);
  const int rate = model.config().audio.sampling_rate;
  const std::size_t chunk = static_cast<std::size_t>(rate / 100);
  std::vector<double> latency;
  const auto start = Clock::now();
  auto collect = [&] {
    const auto now = Clock::now();
    for (const auto& p : stream.take_pieces()) {
      if (p.id < 0) continue;
      const auto arrived = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(p.audio_end));
      latency.push_back(std::chrono::duration<double, std::milli>(now - arrived).count());
    }
  };
  for (std::size_t at = 0; at < samples.size(); at += chunk) {
    std::this_thread::sleep_until(start + std::chrono::milliseconds(10 * (at / chunk)));
    stream.feed(std::span(samples).subspan(at, std::min(chunk, samples.size() - at)));
    collect();
  }
  const double delay_ms = 1000.0 * stream.delay_positions() / model.config().audio.frame_rate;
  nlohmann::json r = {
      {"model", o.model_dir}, {"backend", model.backend().name()}, {"audio_seconds", static_cast<double>(samples.size()) / rate},
      {"processing_interval_s", o.interval}, {"tokens", latency.size()},
      {"latency_ms_p50", percentile(latency, 0.5)}, {"latency_ms_p95", percentile(latency, 0.95)},
      {"latency_ms_max", latency.empty() ? 0.0 : *std::max_element(latency.begin(), latency.end())},
      {"model_delay_ms", delay_ms}};
  if (o.json) {
    std::printf("%s\n", r.dump(2).c_str());
  } else {
    std::printf("realtime    %.1f s fed at real-time pace in 10 ms pieces, processing interval %.2f s, on %s\n",
                static_cast<double>(samples.size()) / rate, o.interval, model.backend().name().c_str());
    std::printf("latency     %zu tokens: p50 %.1f ms, p95 %.1f ms, max %.1f ms from their audio's arrival to the token "
                "(the model itself waits %.0f ms for context: speech to text is that much more)\n",
                latency.size(), percentile(latency, 0.5), percentile(latency, 0.95), r["latency_ms_max"].get<double>(),
                delay_ms);
  }
  return 0;
}

// The ids file of --dump-logits holds each step's input; step k's chosen token is input k + 1.
std::vector<int> read_teacher_ids(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!f) fail(path, "cannot open the teacher ids (a PREFIX.ids written by --dump-logits)");
  std::vector<std::int32_t> inputs;
  std::int32_t id = 0;
  while (std::fread(&id, sizeof id, 1, f.get()) == 1) inputs.push_back(id);
  if (inputs.size() < 2) fail(path, "holds fewer than two steps' ids");
  return {inputs.begin() + 1, inputs.end()};
}

int run(const RunOptions& o) {
  auto model = Model::load(o.model_dir, o.model);
  auto samples = load_audio_file(o.input, model->config().audio.sampling_rate);
  if (o.seconds > 0) {  // repeat (or cut) the recording to the asked length
    const auto want = static_cast<std::size_t>(o.seconds * model->config().audio.sampling_rate);
    std::vector<float> looped(want);
    for (std::size_t i = 0; i < want; ++i) looped[i] = samples[i % samples.size()];
    samples.swap(looped);
  }
  if (o.realtime) return run_realtime(o, *model, samples);
  if (o.batch > 0) return run_batch(*model, samples, {o.batch, o.delay_ms, o.json});
  const bool gpu = model->backend().name().starts_with("cuda");
  // What the device holds before any transcription: the weights plus the CUDA context and
  // the libraries' own memory (the part of the peak that no stream setting changes).
  std::size_t loaded_device = 0;
#ifdef VOXTRAL_HAVE_CUDA
  if (gpu) loaded_device = device_memory_in_use();
#endif
  StreamOptions to;
  to.ignore_eos = true;
  to.continuous = true;  // runs longer than the model's position limit restart the decoder, as live streams do
  to.delay_ms = o.delay_ms;
  std::size_t peak_device = 0;
  // Long runs report their progress every 10 minutes of audio, so that memory over time shows
  // (and a run stopped early still tells how far it got).
  double next_report = 600;
  const auto run_start = std::chrono::steady_clock::now();
  auto sample_device_memory = [&](const TextPiece& piece) {
#ifdef VOXTRAL_HAVE_CUDA
    if (gpu) peak_device = std::max(peak_device, device_memory_in_use());
#endif
    if (piece.audio_end >= next_report) {
      next_report += 600;
      std::fprintf(stderr, "voxtral-bench: %.0f s of audio in %.1f s, peak RSS %.0f MB, GPU memory peak %.0f MiB\n",
                   piece.audio_end,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count(), peak_rss_mb(),
                   static_cast<double>(peak_device) / 1048576.0);
    }
  };
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> logits_file(nullptr, std::fclose);
  std::vector<std::int32_t> dumped_ids;
  std::vector<float> row;
  std::int64_t first_dumped = -1;
  if (!o.dump_logits.empty()) {
    logits_file.reset(std::fopen((o.dump_logits + ".f32").c_str(), "wb"));
    if (!logits_file) fail(o.dump_logits + ".f32", "cannot create");
    to.on_step_logits = [&](int input_id, std::int64_t position, const Tensor& logits) {
      row.resize(static_cast<std::size_t>(logits.numel()));
      model->backend().copy_to_host(logits, row.data());
      std::fwrite(row.data(), sizeof(float), row.size(), logits_file.get());
      dumped_ids.push_back(input_id);
      if (first_dumped < 0) first_dumped = position;
    };
  }
  if (!o.teacher.empty()) to.teacher_ids = read_teacher_ids(o.teacher);
  const auto start = std::chrono::steady_clock::now();
  const auto t = transcribe(*model, samples, to, sample_device_memory);
  if (logits_file) {
    logits_file.reset();
    std::FILE* ids = std::fopen((o.dump_logits + ".ids").c_str(), "wb");
    if (ids == nullptr) fail(o.dump_logits + ".ids", "cannot create");
    std::fwrite(dumped_ids.data(), sizeof(std::int32_t), dumped_ids.size(), ids);
    std::fclose(ids);
    std::FILE* meta = std::fopen((o.dump_logits + ".json").c_str(), "w");
    if (meta == nullptr) fail(o.dump_logits + ".json", "cannot create");
    std::fprintf(meta, "{\"first_position\": %lld, \"steps\": %zu, \"vocab\": %zu}\n",
                 static_cast<long long>(first_dumped), dumped_ids.size(), row.size());
    std::fclose(meta);
  }
  const double total_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const auto& s = t.stats;

  const int threads = o.model.threads > 0 ? o.model.threads : static_cast<int>(std::thread::hardware_concurrency());
  double bandwidth = 0.0;
  if (!o.skip_bandwidth) {
#ifdef VOXTRAL_HAVE_CUDA
    if (gpu) bandwidth = measure_device_read_bandwidth(std::size_t{4} << 30);
#endif
    if (!gpu) bandwidth = measure_read_bandwidth(threads);
  }
  const double bytes = decoder_bytes_per_step(model->config(), model->weight_format());
  const double floor_ms = bandwidth > 0 ? bytes / bandwidth * 1000.0 : 0.0;
  const double median = percentile(s.step_ms, 0.5);
  const std::size_t late_count = std::min<std::size_t>(static_cast<std::size_t>(o.late_steps), s.step_ms.size());
  const std::vector<double> late(s.step_ms.end() - static_cast<std::ptrdiff_t>(late_count), s.step_ms.end());
  const double late_median = percentile(late, 0.5);
  const auto late_context = s.positions - static_cast<std::int64_t>(late_count) / 2;

  nlohmann::json r = {
      {"model", o.model_dir},
      {"backend", model->backend().name()},
      {"threads", threads},
      {"audio_seconds", s.audio_seconds},
      {"positions", s.positions},
      {"load_ms", model->load_seconds() * 1000.0},
      {"weights", weight_format_name(model->weight_format())},
      {"weight_bytes", model->backend().weight_bytes()},
      {"mel_ms", s.mel_ms},
      {"encoder_ms", s.encoder_ms},
      {"encoder_ms_per_audio_second", s.encoder_ms / s.audio_seconds},
      {"encoder_times_real_time", s.audio_seconds * 1000.0 / s.encoder_ms},
      {"prefill_ms", s.prefill_ms},
      {"decode_tokens", s.step_ms.size()},
      {"decode_steps", s.decode_passes},
      {"tokens_per_step", s.decode_passes > 0 ? static_cast<double>(s.step_ms.size()) / s.decode_passes : 0.0},
      {"speculative_tokens", model->speculative_tokens()},
      {"step_ms_median", median},
      {"step_ms_p90", percentile(s.step_ms, 0.9)},
      {"late_steps", late_count},
      {"late_step_ms_median", late_median},
      {"late_context_positions", late_context},
      {"first_token_ms", s.first_token_ms},
      {"decode_ms", s.decode_ms},
      {"step_ms_mean", s.step_ms.empty() ? 0.0 : s.decode_ms / static_cast<double>(s.step_ms.size())},
      {"decoder_bytes_per_step", bytes},
      {"memory_bandwidth_gb_s", bandwidth / 1e9},
      {"floor_ms_per_step", floor_ms},
      {"floor_fraction", median > 0 && floor_ms > 0 ? floor_ms / median : 0.0},
      {"total_ms", total_ms},
      {"real_time_factor", total_ms / 1000.0 / s.audio_seconds},
      {"peak_rss_mb", peak_rss_mb()},
      {"peak_device_memory_mb", static_cast<double>(peak_device) / 1048576.0},
      {"device_memory_after_load_mb", static_cast<double>(loaded_device) / 1048576.0},
  };
  if (o.json) {
    std::printf("%s\n", r.dump(2).c_str());
    return 0;
  }
  std::printf("model       %s on %s, %.2f GB of weights in %s, loaded in %.1f s\n", o.model_dir.c_str(),
              model->backend().name().c_str(), static_cast<double>(model->backend().weight_bytes()) / 1e9,
              std::string(weight_format_name(model->weight_format())).c_str(), model->load_seconds());
  std::printf("audio       %.1f s, %lld decoder positions\n", s.audio_seconds, static_cast<long long>(s.positions));
  std::printf("mel         %.0f ms\n", s.mel_ms);
  std::printf("encoder     %.0f ms: %.1f ms per audio second (%.1fx real time), adapter included\n", s.encoder_ms,
              s.encoder_ms / s.audio_seconds, s.audio_seconds * 1000.0 / s.encoder_ms);
  std::printf("prefill     %.0f ms\n", s.prefill_ms);
  // With speculative rows a step yields several tokens: the times are per token (a step's
  // time shared by the tokens it gave).
  std::printf("decoder     %zu tokens (EOS ignored) in %d steps (%.2f tokens a step, at most %d speculative rows), "
              "%.0f ms: mean %.2f ms/token, median %.2f, p90 %.2f; last %zu tokens (context ~%lld positions): "
              "median %.2f ms/token\n",
              s.step_ms.size(), s.decode_passes,
              s.decode_passes > 0 ? static_cast<double>(s.step_ms.size()) / s.decode_passes : 0.0,
              model->speculative_tokens(), s.decode_ms,
              s.step_ms.empty() ? 0.0 : s.decode_ms / static_cast<double>(s.step_ms.size()), median,
              percentile(s.step_ms, 0.9), late_count, static_cast<long long>(late_context), late_median);
  std::printf("first token %.0f ms after the audio was handed over (mel, encoder, prefill, one step)\n", s.first_token_ms);
  if (bandwidth > 0) {
    std::printf("floor       %.2f GB of weights per step / %.1f GB/s measured read bandwidth = %.2f ms/step; "
                "the median token is %.2fx that (%.0f%% of it achieved)\n",
                bytes / 1e9, bandwidth / 1e9, floor_ms, median / floor_ms, 100.0 * floor_ms / median);
  }
  std::printf("end to end  %.0f ms, real-time factor %.3f (%.2fx real time)\n", total_ms, total_ms / 1000.0 / s.audio_seconds,
              s.audio_seconds * 1000.0 / total_ms);
  std::printf("peak RSS    %.0f MB\n", peak_rss_mb());
  if (gpu) {
    std::printf("GPU memory  %.0f MiB at peak (all of the device in use, sampled at every token); %.0f MiB after "
                "loading, of which %.0f MiB weights\n",
                static_cast<double>(peak_device) / 1048576.0, static_cast<double>(loaded_device) / 1048576.0,
                static_cast<double>(model->backend().weight_bytes()) / 1048576.0);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"voxtral-bench: full-size random models and engine measurements"};
  app.require_subcommand(1);

  RandomModelOptions mm;
  auto* make = app.add_subcommand("make-model", "Write a random-weight model with the shapes of a params.json");
  make->add_option("--params", mm.params_json, "params.json giving the shapes (e.g. the real model's)")->required();
  make->add_option("--out", mm.out_dir, "Output model directory")->required();
  make->add_option("--seed", mm.seed, "Random seed (default 1)");
  make->add_option("--threads", mm.threads, "Threads (default: one per core)");

  RunOptions ro;
  auto* bench = app.add_subcommand("run", "Transcribe a file with EOS ignored and report timings");
  bench->add_option("-d,--model", ro.model_dir, "Model directory")->required();
  bench->add_option("-i,--input", ro.input, "WAV file")->required();
  bench->add_option("--seconds", ro.seconds, "Repeat or cut the audio to this many seconds");
  add_model_options(*bench, ro.model);
  bench->add_option("--variant", ro.model.kernel_variants,
                    "Kernel variants to compare with the defaults (CUDA): fused=1|0|gemv, mma_attention=1|0, "
                    "streamed_rows=N, quantized_streamed_rows=N, attention_keys=32|64|128, programmatic_launch=1|0, "
                    "fp8_epilogue=auto|library|kernel, fp8_fast_accum=1|0, comma-separated");
  add_delay_option(*bench, ro.delay_ms);
  bench->add_flag("--json", ro.json, "Print the results as JSON");
  bench->add_flag("--skip-bandwidth", ro.skip_bandwidth, "Do not measure memory bandwidth");
  bench->add_option("--dump-logits", ro.dump_logits,
                    "Write every step's input id and logits to PREFIX.ids / PREFIX.f32 / PREFIX.json (parity checks)");
  bench->add_option("--teacher", ro.teacher,
                    "Teacher forcing: decode the tokens of an earlier run's PREFIX.ids (from --dump-logits) instead "
                    "of this run's argmax, so the two runs' logits compare position by position");
  bench->add_option("--late-steps", ro.late_steps, "Steps in the long-context median (default 100)");
  bench->add_flag("--realtime", ro.realtime,
                  "Feed the audio at real-time pace and report per-token latency (p50/p95) instead");
  add_interval_option(*bench, ro.interval)->description("Processing interval for --realtime, in seconds (default 0)");
  bench->add_option("--batch", ro.batch,
                    "Decode N copies of the audio at once through the scheduler (one batched step for all) and report "
                    "the aggregate real-time factor, steps, mean rows per step, and whether every copy gave the "
                    "token ids of one stream alone")
      ->check(CLI::Range(1, kMaxStreams))
      ->excludes("--realtime");

  StepBenchOptions so;
  auto* step = app.add_subcommand("step", "Time the batched decoder step alone: N streams at context C");
  step->add_option("-d,--model", so.model_dir, "Model directory")->required();
  step->add_option("--batch", so.batches, "Streams per step, e.g. 1,8,64")->delimiter(',');
  step->add_option("--context", so.contexts, "Position every row decodes at, e.g. 64,4096")->delimiter(',');
  step->add_option("--steps", so.steps, "Timed steps per case (median reported; default 60)");
  step->add_option("--warmup", so.warmup, "Untimed steps first (default 5)");
  add_model_options(*step, so.model);
  step->add_flag("--json", so.json, "Print the results as JSON");
  step->add_option("--variant", so.model.kernel_variants, "Kernel variants (CUDA), as for run");
  step->add_flag("--skip-bandwidth", so.skip_bandwidth, "Do not measure memory bandwidth");

  EncoderBenchOptions eo;
  auto* enc = app.add_subcommand("encoder", "Time the audio encoder and adapter alone on a recording");
  enc->add_option("-d,--model", eo.model_dir, "Model directory")->required();
  enc->add_option("-i,--input", eo.input, "WAV file")->required();
  enc->add_option("--seconds", eo.seconds, "Repeat or cut the audio to this many seconds");
  enc->add_option("--repeats", eo.repeats, "Timed passes over the audio (median reported; default 3)")
      ->check(CLI::Range(1, 1000));
  add_model_options(*enc, eo.model);
  enc->add_option("--variant", eo.model.kernel_variants, "Kernel variants (CUDA), as for run");
  enc->add_flag("--json", eo.json, "Print the results as JSON");

  CLI11_PARSE(app, argc, argv);
  try {
    if (*make) {
      const auto start = std::chrono::steady_clock::now();
      const auto bytes = write_random_model(mm);
      std::printf("wrote %s: %.2f GB of BF16 weights in %.1f s\n", mm.out_dir.c_str(), static_cast<double>(bytes) / 1e9,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      return 0;
    }
    if (*step) return run_step_bench(so);
    if (*enc) return run_encoder_bench(eo);
    if (ro.batch > 0 && ro.model.max_streams == 0) ro.model.max_streams = ro.batch;  // room for the N streams
    return run(ro);
  } catch (const Error& e) {
    std::fprintf(stderr, "voxtral-bench: %s\n", e.what());
    return 1;
  }
}
