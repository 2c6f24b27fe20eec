// The C API of include/voxtral.h over the C++ engine.
#include "voxtral.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/audio.h"
#include "core/error.h"
#include "core/float_peak.h"
#include "model/model.h"
#include "runtime/scheduled_model.h"

// Every stream of a model is a job of the model's scheduler (runtime/scheduled_model.h): its
// thread alone drives the backend, and the steps of streams fed from many threads at once are
// batched together.
struct voxtral_model {
  std::unique_ptr<voxtral::ScheduledModel> engine;
  std::mutex mutex;
  std::string error;  // guarded by mutex
};

struct voxtral_stream {
  std::unique_ptr<voxtral::ScheduledStream> stream;
  std::mutex mutex;  // guards what the last read returned, and error
  std::vector<voxtral::TextPiece> pieces;
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

// Runs `fn` on a stream; an exception becomes -1 and the stream's error. A NULL stream is -1
// (there is nowhere to put a message).
template <typename Fn>
int guarded(voxtral_stream* s, Fn&& fn) {
  if (s == nullptr) return -1;
  std::string error;
  try {
    fn();
  } catch (const std::exception& e) {
    error = e.what();
  }
  std::lock_guard lock(s->mutex);
  s->error = std::move(error);
  return s->error.empty() ? 0 : -1;
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
    m->engine = std::make_unique<voxtral::ScheduledModel>(voxtral::Model::load(model_dir, mo), mo.naming);
    return m.release();
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return nullptr;
  }
}

int voxtral_model_free(voxtral_model* model) {
  if (model == nullptr) return 0;
  if (const int open = model->engine->open_streams(); open > 0) {
    std::lock_guard lock(model->mutex);
    model->error = voxtral::cat("voxtral_model_free: ", open,
                                " stream(s) of this model are still open; free them first (nothing was freed)");
    return -1;
  }
  delete model;
  return 0;
}

int voxtral_model_sample_rate(const voxtral_model* model) {
  return model != nullptr ? model->engine->model().config().audio.sampling_rate : 0;
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
    auto s = std::make_unique<voxtral_stream>();
    try {
      s->stream = model->engine->open_stream(so);
    } catch (const voxtral::BusyError& e) {
      throw voxtral::Error(voxtral::cat("voxtral_stream_create: ", e.what()));
    }
    return s.release();
  } catch (const std::exception& e) {
    write_error(error, error_size, e.what());
    return nullptr;
  }
}

void voxtral_stream_free(voxtral_stream* stream) { delete stream; }

int voxtral_stream_feed(voxtral_stream* stream, const float* samples, size_t count) {
  return guarded(stream, [&] {
    if (samples == nullptr && count > 0) throw voxtral::Error("voxtral_stream_feed: samples is NULL");
    const std::span audio(samples, count);
    voxtral::check_finite(audio);  // first: a NaN is no peak
    if (const auto peak = voxtral::excessive_peak(audio)) {
      throw voxtral::UsageError(voxtral::cat(
          "voxtral_stream_feed: ", voxtral::excessive_peak_problem(*peak, "sample", "feed them with voxtral_stream_feed_pcm16"),
          "; none of the call's samples were taken"));
    }
    stream->stream->feed(audio);
  });
}

int voxtral_stream_feed_pcm16(voxtral_stream* stream, const int16_t* samples, size_t count) {
  return guarded(stream, [&] {
    if (samples == nullptr && count > 0) throw voxtral::Error("voxtral_stream_feed_pcm16: samples is NULL");
    std::vector<float> f(count);
    for (size_t i = 0; i < count; ++i) f[i] = static_cast<float>(samples[i]) / 32768.0f;
    stream->stream->feed(f);
  });
}

int voxtral_stream_flush(voxtral_stream* stream) {
  return guarded(stream, [&] { stream->stream->flush(); });
}

int voxtral_stream_finish(voxtral_stream* stream) {
  return guarded(stream, [&] { stream->stream->finish(); });
}

size_t voxtral_stream_read(voxtral_stream* stream, const voxtral_piece** pieces) {
  if (stream == nullptr) return 0;
  std::lock_guard call(stream->mutex);
  if (pieces == nullptr) {  // nowhere to put them: keep them for a call that can take them
    stream->error = "voxtral_stream_read: pieces is NULL";
    return 0;
  }
  stream->pieces = stream->stream->take_pieces();
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
