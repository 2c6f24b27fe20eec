// The server's engine: one thread runs every transcription on the shared model, in turns.
//
// A backend is not safe to drive from several threads at once, and on a GPU one thread
// keeps it busy anyway, so connections never touch the model: they hand audio to a Job and
// get text back through callbacks (called on the engine thread). Each turn serves every
// live job all of its pending audio (it arrives at real-time pace, so that is little work),
// then one bounded slice of one batch job, rotating between batch jobs: a long upload never
// holds live streams back by more than one slice, and uploads share the rest fairly.
#pragma once

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
#include "model/stream.h"

namespace voxtral {

struct JobCallbacks {
  std::function<void(std::vector<TextPiece>)> on_pieces;  // new text, in order
  std::function<void(const StreamStats&)> on_done;        // after finish(), once everything came out
  std::function<void(const std::string&)> on_error;       // the job failed and is gone
};

enum class JobKind { Live, Batch };

class Engine;

// A connection's handle on its transcription. Thread-safe; callbacks stop after cancel().
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
  // Samples the job holds: appended, and not yet all served (an append is released once
  // the engine has served all of it). What a connection's memory accounting follows.
  std::int64_t queued_samples() const;

 private:
  friend class Engine;
  Job(Engine& engine, JobKind kind, StreamOptions options, JobCallbacks callbacks);

  Engine& engine_;
  const JobKind kind_;
  const StreamOptions options_;
  JobCallbacks callbacks_;  // used on the engine thread only
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
  std::unique_ptr<Stream> stream_;  // engine thread only
};

struct EngineOptions {
  int max_jobs = 16;                 // concurrent jobs; start() refuses more
  double batch_slice_seconds = 2.0;  // audio a batch job may process per turn
};

struct EngineCounters {
  int active_jobs = 0;
  double audio_seconds = 0;    // audio processed, all jobs
  std::int64_t decode_steps = 0;
  double decode_ms = 0;        // total time in decode steps
  std::int64_t failures = 0;
};

class Engine {
 public:
  Engine(Model& model, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // A new job, or nullptr when max_jobs are running.
  std::shared_ptr<Job> start(JobKind kind, StreamOptions options, JobCallbacks callbacks);
  EngineCounters counters() const;
  // Cancels every job and returns once the engine thread has stopped serving them: no
  // callback runs after this. The server calls it before tearing down its connections.
  void cancel_all();
  Model& model() { return model_; }
  const EngineOptions& options() const { return options_; }

 private:
  friend class Job;
  void wake();
  void run();
  bool has_work(const Job& job) const;  // job's mutex held
  // Serves one job up to `max_samples` of audio and the mark after it; false when it is over.
  bool serve(Job& job, std::int64_t max_samples);
  void deliver(Job& job);

  Model& model_;
  const EngineOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  bool pending_ = false;  // something changed since the worker last looked
  bool serving_ = false;  // the worker is in its turns (not asleep)
  std::condition_variable idle_;
  std::vector<std::shared_ptr<Job>> jobs_;
  std::size_t next_batch_ = 0;
  EngineCounters counters_;
  std::thread worker_;
};

}  // namespace voxtral
