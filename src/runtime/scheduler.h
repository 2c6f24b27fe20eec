// The scheduler: one thread runs every stream of a model, and decodes them together.
//
// A backend is not safe to drive from several threads at once, and a decode step costs
// about the same for one stream as for a hundred (it is bound by reading the weights), so
// front ends never touch the model: they hand audio to a Job and get text back through
// callbacks (called on the scheduler thread). Each tick the scheduler
//   1. takes new input: every live job's pending audio (it arrives at real-time pace), and
//      for an upload (a batch job) its next slice once its stream has decoded what it had;
//      each stream runs its front end (mel) on it, then ONE encoder pass runs the new frames
//      of every stream (the encoder's weights read once, not once per stream);
//   2. collects one row from every stream with a position ready to decode, live streams
//      first, uploads filling the rest of the batch (DecoderPoolOptions::max_batch);
//   3. runs them as one batched decoder step and hands each stream its token.
// So a stream never waits more than one step because of others, and N uploads decode at
// about the cost of one. The server, the C API and the CLI's many-file mode all use it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "runtime/stream.h"

namespace voxtral {

struct JobCallbacks {
  std::function<void(std::vector<TextPiece>)> on_pieces;  // new text, in order
  std::function<void(const StreamStats&)> on_done;        // after finish(), once everything came out
  std::function<void(const std::string&)> on_error;       // the job failed and is gone
  // The job failed for lack of room (stream slots or K/V pages, BusyError) and is gone: the
  // client may try again later. Unset: on_error is called instead.
  std::function<void(const std::string&)> on_busy;
};

enum class JobKind { Live, Batch };

class Scheduler;

// A front end's handle on its transcription. Thread-safe; callbacks stop after cancel().
// append(), flush() and end_utterance() are served in the order they were called.
class Job {
 public:
  void append(std::vector<float> samples);  // 16 kHz mono
  // Ends the current segment after the audio appended so far (a pause): its pending words
  // come out without waiting for more audio. Nothing happens when no audio came since.
  void flush();
  // The audio appended so far is one utterance: its words come out, then on_done; audio
  // appended later is a new utterance with a fresh stream. The job stays (a realtime
  // session keeps its slot between utterances).
  void end_utterance();
  void finish();  // end of input: the last on_done, then the job is over
  void cancel();  // the client went away: drop everything
  // Waits until the scheduler has served everything appended so far: taken in, and decoded
  // as far as the audio allows (for a synchronous API: after it, the pieces of that audio
  // are out). Returns at once after cancel() or a failure.
  void wait_until_served();
  // As wait_until_served(), for at most `timeout`: whether everything was served by then.
  bool wait_until_served_for(std::chrono::milliseconds timeout);
  // Samples the job holds: appended, and not yet all served (an append is released once
  // the scheduler has taken all of it). What a connection's memory accounting follows.
  std::int64_t queued_samples() const;

 private:
  friend class Scheduler;
  Job(Scheduler& scheduler, JobKind kind, StreamOptions options, JobCallbacks callbacks);

  Scheduler& scheduler_;
  const JobKind kind_;
  const StreamOptions options_;
  JobCallbacks callbacks_;  // used on the scheduler thread only
  enum class Mark { None, Flush, EndUtterance };
  struct Input {
    std::vector<float> samples;  // empty for a mark
    Mark mark = Mark::None;
    std::size_t taken = 0;       // samples already served (a long append is served in slices)
  };
  void push(Input input);

  mutable std::mutex mutex_;
  std::deque<Input> input_;
  std::int64_t queued_samples_ = 0;
  bool finish_ = false, cancelled_ = false;
  bool served_ = true;  // nothing appended since the scheduler last found the job idle
  std::condition_variable served_changed_;
  // Scheduler thread only.
  std::unique_ptr<Stream> stream_;
  bool finishing_ = false;  // the stream was told to finish (end of utterance or of input)
  bool last_utterance_ = false;
  std::chrono::steady_clock::time_point ready_since_;  // when its next step became ready
  bool was_ready_ = false;
};

struct SchedulerOptions {
  int max_jobs = 0;                  // concurrent jobs, at most the model's streams; 0: the model's streams
  double batch_slice_seconds = 8.0;  // audio an upload takes in per turn, once it has decoded the last
};

struct SchedulerCounters {
  int active_jobs = 0;
  double audio_seconds = 0;      // audio taken in, all jobs
  std::int64_t decode_steps = 0;  // batched steps
  std::int64_t decoded_rows = 0;  // rows they computed, speculative ones included (the mean batch is rows / steps)
  std::int64_t stepped_streams = 0;     // streams they stepped (over the steps: streams per step)
  std::int64_t decoded_positions = 0;   // stream positions decoded: tokens, accepted speculative ones included
  double decode_ms = 0;          // total time in decode steps
  double tick_ms = 0;            // total time in ticks with work (input, encoder, steps)
  std::int64_t ticks = 0;
  double queue_ms = 0;           // total time rows waited between becoming ready and being stepped
  double max_queue_ms = 0;       // the longest such wait
  int last_batch = 0;            // streams in the latest step
  std::int64_t encoder_passes = 0;   // batched encoder runs
  std::int64_t encoded_streams = 0;  // stream requests they served (over the passes: the mean batch)
  double encoder_ms = 0;             // total time in encoder passes
  std::int64_t failures = 0;
  int max_jobs = 0;              // the limit start() applies
  std::int64_t kv_pages_in_use = 0, kv_pages = 0;  // the decoder's K/V cache
};

class Scheduler {
 public:
  Scheduler(Model& model, SchedulerOptions options);
  ~Scheduler();
  // Stops the worker after its current step and waits for it; later jobs are refused and the
  // waiting ones are never served. For a process's exit with callers still waiting (their
  // threads never return): no engine work may run while exit() tears the libraries down.
  void halt();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // A new job, or nullptr when max_jobs are running.
  std::shared_ptr<Job> start(JobKind kind, StreamOptions options, JobCallbacks callbacks);
  SchedulerCounters counters() const;
  // Cancels every job and returns once the scheduler thread has stopped serving them: no
  // callback runs after this. The server calls it before tearing down its connections.
  void cancel_all();
  Model& model() { return model_; }
  const SchedulerOptions& options() const { return options_; }
  // Jobs start() accepts at once: max_jobs, at most the model's decoder sequences.
  int max_jobs() const;

 private:
  friend class Job;
  void wake();
  void run();
  bool has_input(const Job& job) const;  // job's mutex held
  enum class Intake { Nothing, Took, Over };
  // Takes the job's input into its stream (front end and encoder run on it).
  Intake intake(Job& job);
  // One encoder pass over every stream with frames ready; false when none had any.
  bool encode(std::vector<Job*>& jobs, std::vector<Job*>& over);
  // One batched step over every stream with a position ready; false when none had one.
  bool step(std::vector<Job*>& jobs, std::vector<Job*>& over);
  // Hands out new pieces, and on_done for a stream that finished; false when the job is over.
  bool deliver(Job& job);
  void fail_job(Job& job, const std::exception& error);
  // Marks the job served when it has no input and its stream can do nothing more now.
  void note_if_served(Job& job);

  Model& model_;
  const SchedulerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool pending_ = false;  // something changed since the worker last looked
  bool serving_ = false;  // the worker is in its turns (not asleep)
  std::condition_variable idle_;
  std::vector<std::shared_ptr<Job>> jobs_;
  SchedulerCounters counters_;
  std::vector<DecodeRow> rows_;  // scheduler thread: the step being assembled
  std::size_t upload_turn_ = 0;  // scheduler thread: rotates which uploads take input first
  std::size_t encode_turn_ = 0;  // ... and which are encoded first
  std::vector<int> next_;
  std::vector<std::size_t> first_row_;  // scheduler thread: each stepped job's first row in rows_
  std::thread worker_;
  std::once_flag joined_;
};

}  // namespace voxtral
