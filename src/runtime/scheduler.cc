#include "runtime/scheduler.h"

#include <algorithm>
#include <array>
#include <bit>
#include <exception>
#include <utility>

namespace voxtral {

namespace {
using Clock = std::chrono::steady_clock;
constexpr double kSampleRate = 16000;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
// A live client may also send audio faster than real time (a file through the realtime
// protocol): it gets at most this much per turn, so live jobs share the engine too.
constexpr double kLiveSliceSeconds = 1.0;
// Uploads that may take in a slice (their mel runs on this thread) in one tick: a few when
// only uploads run, one while live streams wait on the tick's step.
constexpr int kUploadIntakesPerTick = 4;
constexpr int kUploadIntakesPerLiveTick = 1;
// Positions of uploads one encoder pass takes while live streams wait on it (a chunk: the
// pass stays a few milliseconds on a GPU); without live streams, every ready upload.
constexpr int kUploadPositionsPerLivePass = 64;
}  // namespace

Job::Job(Scheduler& scheduler, JobKind kind, StreamOptions options, JobCallbacks callbacks)
    : scheduler_(scheduler), kind_(kind), options_(std::move(options)), callbacks_(std::move(callbacks)) {}

void Job::push(Input input) {
  {
    std::lock_guard lock(mutex_);
    if (finish_ || cancelled_) return;
    queued_samples_ += static_cast<std::int64_t>(input.samples.size());
    input_.push_back(std::move(input));
    served_ = false;
  }
  scheduler_.wake();
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

void Job::wait_until_served() {
  std::unique_lock lock(mutex_);
  served_changed_.wait(lock, [&] { return served_ || cancelled_; });
}

bool Job::wait_until_served_for(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return served_changed_.wait_for(lock, timeout, [&] { return served_ || cancelled_; });
}

void Job::finish() {
  {
    std::lock_guard lock(mutex_);
    if (!finish_) served_ = false;
    finish_ = true;
  }
  scheduler_.wake();
}

void Job::cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_ = true;
    input_.clear();
    queued_samples_ = 0;
  }
  served_changed_.notify_all();
  scheduler_.wake();
}

Scheduler::Scheduler(Model& model, SchedulerOptions options) : model_(model), options_(options) {
  worker_ = std::thread([this] { run(); });
}

Scheduler::~Scheduler() { halt(); }

void Scheduler::halt() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  std::call_once(joined_, [this] { worker_.join(); });
}

std::shared_ptr<Job> Scheduler::start(JobKind kind, StreamOptions options, JobCallbacks callbacks) {
  std::lock_guard lock(mutex_);
  if (stop_ || static_cast<int>(jobs_.size()) >= max_jobs()) return nullptr;
  std::shared_ptr<Job> job(new Job(*this, kind, std::move(options), std::move(callbacks)));
  jobs_.push_back(job);
  counters_.active_jobs = static_cast<int>(jobs_.size());
  return job;
}

int Scheduler::max_jobs() const {
  // Every job may hold a decoder sequence at once (one stream at a time per job).
  const int streams = model_.decoder().options().max_sequences;
  return options_.max_jobs > 0 ? std::min(options_.max_jobs, streams) : streams;
}

SchedulerCounters Scheduler::counters() const {
  SchedulerCounters c;
  {
    std::lock_guard lock(mutex_);
    c = counters_;
  }
  c.max_jobs = max_jobs();
  c.kv_pages_in_use = model_.decoder().pages_in_use();
  c.kv_pages = model_.decoder().total_pages();
  return c;
}

void Scheduler::cancel_all() {
  std::unique_lock lock(mutex_);
  for (auto& job : jobs_) {
    {
      std::lock_guard job_lock(job->mutex_);
      job->cancelled_ = true;
      job->input_.clear();
      job->queued_samples_ = 0;
    }
    job->served_changed_.notify_all();
  }
  pending_ = true;
  wake_.notify_all();
  idle_.wait(lock, [&] { return stop_ || (!serving_ && !pending_); });
}

void Scheduler::wake() {
  {
    std::lock_guard lock(mutex_);
    pending_ = true;
  }
  wake_.notify_all();
}

bool Scheduler::has_input(const Job& job) const {
  return !job.input_.empty() || job.finish_ || job.cancelled_;
}

void Scheduler::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || pending_; });
      if (stop_) break;
      pending_ = false;
      serving_ = true;
    }
    // Ticks until no job has anything left to do; then sleep until a front end wakes us.
    for (bool worked = true; worked;) {
      const auto tick_start = Clock::now();
      std::vector<Job*> jobs;
      std::vector<std::shared_ptr<Job>> held;
      {
        std::lock_guard lock(mutex_);
        held = jobs_;
      }
      for (auto& job : held) jobs.push_back(job.get());
      std::vector<Job*> over;  // failed, cancelled or done: out of this tick, then out of jobs_
      const auto is_over = [&](const Job* j) { return std::find(over.begin(), over.end(), j) != over.end(); };
      worked = false;
      // Every live job's input, and at most a few uploads' next slices (their encoder runs
      // are long): a tick stays short for the live streams waiting on its step. The uploads
      // served first rotate from tick to tick.
      int upload_intakes = 0;
      const bool live = std::any_of(jobs.begin(), jobs.end(), [](const Job* j) { return j->kind_ == JobKind::Live; });
      const int max_upload_intakes = live ? kUploadIntakesPerLiveTick : kUploadIntakesPerTick;
      const std::size_t first_upload = jobs.empty() ? 0 : upload_turn_++ % jobs.size();
      for (std::size_t k = 0; k < jobs.size(); ++k) {
        Job* job = jobs[(first_upload + k) % jobs.size()];
        if (job->kind_ == JobKind::Batch && upload_intakes >= max_upload_intakes) continue;
        const Intake result = intake(*job);
        if (result == Intake::Over) over.push_back(job);
        if (result != Intake::Nothing) worked = true;
        if (result == Intake::Took && job->kind_ == JobKind::Batch) ++upload_intakes;
      }
      std::erase_if(jobs, is_over);
      if (encode(jobs, over)) worked = true;
      std::erase_if(jobs, is_over);
      if (step(jobs, over)) worked = true;
      for (Job* job : jobs) {
        if (is_over(job)) continue;
        if (!deliver(*job)) over.push_back(job);
        note_if_served(*job);
      }
      for (Job* job : over) note_if_served(*job);
      std::lock_guard lock(mutex_);
      if (worked) {
        ++counters_.ticks;
        counters_.tick_ms += ms_since(tick_start);
      }
      if (!over.empty()) {
        std::erase_if(jobs_, [&](const auto& j) { return is_over(j.get()); });
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

Scheduler::Intake Scheduler::intake(Job& job) {
  {
    std::lock_guard lock(job.mutex_);
    if (job.cancelled_) {
      job.stream_.reset();
      return Intake::Over;
    }
  }
  // A stream ending a segment or an utterance takes nothing until its last steps ran; an
  // upload takes its next slice only once it has decoded the last (memory stays bounded
  // and the encoder runs on whole slices).
  if (job.finishing_ || (job.stream_ && job.stream_->ending())) return Intake::Nothing;
  if (job.kind_ == JobKind::Batch && job.stream_ && job.stream_->step_ready()) return Intake::Nothing;
  const auto slice = static_cast<std::int64_t>((job.kind_ == JobKind::Batch ? options_.batch_slice_seconds
                                                                             : kLiveSliceSeconds) * kSampleRate);
  std::vector<float> samples;
  Job::Mark mark = Job::Mark::None;
  bool do_finish = false;
  {
    std::lock_guard lock(job.mutex_);
    while (!job.input_.empty() && static_cast<std::int64_t>(samples.size()) < slice) {
      auto& front = job.input_.front();
      if (front.mark != Job::Mark::None) {  // the audio before it, then the mark
        mark = front.mark;
        job.input_.pop_front();
        break;
      }
      const auto want = static_cast<std::size_t>(slice) - samples.size();
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
  if (samples.empty() && mark == Job::Mark::None && !do_finish) return Intake::Nothing;
  try {
    if (!job.stream_) job.stream_ = std::make_unique<Stream>(model_, job.options_, Decoding::Scheduled);
    Stream& stream = *job.stream_;
    const std::size_t taken = samples.empty() ? 0 : stream.feed_some(samples);
    if (taken < samples.size()) {
      // A segment must end first (continuous mode at the length limit): the rest, and the
      // mark after it, wait at the front of the queue.
      std::lock_guard lock(job.mutex_);
      if (mark != Job::Mark::None) job.input_.push_front({{}, mark});
      std::vector<float> rest(samples.begin() + static_cast<std::ptrdiff_t>(taken), samples.end());
      job.queued_samples_ += static_cast<std::int64_t>(rest.size());
      job.input_.push_front({std::move(rest), Job::Mark::None});
      mark = Job::Mark::None;
      do_finish = false;
    }
    {
      std::lock_guard lock(mutex_);
      counters_.audio_seconds += static_cast<double>(taken) / kSampleRate;
    }
    if (mark == Job::Mark::Flush) stream.flush();
    if (do_finish || mark == Job::Mark::EndUtterance) {
      stream.finish();
      job.finishing_ = true;
      job.last_utterance_ = do_finish;
    }
  } catch (const std::exception& e) {
    fail_job(job, e);
    return Intake::Over;
  }
  return Intake::Took;
}

bool Scheduler::encode(std::vector<Job*>& jobs, std::vector<Job*>& over) {
  std::vector<EncodeRequest> requests;
  std::vector<Job*> encoding;
  bool live_waiting = false;
  int upload_positions = 0;
  const std::size_t first = jobs.empty() ? 0 : encode_turn_++ % jobs.size();
  for (const JobKind kind : {JobKind::Live, JobKind::Batch}) {
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      Job* job = jobs[(first + k) % jobs.size()];
      if (job->kind_ == JobKind::Live && job->stream_) live_waiting = true;
      if (job->kind_ != kind || !job->stream_) continue;
      // Uploads fill the pass up to a chunk while live streams wait on it.
      if (kind == JobKind::Batch && live_waiting && upload_positions >= kUploadPositionsPerLivePass) continue;
      try {
        if (!job->stream_->encode_ready()) continue;
      } catch (const std::exception& e) {
        fail_job(*job, e);
        over.push_back(job);
        continue;
      }
      requests.push_back(job->stream_->encode_request());
      encoding.push_back(job);
      if (kind == JobKind::Batch) upload_positions += requests.back().n_positions;
    }
  }
  if (requests.empty()) return false;
  const auto t = Clock::now();
  try {
    model_.encoder().encode(requests);
  } catch (const std::exception& e) {
    for (Job* job : encoding) {
      fail_job(*job, e);
      over.push_back(job);
    }
    return true;
  }
  const double encoder_ms = ms_since(t);
  for (Job* job : encoding) {
    try {
      job->stream_->take_encoded(encoder_ms);
    } catch (const std::exception& e) {
      fail_job(*job, e);
      over.push_back(job);
    }
  }
  std::lock_guard lock(mutex_);
  ++counters_.encoder_passes;
  counters_.encoded_streams += static_cast<std::int64_t>(requests.size());
  counters_.encoder_ms += encoder_ms;
  return true;
}

bool Scheduler::step(std::vector<Job*>& jobs, std::vector<Job*>& over) {
  DecoderPool& decoder = model_.decoder();
  const int max_batch = decoder.options().max_batch;
  rows_.clear();
  std::vector<Job*> stepped;
  const auto now = Clock::now();
  // Live streams first; uploads fill the rest of the batch: one row each.
  int ready = 0;
  for (const JobKind kind : {JobKind::Live, JobKind::Batch}) {
    for (Job* job : jobs) {
      if (job->kind_ != kind || !job->stream_ || !job->stream_->step_ready()) continue;
      if (!job->was_ready_) {
        job->was_ready_ = true;
        job->ready_since_ = now;
      }
      if (ready == max_batch) continue;
      ++ready;
      stepped.push_back(job);
    }
  }
  // Speculative rows (runtime/speculation.h) in the same order, a stream's rows together:
  // a stream alone may take what its policy finds worth it (its timing is its own); among
  // several, only the rows that pad the step up to its bucket anyway, which cost nothing.
  int spare = ready == 1 ? max_batch - 1
                         : std::min<int>(static_cast<int>(std::bit_ceil(static_cast<unsigned>(ready))), max_batch) - ready;
  std::vector<Job*> kept;
  first_row_.clear();
  for (Job* job : stepped) {
    std::array<DecodeRow, kMaxSpeculativeTokens + 1> group;
    const auto width = static_cast<std::size_t>(std::min(spare, kMaxSpeculativeTokens) + 1);
    const int n = job->stream_->next_steps(std::span(group).first(width));
    if (n <= 0) continue;  // not ready after all: nothing to step
    try {
      // A full cache fails this job only.
      decoder.reserve(group[0].sequence, group[0].position, group[static_cast<std::size_t>(n - 1)].position);
    } catch (const std::exception& e) {
      fail_job(*job, e);
      over.push_back(job);
      continue;
    }
    spare -= n - 1;
    first_row_.push_back(rows_.size());
    rows_.insert(rows_.end(), group.begin(), group.begin() + n);
    kept.push_back(job);
  }
  stepped.swap(kept);
  if (rows_.empty()) return false;
  next_.resize(rows_.size());
  const auto t = Clock::now();
  try {
    decoder.step(rows_, next_);
  } catch (const std::exception& e) {
    for (Job* job : stepped) {
      fail_job(*job, e);
      over.push_back(job);
    }
    return true;
  }
  const double step_ms = ms_since(t);
  double queue_ms = 0, max_queue_ms = 0;
  std::int64_t positions = 0;
  const Tensor logits = decoder.step_logits(static_cast<std::int64_t>(rows_.size()));
  for (std::size_t i = 0; i < stepped.size(); ++i) {
    Job& job = *stepped[i];
    const double waited = std::chrono::duration<double, std::milli>(t - job.ready_since_).count();
    queue_ms += waited;
    max_queue_ms = std::max(max_queue_ms, waited);
    const std::size_t first = first_row_[i];
    const std::size_t end = i + 1 < stepped.size() ? first_row_[i + 1] : rows_.size();
    try {
      positions += job.stream_->take_steps(std::span(next_).subspan(first, end - first),
                              logits.row_range(static_cast<std::int64_t>(first), static_cast<std::int64_t>(end - first)),
                              step_ms, stepped.size() == 1);
    } catch (const std::exception& e) {
      fail_job(job, e);
      over.push_back(&job);
      continue;
    }
    job.was_ready_ = job.stream_->step_ready();
    job.ready_since_ = Clock::now();
  }
  std::lock_guard lock(mutex_);
  ++counters_.decode_steps;
  counters_.decoded_rows += static_cast<std::int64_t>(rows_.size());
  counters_.stepped_streams += static_cast<std::int64_t>(stepped.size());
  counters_.decoded_positions += positions;
  counters_.decode_ms += step_ms;
  counters_.queue_ms += queue_ms;
  counters_.max_queue_ms = std::max(counters_.max_queue_ms, max_queue_ms);
  counters_.last_batch = static_cast<int>(stepped.size());
  return true;
}

bool Scheduler::deliver(Job& job) {
  if (!job.stream_) return true;
  auto pieces = job.stream_->take_pieces();
  if (!pieces.empty() && job.callbacks_.on_pieces) job.callbacks_.on_pieces(std::move(pieces));
  if (!job.finishing_ || !job.stream_->finished()) return true;
  const StreamStats stats = job.stream_->stats();
  job.stream_.reset();  // its decoder sequence is free before anyone hears it is done
  if (job.callbacks_.on_done) job.callbacks_.on_done(stats);
  job.finishing_ = false;
  job.was_ready_ = false;
  return !job.last_utterance_;
}

void Scheduler::note_if_served(Job& job) {
  const bool busy = job.stream_ && (job.finishing_ || job.stream_->step_ready() || job.stream_->ending() ||
                                    job.stream_->encode_ready());
  {
    std::lock_guard lock(job.mutex_);
    if (busy || !job.input_.empty() || job.served_) return;
    if (job.finish_ && job.stream_) return;  // its on_done is still to come
    job.served_ = true;
  }
  job.served_changed_.notify_all();
}

void Scheduler::fail_job(Job& job, const std::exception& error) {
  const std::string message = error.what();
  const bool busy = dynamic_cast<const BusyError*>(&error) != nullptr;
  {
    std::lock_guard lock(mutex_);
    ++counters_.failures;
  }
  job.stream_.reset();
  job.finishing_ = false;
  // The error first: a front end woken by the cancellation (wait_until_served) must find it.
  if (busy && job.callbacks_.on_busy) {
    job.callbacks_.on_busy(message);
  } else if (job.callbacks_.on_error) {
    job.callbacks_.on_error(message);
  }
  {
    std::lock_guard lock(job.mutex_);  // the job is gone: later input is refused, not held
    job.cancelled_ = true;
    job.input_.clear();
    job.queued_samples_ = 0;
  }
  job.served_changed_.notify_all();
}

}  // namespace voxtral
