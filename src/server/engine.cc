#include "server/engine.h"

#include <algorithm>
#include <exception>
#include <utility>

namespace voxtral {

namespace {
constexpr double kSampleRate = 16000;
// A live client may also send audio faster than real time (a file through the realtime
// protocol): it gets at most this much per turn, so live jobs share the engine too.
constexpr double kLiveSliceSeconds = 1.0;
}  // namespace

Job::Job(Engine& engine, JobKind kind, StreamOptions options, JobCallbacks callbacks)
    : engine_(engine), kind_(kind), options_(std::move(options)), callbacks_(std::move(callbacks)) {}

void Job::push(Input input) {
  {
    std::lock_guard lock(mutex_);
    if (finish_ || cancelled_) return;
    queued_samples_ += static_cast<std::int64_t>(input.samples.size());
    input_.push_back(std::move(input));
  }
  engine_.wake();
}

void Job::append(std::vector<float> samples) {
  if (!samples.empty()) push({std::move(samples), Mark::None});
}

void Job::flush() { push({{}, Mark::Flush}); }

void Job::end_utterance() { push({{}, Mark::EndUtterance}); }

std::int64_t Job::queued_samples() const {
  std::lock_guard lock(mutex_);
  return queued_samples_;
}

void Job::finish() {
  {
    std::lock_guard lock(mutex_);
    finish_ = true;
  }
  engine_.wake();
}

void Job::cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    input_.clear();
    queued_samples_ = 0;
  }
  engine_.wake();
}

Engine::Engine(Model& model, EngineOptions options) : model_(model), options_(options) {
  worker_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  worker_.join();
}

std::shared_ptr<Job> Engine::start(JobKind kind, StreamOptions options, JobCallbacks callbacks) {
  std::lock_guard lock(mutex_);
  if (stop_ || static_cast<int>(jobs_.size()) >= options_.max_jobs) return nullptr;
  std::shared_ptr<Job> job(new Job(*this, kind, std::move(options), std::move(callbacks)));
  jobs_.push_back(job);
  counters_.active_jobs = static_cast<int>(jobs_.size());
  return job;
}

EngineCounters Engine::counters() const {
  std::lock_guard lock(mutex_);
  return counters_;
}

void Engine::cancel_all() {
  std::unique_lock lock(mutex_);
  for (auto& job : jobs_) {
    std::lock_guard job_lock(job->mutex_);
    job->cancelled_ = true;
    job->input_.clear();
    job->queued_samples_ = 0;
  }
  pending_ = true;
  wake_.notify_all();
  idle_.wait(lock, [&] { return stop_ || (!serving_ && !pending_); });
}

void Engine::wake() {
  {
    std::lock_guard lock(mutex_);
    pending_ = true;
  }
  wake_.notify_all();
}

bool Engine::has_work(const Job& job) const {
  return !job.input_.empty() || job.finish_ || job.cancelled_;
}

void Engine::run() {
  const auto live_slice = static_cast<std::int64_t>(kLiveSliceSeconds * kSampleRate);
  const auto batch_slice = static_cast<std::int64_t>(options_.batch_slice_seconds * kSampleRate);
  for (;;) {
    std::vector<std::shared_ptr<Job>> jobs;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || pending_; });
      if (stop_) break;
      pending_ = false;
      serving_ = true;
    }
    // Turns until no job has anything left to do; then sleep until a connection wakes us.
    for (bool worked = true; worked;) {
      worked = false;
      {
        std::lock_guard lock(mutex_);
        jobs = jobs_;
      }
      std::vector<Job*> over;
      std::vector<Job*> batch_ready;
      for (auto& job : jobs) {
        bool ready;
        {
          std::lock_guard lock(job->mutex_);
          ready = has_work(*job);
        }
        if (!ready) continue;
        if (job->kind_ == JobKind::Batch) {
          batch_ready.push_back(job.get());
          continue;
        }
        worked = true;
        if (!serve(*job, live_slice)) over.push_back(job.get());
      }
      if (!batch_ready.empty()) {
        // Rotate: the batch job after the one served last time.
        std::size_t pick = 0;
        {
          std::lock_guard lock(mutex_);
          pick = next_batch_++ % batch_ready.size();
        }
        worked = true;
        if (!serve(*batch_ready[pick], batch_slice)) over.push_back(batch_ready[pick]);
      }
      if (!over.empty()) {
        std::lock_guard lock(mutex_);
        std::erase_if(jobs_, [&](const auto& j) { return std::find(over.begin(), over.end(), j.get()) != over.end(); });
        counters_.active_jobs = static_cast<int>(jobs_.size());
      }
    }
    {
      std::lock_guard lock(mutex_);
      serving_ = false;
    }
    idle_.notify_all();
  }
  // Streams hold backend memory: release them on this thread.
  std::lock_guard lock(mutex_);
  for (auto& job : jobs_) job->stream_.reset();
  jobs_.clear();
  serving_ = false;
  idle_.notify_all();
}

bool Engine::serve(Job& job, std::int64_t max_samples) {
  std::vector<float> samples;
  Job::Mark mark = Job::Mark::None;
  bool do_finish = false;
  {
    std::lock_guard lock(job.mutex_);
    if (job.cancelled_) {
      job.stream_.reset();
      return false;
    }
    while (!job.input_.empty() && static_cast<std::int64_t>(samples.size()) < max_samples) {
      auto& front = job.input_.front();
      if (front.mark != Job::Mark::None) {  // the audio before it, then the mark
        mark = front.mark;
        job.input_.pop_front();
        break;
      }
      const auto want = static_cast<std::size_t>(max_samples) - samples.size();
      const auto take = std::min(want, front.samples.size() - front.taken);
      const auto from = front.samples.begin() + static_cast<std::ptrdiff_t>(front.taken);
      samples.insert(samples.end(), from, from + static_cast<std::ptrdiff_t>(take));
      front.taken += take;
      if (front.taken == front.samples.size()) {
        job.queued_samples_ -= static_cast<std::int64_t>(front.samples.size());
        job.input_.pop_front();
      }
    }
    if (mark == Job::Mark::None && job.input_.empty()) do_finish = job.finish_;
  }
  try {
    if (!job.stream_) job.stream_ = std::make_unique<Stream>(model_, job.options_);
    Stream& stream = *job.stream_;
    const auto steps_before = stream.stats().step_ms.size();
    const double decode_before = stream.stats().decode_ms;
    const bool utterance_over = do_finish || mark == Job::Mark::EndUtterance;
    if (!samples.empty()) stream.feed(samples);
    if (mark == Job::Mark::Flush) stream.flush();
    if (utterance_over) stream.finish();
    {
      std::lock_guard lock(mutex_);
      counters_.audio_seconds += static_cast<double>(samples.size()) / kSampleRate;
      counters_.decode_steps += static_cast<std::int64_t>(stream.stats().step_ms.size() - steps_before);
      counters_.decode_ms += stream.stats().decode_ms - decode_before;
    }
    deliver(job);
    if (utterance_over) {
      if (job.callbacks_.on_done) job.callbacks_.on_done(stream.stats());
      job.stream_.reset();
      return !do_finish;
    }
  } catch (const std::exception& e) {
    {
      std::lock_guard lock(mutex_);
      ++counters_.failures;
    }
    job.stream_.reset();
    {
      std::lock_guard lock(job.mutex_);  // the job is gone: later input is refused, not held
      job.cancelled_ = true;
      job.input_.clear();
      job.queued_samples_ = 0;
    }
    if (job.callbacks_.on_error) job.callbacks_.on_error(e.what());
    return false;
  }
  return true;
}

void Engine::deliver(Job& job) {
  auto pieces = job.stream_->take_pieces();
  if (!pieces.empty() && job.callbacks_.on_pieces) job.callbacks_.on_pieces(std::move(pieces));
}

}  // namespace voxtral
