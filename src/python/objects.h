// The Python module's Model, Stream and Transcript, over runtime/scheduled_model.h: every
// stream and transcription of a model is a job of its one scheduler, so Python threads that
// transcribe or feed streams at once decode in one batched step. The GIL is released while the
// engine works; a wait checks for Ctrl-C every 100 ms.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <pybind11/pybind11.h>

#include "core/audio.h"
#include "runtime/scheduled_model.h"
#include "transcript/segments.h"

namespace voxtral::python {

struct Transcript {
  std::string text;  // the whole text, without the space the model writes first
  std::vector<Segment> segments;
  std::vector<Word> words;
  double duration = 0;  // seconds of audio
};

class PyStream;

class PyModel {
 public:
  // The options are ModelOptions' fields, checked by the engine's validate() (ValueError).
  PyModel(const pybind11::handle& path, std::string backend, std::string weights, std::string precision, int threads,
          std::string kv_cache, int max_streams, std::int64_t kv_cache_mb);
  ~PyModel();

  Transcript transcribe(const pybind11::handle& audio, std::optional<int> sample_rate, int delay_ms, bool continuous);
  std::unique_ptr<PyStream> stream(int sample_rate, int delay_ms, double processing_interval_s, bool continuous);
  // Lets the model go once its open streams are closed; later calls raise ValueError.
  void close();

  int sample_rate() const { return sample_rate_; }
  const std::string& path() const { return path_; }
  const std::string& backend() const { return backend_; }
  const std::string& backend_description() const { return backend_description_; }
  int max_streams() const { return max_streams_; }
  bool closed() const;

 private:
  std::shared_ptr<ScheduledModel> engine() const;  // ValueError once closed; voxtral.Error after fork()

  const pid_t process_;  // the one its scheduler thread runs in
  std::string path_, backend_, backend_description_;
  int sample_rate_ = 0, max_streams_ = 0;
  mutable std::mutex mutex_;
  std::shared_ptr<ScheduledModel> engine_;  // guarded by mutex_; null once closed
};

class PyStream {
 public:
  PyStream(std::shared_ptr<ScheduledModel> engine, int sample_rate, const StreamOptions& options);
  ~PyStream();

  void feed(const pybind11::handle& samples);
  void flush();
  void finish();
  void close();  // drops the stream: its text still to come is lost
  // The next piece with text produced so far, without waiting.
  std::optional<TextPiece> next();
  bool finished() const;
  bool closed() const;
  int sample_rate() const { return sample_rate_; }

 private:
  std::shared_ptr<ScheduledStream> stream() const;  // ValueError once closed; voxtral.Error after fork()

  // feed, flush or finish holding call_mutex_: the thread and the call's name, so that the
  // same thread calling again (a signal handler run in the call's wait) is refused rather
  // than waiting on itself.
  class Turn {
   public:
    Turn(PyStream& stream, const char* call);
    ~Turn();
    Turn(const Turn&) = delete;
    Turn& operator=(const Turn&) = delete;

   private:
    PyStream& stream_;
    std::unique_lock<std::timed_mutex> lock_;
  };

  const pid_t process_;
  std::shared_ptr<ScheduledModel> engine_;  // first: the stream goes before its model
  const int sample_rate_;
  std::timed_mutex call_mutex_;  // feed, flush and finish in their order
  std::atomic<std::thread::id> caller_{};
  std::atomic<const char*> call_{""};
  std::unique_ptr<Resampler> resampler_;    // guarded by call_mutex_; null at the model's rate
  mutable std::mutex mutex_;
  std::shared_ptr<ScheduledStream> stream_;  // guarded by mutex_; null once closed
  std::deque<TextPiece> pending_;            // guarded by mutex_
};

}  // namespace voxtral::python
