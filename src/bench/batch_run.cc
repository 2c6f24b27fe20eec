#include "bench/batch_run.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>

#include "runtime/transcriber.h"
#include "runtime/scheduler.h"

namespace voxtral {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

int run_batch(Model& model, const std::vector<float>& samples, const BatchRunOptions& o) {
  StreamOptions so;
  so.ignore_eos = true;
  so.continuous = true;
  so.delay_ms = o.delay_ms;
  const double audio_seconds = static_cast<double>(samples.size()) / model.config().audio.sampling_rate;

  auto t = Clock::now();
  const Transcript alone = transcribe(model, samples, so);
  const double alone_seconds = seconds_since(t);
  std::vector<int> reference;
  for (const auto& p : alone.pieces) {
    if (p.id >= 0) reference.push_back(p.id);
  }

  so.expected_samples = static_cast<std::int64_t>(samples.size());
  so.encoder_chunk = kOfflineEncoderChunk;
  std::mutex mutex;
  std::condition_variable done;
  std::vector<std::vector<int>> ids(static_cast<std::size_t>(o.streams));
  int finished = 0;
  std::vector<std::string> errors;
  SchedulerOptions options;
  options.max_jobs = o.streams;
  Scheduler scheduler(model, options);
  std::vector<std::shared_ptr<Job>> jobs;
  t = Clock::now();
  for (int i = 0; i < o.streams; ++i) {
    JobCallbacks callbacks;
    callbacks.on_pieces = [&, i](std::vector<TextPiece> pieces) {
      std::lock_guard lock(mutex);
      for (const auto& p : pieces) {
        if (p.id >= 0) ids[static_cast<std::size_t>(i)].push_back(p.id);
      }
    };
    callbacks.on_done = [&](const StreamStats&) {
      std::lock_guard lock(mutex);
      ++finished;
      done.notify_all();
    };
    callbacks.on_error = [&](const std::string& message) {
      std::lock_guard lock(mutex);
      errors.push_back(message);
      ++finished;
      done.notify_all();
    };
    auto job = scheduler.start(JobKind::Batch, so, callbacks);
    if (!job) fail("--batch", cat(o.streams, " streams do not fit the model's ", model.decoder().options().max_sequences));
    job->append(samples);
    job->finish();
    jobs.push_back(std::move(job));
  }
  {
    std::unique_lock lock(mutex);
    done.wait(lock, [&] { return finished == o.streams; });
  }
  const double wall = seconds_since(t);
  const SchedulerCounters c = scheduler.counters();
  int same = 0;
  for (const auto& stream_ids : ids) same += stream_ids == reference ? 1 : 0;
  const bool identical = same == o.streams && errors.empty();
  const double steps = static_cast<double>(c.decode_steps);
  const double total_audio = audio_seconds * o.streams;
  nlohmann::json r = {
      {"backend", model.backend().name()},
      {"streams", o.streams},
      {"audio_seconds_per_stream", audio_seconds},
      {"tokens_per_stream", reference.size()},
      {"wall_seconds", wall},
      {"aggregate_rtfx", total_audio / wall},
      {"tokens_per_second", static_cast<double>(c.decoded_positions) / wall},
      {"decode_steps", c.decode_steps},
      {"mean_batch_rows", steps > 0 ? static_cast<double>(c.decoded_rows) / steps : 0.0},
      {"mean_streams_per_step", steps > 0 ? static_cast<double>(c.stepped_streams) / steps : 0.0},
      {"step_ms_mean", steps > 0 ? c.decode_ms / steps : 0.0},
      {"one_stream_wall_seconds", alone_seconds},
      {"one_stream_rtfx", audio_seconds / alone_seconds},
      {"identical_streams", same},
      {"identical", identical},
      {"errors", errors},
  };
  if (o.json) {
    std::printf("%s\n", r.dump(2).c_str());
  } else {
    std::printf("batch       %d streams of %.1f s (EOS ignored) as upload jobs of one scheduler, on %s\n", o.streams,
                audio_seconds, model.backend().name().c_str());
    std::printf("throughput  %.1f s of audio in %.2f s: %.1fx real time in aggregate, %.0f tokens/s "
                "(one stream alone: %.2f s, %.1fx real time)\n",
                total_audio, wall, total_audio / wall, r["tokens_per_second"].get<double>(), alone_seconds,
                audio_seconds / alone_seconds);
    std::printf("steps       %lld decoder steps, %.2f rows per step on average, %.2f ms per step\n",
                static_cast<long long>(c.decode_steps), r["mean_batch_rows"].get<double>(), r["step_ms_mean"].get<double>());
    for (const auto& e : errors) std::printf("error       %s\n", e.c_str());
    std::printf("identical: %s (%d of %d streams gave the lone run's %zu token ids)\n", identical ? "yes" : "no", same,
                o.streams, reference.size());
  }
  return identical ? 0 : 1;
}

}  // namespace voxtral
