#include "runtime/scheduled_model.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <utility>

#include "model/kv_pages.h"
#include "model/schedule.h"
#include "runtime/transcriber.h"

namespace voxtral {

namespace {

void check_options(const StreamOptions& options, const ModelConfig& config) {
  try {
    validate(options);
    if (options.delay_ms > 0) delay_positions(options.delay_ms, config);
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

}  // namespace

void check_finite(std::span<const float> samples) {
  const auto bad = std::find_if(samples.begin(), samples.end(), [](float v) { return !std::isfinite(v); });
  if (bad == samples.end()) return;
  throw UsageError(cat("audio: sample ", bad - samples.begin(), " of ", samples.size(), " is ",
                       std::isnan(*bad) ? "NaN" : "infinite", "; nothing of this call was taken"));
}

// A job's place in the model's counts, given back once: by the callback that ends the job, or
// by the caller that cancels it (a cancelled job hears nothing more).
class WorkPlace {
 public:
  explicit WorkPlace(std::function<void()> release) : release_(std::move(release)) {}
  void give_back() {
    if (held_.exchange(false)) release_();
  }

 private:
  std::function<void()> release_;
  std::atomic<bool> held_{true};
};

struct ScheduledStream::Shared {
  std::mutex mutex;
  std::vector<TextPiece> pieces;
  std::string failure;  // the job failed and is gone
  std::unique_ptr<WorkPlace> place;
};

struct ScheduledModel::Transcription {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<TextPiece> pieces;
  StreamStats stats;
  bool done = false, busy = false;
  std::string failure;
  std::unique_ptr<WorkPlace> place;
};

ScheduledModel::ScheduledModel(std::unique_ptr<Model> model, OptionNaming naming)
    : model_(std::move(model)), naming_(naming) {
  SchedulerOptions options;
  options.max_jobs = kMaxStreams;  // the model's streams are the limit
  scheduler_ = std::make_unique<Scheduler>(*model_, options);
}

ScheduledModel::~ScheduledModel() { scheduler_.reset(); }

int ScheduledModel::open_streams() const {
  std::lock_guard lock(mutex_);
  return open_streams_;
}

std::shared_ptr<Job> ScheduledModel::start(JobKind kind, const StreamOptions& options, JobCallbacks callbacks,
                                           bool wait_for_transcriptions, const WaitHook& hook) {
  for (int tries = 0;; ++tries) {
    // Counted before the attempt: a job the scheduler drops in between still gets its retry.
    int working = 0, transcriptions = 0;
    long seen = 0;
    {
      std::lock_guard lock(mutex_);
      working = working_;
      transcriptions = transcriptions_;
      seen = ended_;
    }
    const int active = scheduler_->counters().active_jobs;
    if (auto job = scheduler_->start(kind, options, callbacks)) {
      std::lock_guard lock(mutex_);
      ++working_;
      if (kind == JobKind::Batch) ++transcriptions_;
      return job;
    }
    if (wait_for_transcriptions && transcriptions > 0) {
      wait_for_an_end(seen, hook);
      continue;
    }
    // A job that ended leaves the scheduler at the end of its turn, within a decoder step
    // (ten seconds covers the slowest).
    if (active > working && tries < 10000) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      if (hook && tries % 100 == 99) hook();
      continue;
    }
    throw BusyError(cat("all ", model_->decoder().options().max_sequences,
                        " streams of this model are in use; end one, or load the model with a larger ",
                        option("max_streams")));
  }
}

void ScheduledModel::wait_for_an_end(long seen, const WaitHook& hook) {
  std::unique_lock lock(mutex_);
  while (!ended_changed_.wait_for(lock, kWaitSlice, [&] { return ended_ > seen || transcriptions_ == 0; })) {
    lock.unlock();
    if (hook) hook();
    lock.lock();
  }
}

std::unique_ptr<ScheduledStream> ScheduledModel::open_stream(const StreamOptions& options) {
  check_options(options, model_->config());
  auto shared = std::make_shared<ScheduledStream::Shared>();
  const std::string kv_advice =
      cat("; load the model with a larger ", option("kv_cache_mb"), " (or fewer ", option("max_streams"), ")");
  JobCallbacks callbacks;  // on the scheduler thread
  callbacks.on_pieces = [shared](std::vector<TextPiece> pieces) {
    std::lock_guard lock(shared->mutex);
    shared->pieces.insert(shared->pieces.end(), std::make_move_iterator(pieces.begin()),
                          std::make_move_iterator(pieces.end()));
  };
  callbacks.on_done = [shared](const StreamStats&) { shared->place->give_back(); };
  callbacks.on_error = [shared](const std::string& message) {
    {
      std::lock_guard lock(shared->mutex);
      shared->failure = message;
    }
    shared->place->give_back();
  };
  callbacks.on_busy = [shared, kv_advice](const std::string& message) {  // the K/V cache is full
    {
      std::lock_guard lock(shared->mutex);
      shared->failure = message + kv_advice;
    }
    shared->place->give_back();
  };
  shared->place = std::make_unique<WorkPlace>([this] {
    std::lock_guard lock(mutex_);
    --working_;
  });
  auto job = start(JobKind::Live, options, std::move(callbacks), false, {});
  std::unique_ptr<ScheduledStream> stream;
  try {
    stream.reset(new ScheduledStream(*this, shared, job));
  } catch (...) {
    job->cancel();
    shared->place->give_back();
    throw;
  }
  std::lock_guard lock(mutex_);
  ++open_streams_;
  return stream;
}

OfflineResult ScheduledModel::transcribe(std::vector<float> samples, StreamOptions options, const WaitHook& hook) {
  check_finite(samples);
  options.expected_samples = static_cast<std::int64_t>(samples.size());
  options.encoder_chunk = kOfflineEncoderChunk;
  check_options(options, model_->config());
  for (;;) {
    auto t = std::make_shared<Transcription>();
    t->place = std::make_unique<WorkPlace>([this] {
      {
        std::lock_guard lock(mutex_);
        --working_;
        --transcriptions_;
        ++ended_;
      }
      ended_changed_.notify_all();
    });
    JobCallbacks callbacks;  // on the scheduler thread
    callbacks.on_pieces = [t](std::vector<TextPiece> pieces) {
      std::lock_guard lock(t->mutex);
      t->pieces.insert(t->pieces.end(), std::make_move_iterator(pieces.begin()), std::make_move_iterator(pieces.end()));
    };
    auto end = [t](std::string failure, bool busy, const StreamStats* stats) {
      t->place->give_back();
      {
        std::lock_guard lock(t->mutex);
        t->failure = std::move(failure);
        t->busy = busy;
        if (stats != nullptr) t->stats = *stats;
        t->done = true;
      }
      t->changed.notify_all();
    };
    callbacks.on_done = [end](const StreamStats& stats) { end("", false, &stats); };
    callbacks.on_error = [end](const std::string& message) { end(message, false, nullptr); };
    callbacks.on_busy = [end](const std::string& message) { end(message, true, nullptr); };

    int others = 0;
    {
      std::lock_guard lock(mutex_);
      others = transcriptions_;
    }
    auto job = start(JobKind::Batch, options, std::move(callbacks), true, hook);
    try {
      // Only while other transcriptions hold K/V pages can a refusal for lack of them be
      // tried again: keep a copy for that.
      job->append(others > 0 ? samples : std::move(samples));
      job->finish();
      std::unique_lock lock(t->mutex);
      while (!t->changed.wait_for(lock, kWaitSlice, [&] { return t->done; })) {
        lock.unlock();
        if (hook) hook();
        lock.lock();
      }
    } catch (...) {  // the caller gave up (or memory ran out): nobody will read this text
      job->cancel();
      t->place->give_back();
      throw;
    }
    if (t->busy) {
      long at_refusal = 0;
      bool others_running = false;
      {
        std::lock_guard lock(mutex_);
        at_refusal = ended_;
        others_running = transcriptions_ > 0;
      }
      if (others > 0 && others_running) {
        wait_for_an_end(at_refusal, hook);
        continue;
      }
      throw BusyError(cat(t->failure, "; load the model with a larger ", option("kv_cache_mb")));
    }
    if (!t->failure.empty()) throw Error(t->failure);
    return {std::move(t->pieces), t->stats};
  }
}

ScheduledStream::ScheduledStream(ScheduledModel& owner, std::shared_ptr<Shared> shared, std::shared_ptr<Job> job)
    : owner_(owner), shared_(std::move(shared)), job_(std::move(job)) {}

ScheduledStream::~ScheduledStream() {
  job_->cancel();
  shared_->place->give_back();
  std::lock_guard lock(owner_.mutex_);
  --owner_.open_streams_;
}

void ScheduledStream::throw_if_failed() {
  std::lock_guard lock(shared_->mutex);
  if (!shared_->failure.empty()) throw Error(shared_->failure);
}

void ScheduledStream::wait_served(const WaitHook& hook) {
  while (!job_->wait_until_served_for(kWaitSlice)) {
    if (hook) hook();
  }
  throw_if_failed();
}

void ScheduledStream::feed(std::span<const float> samples, const WaitHook& hook) {
  std::lock_guard call(call_mutex_);
  check_finite(samples);
  if (finished_) throw UsageError("stream: audio fed after finish()");
  throw_if_failed();
  if (!samples.empty()) job_->append(std::vector<float>(samples.begin(), samples.end()));
  wait_served(hook);
}

void ScheduledStream::flush(const WaitHook& hook) {
  std::lock_guard call(call_mutex_);
  throw_if_failed();
  if (!finished_) job_->flush();
  wait_served(hook);
}

void ScheduledStream::finish(const WaitHook& hook) {
  std::lock_guard call(call_mutex_);
  throw_if_failed();
  finished_ = true;
  job_->finish();
  wait_served(hook);
}

std::vector<TextPiece> ScheduledStream::take_pieces() {
  std::lock_guard lock(shared_->mutex);
  std::vector<TextPiece> out;
  out.swap(shared_->pieces);
  return out;
}

bool ScheduledStream::finished() const { return finished_; }

}  // namespace voxtral
