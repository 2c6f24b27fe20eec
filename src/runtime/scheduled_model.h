// A model and its scheduler for front ends whose callers drive streams synchronously, each
// from its own thread: the C API and the Python module. A stream's feed() returns once the
// scheduler has decoded its audio as far as the audio allows, so the text is then ready; every
// stream is a job of the model's one scheduler (runtime/scheduler.h), so streams fed from
// many threads at once decode in one batched step, and whole recordings (transcribe) join
// them as upload jobs.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "model/model.h"
#include "runtime/scheduler.h"
#include "runtime/stream.h"

namespace voxtral {

// The call itself is wrong (a NaN sample, audio after finish(), options out of range):
// nothing was taken and the stream stays usable. Front ends may report it apart from the
// engine's failures (Python raises ValueError).
class UsageError : public Error {
 public:
  using Error::Error;
};

// UsageError naming the first NaN or infinite sample by its index (one such value would
// spread through the mel frames and the encoder's cache and silence the stream for good).
void check_finite(std::span<const float> samples);

// Called about every kWaitSlice while a call waits for the scheduler; whatever it throws ends
// the wait (the work already handed over goes on). Python checks for Ctrl-C there.
using WaitHook = std::function<void()>;
inline constexpr std::chrono::milliseconds kWaitSlice{100};

class ScheduledStream;

// A whole recording's text pieces, as the stream produced them, and its statistics.
struct OfflineResult {
  std::vector<TextPiece> pieces;
  StreamStats stats;
};

class ScheduledModel {
 public:
  // Starts the model's scheduler. `naming` is how messages name the model's options
  // (max_streams, kv_cache_mb) for this front end's users.
  ScheduledModel(std::unique_ptr<Model> model, OptionNaming naming);
  // Stops the scheduler. Every stream must be destroyed first (front ends refuse earlier).
  ~ScheduledModel();
  ScheduledModel(const ScheduledModel&) = delete;
  ScheduledModel& operator=(const ScheduledModel&) = delete;

  Model& model() { return *model_; }
  // Streams created and not yet destroyed.
  int open_streams() const;

  // A live stream. UsageError when the options are out of range (validate(), and a delay the
  // model does not support); BusyError when every place of the model is held by a stream or a
  // transcription that is still working (one that just ended is waited for, a moment).
  std::unique_ptr<ScheduledStream> open_stream(const StreamOptions& options);

  // A whole recording, 16 kHz mono, through the scheduler as one upload job (offline chunking;
  // options.expected_samples is set here). While other transcriptions hold every place, or the
  // K/V cache they hold has no room for this audio, it waits for one of them to end; when open
  // streams hold them, or the cache cannot hold the audio alone, BusyError. A NaN or infinite
  // sample is a UsageError; a failure of the engine an Error.
  OfflineResult transcribe(std::vector<float> samples, StreamOptions options, const WaitHook& hook = {});

 private:
  friend class ScheduledStream;
  struct Transcription;
  // Starts a job, waiting out jobs that ended and are still counted (and, with
  // `wait_for_transcriptions`, running transcriptions); BusyError when none can start.
  std::shared_ptr<Job> start(JobKind kind, const StreamOptions& options, JobCallbacks callbacks,
                             bool wait_for_transcriptions, const WaitHook& hook);
  // Waits until a transcription ends (or kWaitSlice passes) after `seen` had ended.
  void wait_for_an_end(long seen, const WaitHook& hook);
  std::string option(std::string_view field) const { return option_name(naming_, field); }

  std::unique_ptr<Model> model_;
  const OptionNaming naming_;
  std::unique_ptr<Scheduler> scheduler_;  // after the model: stops before it goes
  mutable std::mutex mutex_;
  std::condition_variable ended_changed_;
  int open_streams_ = 0;    // guarded by mutex_
  int working_ = 0;         // jobs in the scheduler that have not ended (streams, transcriptions)
  int transcriptions_ = 0;  // of which transcriptions
  long ended_ = 0;          // transcriptions ended so far
};

// One live stream of a ScheduledModel. Thread-safe; calls on one stream are served one at a
// time. A failure of the job (e.g. the K/V cache is full) ends the stream: that call and every
// later one throw its Error.
class ScheduledStream {
 public:
  ~ScheduledStream();  // cancels the job: its text is dropped
  ScheduledStream(const ScheduledStream&) = delete;
  ScheduledStream& operator=(const ScheduledStream&) = delete;

  // 16 kHz mono samples in [-1, 1]. A NaN or infinite sample is a UsageError naming its index,
  // and none of the call's samples are taken; so is audio after finish(). Returns once the
  // audio has been decoded as far as it allows.
  void feed(std::span<const float> samples, const WaitHook& hook = {});
  // At a pause: brings out everything said so far; later audio continues the stream.
  void flush(const WaitHook& hook = {});
  // End of the audio: brings out the rest.
  void finish(const WaitHook& hook = {});
  // The pieces produced since the last call, in order.
  std::vector<TextPiece> take_pieces();
  bool finished() const;

 private:
  friend class ScheduledModel;
  struct Shared;  // what the job's callbacks (on the scheduler thread) share with the stream
  ScheduledStream(ScheduledModel& owner, std::shared_ptr<Shared> shared, std::shared_ptr<Job> job);
  // Waits until the job has served what it was handed; throws the job's failure.
  void wait_served(const WaitHook& hook);
  void throw_if_failed();

  ScheduledModel& owner_;
  std::shared_ptr<Shared> shared_;
  std::shared_ptr<Job> job_;
  std::mutex call_mutex_;              // one call at a time
  std::atomic<bool> finished_{false};  // read without waiting for a call in progress
};

}  // namespace voxtral
