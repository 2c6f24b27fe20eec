#include "bench/encoder_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include <ctime>

#include "core/audio.h"
#include "core/error.h"
#include "core/mel.h"

namespace voxtral {

namespace {

// The process's CPU time (all threads): on a machine shared with other jobs, the time the
// encoder's threads actually ran, beside the wall-clock time it took.
double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) * 1e-6;
}

}  // namespace

int run_encoder_bench(const EncoderBenchOptions& o) {
  if (o.repeats < 1) fail("voxtral-bench encoder", "--repeats must be 1 or more");
  ModelOptions mo = o.model;
  mo.max_streams = 1;
  auto model = Model::load(o.model_dir, mo);
  const ModelConfig& config = model->config();
  auto samples = load_audio_file(o.input, config.audio.sampling_rate);
  if (o.seconds > 0) {
    const auto want = static_cast<std::size_t>(o.seconds * config.audio.sampling_rate);
    std::vector<float> looped(want);
    for (std::size_t i = 0; i < want; ++i) looped[i] = samples[i % samples.size()];
    samples.swap(looped);
  }
  const std::int64_t positions = static_cast<std::int64_t>(samples.size()) / config.samples_per_position();
  if (positions < 1) fail(o.input, "holds less audio than one decoder position");
  const std::vector<float> mel = MelSpectrogram(config.audio).compute(samples);
  const std::int64_t per_position = static_cast<std::int64_t>(config.mel_frames_per_position()) * config.audio.num_mel_bins;
  const double audio_seconds = static_cast<double>(positions * config.samples_per_position()) / config.audio.sampling_rate;

  EncoderPool& encoder = model->encoder();
  const int chunk = encoder.options().max_positions_per_sequence;
  DeviceBuffer out(model->backend(), ElemType::F32, chunk, config.decoder.dim);
  std::vector<double> ms, cpu_ms;
  for (int r = 0; r < o.repeats; ++r) {
    encoder.reset(0);
    const double cpu_start = process_cpu_ms();
    const auto start = std::chrono::steady_clock::now();
    for (std::int64_t p = 0; p < positions; p += chunk) {
      const int n = static_cast<int>(std::min<std::int64_t>(chunk, positions - p));
      const EncodeRequest request{0, std::span<const float>(mel).subspan(static_cast<std::size_t>(p * per_position),
                                                                         static_cast<std::size_t>(n * per_position)),
                                  n, out.view().row_range(0, n)};
      encoder.encode(std::span<const EncodeRequest>(&request, 1));
    }
    std::vector<float> sink(static_cast<std::size_t>(config.decoder.dim));
    model->backend().copy_to_host(out.view().row_range(0, 1), sink.data());  // waits for the queued ops
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    cpu_ms.push_back(process_cpu_ms() - cpu_start);
  }
  encoder.release(0);
  auto median_of = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double median = median_of(ms), cpu_median = median_of(cpu_ms);
  const nlohmann::json r = {{"model", o.model_dir},
                            {"backend", model->backend().name()},
                            {"weights", std::string(weight_format_name(model->weight_format()))},
                            {"load_ms", model->load_seconds() * 1000.0},
                            {"audio_seconds", audio_seconds},
                            {"runs_ms", ms},
                            {"runs_cpu_ms", cpu_ms},
                            {"encoder_ms_median", median},
                            {"encoder_cpu_ms_median", cpu_median},
                            {"ms_per_audio_second", median / audio_seconds},
                            {"times_real_time", audio_seconds * 1000.0 / median}};
  if (o.json) {
    std::printf("%s\n", r.dump(2).c_str());
    return 0;
  }
  std::printf("model       %s on %s, %s weights, loaded in %.1f s\n", o.model_dir.c_str(), model->backend().name().c_str(),
              std::string(weight_format_name(model->weight_format())).c_str(), model->load_seconds());
  std::printf("audio       %.1f s in requests of %d positions\n", audio_seconds, chunk);
  std::printf("encoder     median of %d: %.0f ms, %.1f ms per audio second (%.2fx real time), adapter included; runs:",
              o.repeats, median, median / audio_seconds, audio_seconds * 1000.0 / median);
  for (double m : ms) std::printf(" %.0f", m);
  std::printf(" ms\ncpu time    median %.0f ms of all threads, %.1f ms per audio second\n", cpu_median,
              cpu_median / audio_seconds);
  return 0;
}

}  // namespace voxtral
