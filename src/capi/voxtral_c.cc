// The C API of include/voxtral.h over the C++ engine.
#include "voxtral.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/audio.h"
#include "core/error.h"
#include "model/model.h"
#include "model/schedule.h"
#include "runtime/scheduler.h"
#include "runtime/stream.h"

// Every stream of a model is a job of the model's scheduler: its thread alone drives the
// backend, and the steps of streams fed from many threads at once are batched together.
struct voxtral_model {
  std::unique_ptr<voxtral::Model> model;
  std::unique_ptr<voxtral::Scheduler> scheduler;  // declared after the model: stops before it goes
  std::mutex mutex;
  int open_streams = 0;  // guarded by mutex: the model may not be freed under them
  // Streams whose job is in the scheduler (open, not finished or failed); guarded by mutex.
  // The scheduler counts a job that ended until the end of its turn, a moment later.
  int working_streams = 0;
  std::string error;     // guarded by mutex
};

// What the scheduler thread hands a stream. Shared with the job's callbacks, which may still
// run once after the stream's handle is freed (a cancelled job stops at its next turn).
struct voxtral_inbox {
  std::mutex mutex;
  std::vector<voxtral::TextPiece> pieces;
  std::string failure;  // the job failed (e.g. its K/V cache is full) and is gone
};

struct voxtral_stream {
  voxtral_model* owner = nullptr;
  std::shared_ptr<voxtral::Job> job;
  std::shared_ptr<voxtral_inbox> inbox;
  std::mutex mutex;       // one call on the stream at a time
  bool finished = false;  // guarded by mutex
  bool working = true;    // guarded by mutex: counted in the owner's working_streams
  std::vector<voxtral::TextPiece> pieces;  // what the last read returned
  std::vector<voxtral_piece> views;
  std::vector<std::vector<voxtral_alternative>> alternatives;
  std::string error;
};

namespace {

void write_error(char* buffer, std::size_t size, const std::string& message) {
  if (buffer == nullptr || size == 0) return;
  std::strncpy(buffer, message.c_str(), size - 1);
  buffer[size - 1] = '\0';
}

// Runs `fn` on a stream under its lock; an exception becomes -1 and the stream's error. A
// NULL stream is -1 (there is nowhere to put a message).
template <typename Fn>
int guarded(voxtral_stream* s, Fn&& fn) {
  if (s == nullptr) return -1;
  std::lock_guard lock(s->mutex);
  try {
    fn();
    s->error.clear();
    return 0;
  } catch (const std::exception& e) {
    s->error = e.what();
    return -1;
  }
}

// The stream's job has ended (finished, failed, or cancelled): its place is about to be free.
void stop_working(voxtral_stream* s) {
  if (!s->working) return;
  s->working = false;
  std::lock_guard lock(s->owner->mutex);
  --s->owner->working_streams;
}

// Waits until the scheduler has served everything handed to the job (the text of that audio
// is then in the inbox); a failure of the job is the call's.
void wait_served(voxtral_stream* s) {
  s->job->wait_until_served();
  std::string failure;
  {
    std::lock_guard lock(s->inbox->mutex);
    failure = s->inbox->failure;
  }
  if (failure.empty()) return;
  stop_working(s);
  throw voxtral::Error(failure);
}

// A new job, waiting out jobs that ended but are still counted; nullptr when every place is
// taken by a working stream.
std::shared_ptr<voxtral::Job> start_job(voxtral_model* m, const voxtral::StreamOptions& options,
                                        voxtral::JobCallbacks callbacks) {
  for (int tries = 0;; ++tries) {
    // Counted before the attempt: a job the scheduler drops in between then still gets its
    // retry instead of a refusal.
    int working = 0;
    {
      std::lock_guard lock(m->mutex);
      working = m->working_streams;
    }
    const int active = m->scheduler->counters().active_jobs;
    if (auto job = m->scheduler->start(voxtral::JobKind::Live, options, callbacks)) return job;
    // (A turn ends within a decoder step; ten seconds covers the slowest.)
    if (active <= working || tries == 10000) return nullptr;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// Checked here, before the audio goes to the scheduler thread: a refused call takes nothing
// and leaves the stream usable (as Stream::feed_some does).
void feed(voxtral_stream* s, std::vector<float> samples) {
  const auto bad = std::find_if(samples.begin(), samples.end(), [](float v) { return !std::isfinite(v); });
  if (bad != samples.end()) {
    voxtral::fail("audio", voxtral::cat("sample ", bad - samples.begin(), " of ", samples.size(), " is ",
                                        std::isnan(*bad) ? "NaN" : "infinite", "; nothing of this call was taken"));
  }
  if (s->finished) voxtral::fail("stream", "audio fed after finish()");
  if (!samples.empty()) s->job->append(std::move(samples));
  wait_served(s);
}

}  // namespace

extern "C" {

const char* voxtral_version(void) { return "0.1.0"; }

void voxtral_model_options_init(voxtral_model_options* options) {
  if (options != nullptr) *options = voxtral_model_options{"auto", 0, "exact", nullptr, 0, 0, nullptr};
}

voxtral_model* voxtral_model_load(const char* model_dir, const voxtral_model_options* options, char* error,
                                  size_t error_size) {
  try {
    if (model_dir == nullptr) throw voxtral::Error("voxtral_model_load: model_dir is NULL");
    voxtral::ModelOptions mo;
    mo.backend = "auto";
    mo.quiet = true;
    mo.naming = voxtral::OptionNaming::CStruct;
    if (options != nullptr) {
      if (options->backend != nullptr) mo.backend = options->backend;
      mo.threads = options->threads;
      if (options->precision != nullptr) mo.precision = options->precision;
      if (options->kv_cache != nullptr) mo.kv_cache = options->kv_cache;
      mo.max_streams = options->max_streams;
      mo.kv_cache_mb = options->kv_cache_mb;
      if (options->weights != nullptr) mo.weights = options->weights;
    }
    auto m = std::make_unique<voxtral_model>();
    m->model = voxtral::Model::load(model_dir, mo);
    voxtral::SchedulerOptions so;
    so.max_jobs = voxtral::kMaxStreams;  // the model's streams are the limit
    m->scheduler = std::make_unique<voxtral::Scheduler>(*m->model, so);
    return m.release();
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return nullptr;
  }
}

int voxtral_model_free(voxtral_model* model) {
  if (model == nullptr) return 0;
  {
    std::lock_guard lock(model->mutex);
    if (model->open_streams > 0) {
      model->error = voxtral::cat("voxtral_model_free: ", model->open_streams,
                                  " stream(s) of this model are still open; free them first (nothing was freed)");
      return -1;
    }
  }
  delete model;
  return 0;
}

int voxtral_model_sample_rate(const voxtral_model* model) {
  return model != nullptr ? model->model->config().audio.sampling_rate : 0;
}

const char* voxtral_model_error(const voxtral_model* model) {
  if (model == nullptr) return "";
  std::lock_guard lock(const_cast<voxtral_model*>(model)->mutex);
  return model->error.c_str();
}

void voxtral_stream_options_init(voxtral_stream_options* options) {
  if (options != nullptr) *options = voxtral_stream_options{0, 0.0, 0, 0, 0.1};
}

voxtral_stream* voxtral_stream_create(voxtral_model* model, const voxtral_stream_options* options, char* error,
                                      size_t error_size) {
  try {
    if (model == nullptr) throw voxtral::Error("voxtral_stream_create: model is NULL");
    voxtral::StreamOptions so;
    if (options != nullptr) {
      so.delay_ms = options->delay_ms;
      so.processing_interval_s = options->processing_interval_s;
      so.continuous = options->continuous != 0;
      so.alternatives = options->alternatives;
      so.alternative_cutoff = options->alternative_cutoff;
    }
    // Checked now: the job's stream is made on the scheduler thread at its first audio.
    voxtral::validate(so);
    if (so.delay_ms > 0) voxtral::delay_positions(so.delay_ms, model->model->config());
    auto s = std::make_unique<voxtral_stream>();
    s->owner = model;
    s->inbox = std::make_shared<voxtral_inbox>();
    voxtral::JobCallbacks callbacks;  // on the scheduler thread
    callbacks.on_pieces = [inbox = s->inbox](std::vector<voxtral::TextPiece> pieces) {
      std::lock_guard lock(inbox->mutex);
      inbox->pieces.insert(inbox->pieces.end(), std::make_move_iterator(pieces.begin()),
                           std::make_move_iterator(pieces.end()));
    };
    callbacks.on_error = [inbox = s->inbox](const std::string& message) {
      std::lock_guard lock(inbox->mutex);
      inbox->failure = message;
    };
    callbacks.on_busy = [inbox = s->inbox](const std::string& message) {  // the K/V cache is full
      std::lock_guard lock(inbox->mutex);
      inbox->failure = message + "; load the model with a larger voxtral_model_options.kv_cache_mb (or fewer max_streams)";
    };
    s->job = start_job(model, so, std::move(callbacks));
    if (!s->job) {
      throw voxtral::Error(voxtral::cat("voxtral_stream_create: all ", model->model->decoder().options().max_sequences,
                                        " streams of this model are in use; free one, or load the model with a "
                                        "larger voxtral_model_options.max_streams"));
    }
    std::lock_guard lock(model->mutex);
    ++model->open_streams;
    ++model->working_streams;
    return s.release();
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return nullptr;
  }
}

void voxtral_stream_free(voxtral_stream* stream) {
  if (stream == nullptr) return;
  stream->job->cancel();
  {
    std::lock_guard call(stream->mutex);
    stop_working(stream);
  }
  {
    std::lock_guard lock(stream->owner->mutex);
    --stream->owner->open_streams;
  }
  delete stream;
}

int voxtral_stream_feed(voxtral_stream* stream, const float* samples, size_t count) {
  return guarded(stream, [&] {
    if (samples == nullptr && count > 0) throw voxtral::Error("voxtral_stream_feed: samples is NULL");
    feed(stream, std::vector<float>(samples, samples + count));
  });
}

int voxtral_stream_feed_pcm16(voxtral_stream* stream, const int16_t* samples, size_t count) {
  return guarded(stream, [&] {
    if (samples == nullptr && count > 0) throw voxtral::Error("voxtral_stream_feed_pcm16: samples is NULL");
    std::vector<float> f(count);
    for (size_t i = 0; i < count; ++i) f[i] = static_cast<float>(samples[i]) / 32768.0f;
    feed(stream, std::move(f));
  });
}

int voxtral_stream_flush(voxtral_stream* stream) {
  return guarded(stream, [&] {
    if (!stream->finished) stream->job->flush();
    wait_served(stream);
  });
}

int voxtral_stream_finish(voxtral_stream* stream) {
  return guarded(stream, [&] {
    stream->finished = true;
    stream->job->finish();
    wait_served(stream);
    stop_working(stream);  // the job is over once its text is out
  });
}

size_t voxtral_stream_read(voxtral_stream* stream, const voxtral_piece** pieces) {
  if (stream == nullptr) return 0;
  std::lock_guard call(stream->mutex);
  if (pieces == nullptr) {  // nowhere to put them: keep them for a call that can take them
    stream->error = "voxtral_stream_read: pieces is NULL";
    return 0;
  }
  {
    std::lock_guard lock(stream->inbox->mutex);
    stream->pieces = std::move(stream->inbox->pieces);
    stream->inbox->pieces.clear();
  }
  stream->views.clear();
  stream->alternatives.clear();
  stream->alternatives.reserve(stream->pieces.size());
  for (const auto& p : stream->pieces) {
    auto& alts = stream->alternatives.emplace_back();
    for (const auto& a : p.alternatives) alts.push_back({a.id, a.text.c_str(), a.probability});
    stream->views.push_back(
        {p.id, p.text.c_str(), p.time, p.audio_end, alts.size(), alts.empty() ? nullptr : alts.data(), p.start, p.end});
  }
  *pieces = stream->views.empty() ? nullptr : stream->views.data();
  stream->error.clear();
  return stream->views.size();
}

const char* voxtral_stream_error(const voxtral_stream* stream) { return stream != nullptr ? stream->error.c_str() : ""; }

float* voxtral_load_audio(const char* path, int sample_rate, size_t* count, char* error, size_t error_size) {
  try {
    if (path == nullptr) throw voxtral::Error("voxtral_load_audio: path is NULL");
    if (count == nullptr) throw voxtral::Error("voxtral_load_audio: count is NULL (it receives the sample count)");
    if (sample_rate < voxtral::kMinTargetRate || sample_rate > voxtral::kMaxTargetRate) {
      throw voxtral::Error(voxtral::cat("voxtral_load_audio: sample_rate ", sample_rate, " Hz is out of range (",
                                        voxtral::kMinTargetRate, " to ", voxtral::kMaxTargetRate, " Hz)"));
    }
    const auto samples = voxtral::load_audio_file(path, sample_rate);
    // At least one byte: malloc(0) may return NULL, which would read as a failure.
    auto* out = static_cast<float*>(std::malloc(std::max<std::size_t>(samples.size(), 1) * sizeof(float)));
    if (out == nullptr) throw voxtral::Error("voxtral_load_audio: out of memory");
    std::memcpy(out, samples.data(), samples.size() * sizeof(float));
    *count = samples.size();
    return out;
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return nullptr;
  }
}

void voxtral_free_samples(float* samples) { std::free(samples); }

}  // extern "C"
