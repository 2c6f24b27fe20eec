#include "python/objects.h"

#include <unistd.h>

#include <utility>

#include "python/audio_input.h"
#include "python/interpreter_exit.h"

namespace py = pybind11;

namespace voxtral::python {

namespace {

// Words and segments as the CLI's JSON and the server's verbose_json give them.
Transcript make_transcript(const OfflineResult& result) {
  Transcript t;
  Segmenter segmenter;
  for (const auto& piece : result.pieces) {
    t.text += piece.text;
    for (auto& s : segmenter.add(piece)) t.segments.push_back(std::move(s));
  }
  for (auto& s : segmenter.finish()) t.segments.push_back(std::move(s));
  t.words = segmenter.all_words();
  t.text.erase(0, std::min(t.text.find_first_not_of(' '), t.text.size()));
  t.duration = result.stats.audio_seconds;
  return t;
}

// A forked child has the model's memory but not its scheduler thread: a call would wait forever.
void check_process(pid_t owner) {
  if (getpid() == owner) return;
  throw Error(cat("model: this Model was created in process ", owner, "; this is process ", getpid(),
                  " (after fork()), where its engine does not run. Create a new Model in the child "
                  "(multiprocessing: use the 'spawn' start method, or load the model in each worker)"));
}

// In a forked child the engine's threads are gone and its locks may be held by them: letting
// it go would wait on them, so the child keeps it until it exits.
template <typename T>
void keep_in_child(pid_t owner, std::shared_ptr<T>& object) {
  if (getpid() != owner && object) new std::shared_ptr<T>(std::move(object));
}

}  // namespace

PyModel::PyModel(const py::handle& path, std::string backend, std::string weights, std::string precision, int threads,
                 std::string kv_cache, int max_streams, std::int64_t kv_cache_mb)
    : process_(getpid()) {
  path_ = path_of(path, "path");
  if (path_.empty()) throw py::type_error("path: expected a str or os.PathLike naming the model directory");
  ModelOptions options;
  options.backend = std::move(backend);
  options.weights = std::move(weights);
  options.precision = std::move(precision);
  options.threads = threads;
  options.kv_cache = std::move(kv_cache);
  options.max_streams = max_streams;
  options.kv_cache_mb = kv_cache_mb;
  options.quiet = true;  // a library prints nothing; Model.backend says where it runs
  options.naming = OptionNaming::Field;
  try {
    validate(options);  // Model::load checks again; here an option's fault reads as ValueError
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  {
    ReleasedGil nogil;
    engine_ = std::make_shared<ScheduledModel>(Model::load(path_, options), options.naming);
  }
  halt_at_exit(engine_);
  Model& model = engine_->model();
  sample_rate_ = model.config().audio.sampling_rate;
  backend_ = model.backend_kind();
  backend_description_ = model.backend().name();
  max_streams_ = model.decoder().options().max_sequences;
}

PyModel::~PyModel() { keep_in_child(process_, engine_); }

std::shared_ptr<ScheduledModel> PyModel::engine() const {
  check_process(process_);
  std::lock_guard lock(mutex_);
  if (!engine_) throw UsageError("model: it was closed");
  return engine_;
}

bool PyModel::closed() const {
  std::lock_guard lock(mutex_);
  return !engine_;
}

void PyModel::close() {
  std::shared_ptr<ScheduledModel> last;
  {
    std::lock_guard lock(mutex_);
    last.swap(engine_);
  }
  keep_in_child(process_, last);
  ReleasedGil nogil;  // the last reference stops the scheduler and frees the weights
  last.reset();
}

Transcript PyModel::transcribe(const py::handle& audio, std::optional<int> sample_rate, int delay_ms, bool continuous) {
  auto engine = this->engine();
  StreamOptions options;
  options.delay_ms = delay_ms;
  options.continuous = continuous;
  const std::string path = path_of(audio, "audio");
  std::vector<float> samples;
  if (!path.empty()) {
    if (sample_rate) throw UsageError("sample_rate: a file's header gives its rate; sample_rate is for arrays");
    ReleasedGil nogil;
    samples = load_audio_file(path, sample_rate_, AudioFormat::Wav, {}, python_signals());
  } else {
    samples = array_samples(audio, "audio");
    const int rate = sample_rate.value_or(sample_rate_);
    check_sample_rate(rate);
    ReleasedGil nogil;
    samples = resample_whole(std::move(samples), rate, sample_rate_);
  }
  OfflineResult result;
  {
    ReleasedGil nogil;
    result = engine->transcribe(std::move(samples), options, python_signals());
  }
  return make_transcript(result);
}

std::unique_ptr<PyStream> PyModel::stream(int sample_rate, int delay_ms, double processing_interval_s,
                                          bool continuous) {
  check_sample_rate(sample_rate);
  StreamOptions options;
  options.delay_ms = delay_ms;
  options.processing_interval_s = processing_interval_s;
  options.continuous = continuous;
  return std::make_unique<PyStream>(engine(), sample_rate, options);
}

PyStream::PyStream(std::shared_ptr<ScheduledModel> engine, int sample_rate, const StreamOptions& options)
    : process_(getpid()), engine_(std::move(engine)), sample_rate_(sample_rate) {
  const int model_rate = engine_->model().config().audio.sampling_rate;
  if (sample_rate_ != model_rate) resampler_ = std::make_unique<Resampler>(sample_rate_, model_rate);
  stream_ = engine_->open_stream(options);
}

PyStream::~PyStream() {
  std::lock_guard lock(mutex_);
  keep_in_child(process_, stream_);
  keep_in_child(process_, engine_);
  stream_.reset();  // before the engine (declared first) goes
}

std::shared_ptr<ScheduledStream> PyStream::stream() const {
  check_process(process_);
  std::lock_guard lock(mutex_);
  if (!stream_) throw UsageError("stream: it was closed");
  return stream_;
}

PyStream::Turn::Turn(PyStream& stream, const char* call) : stream_(stream), lock_(stream.call_mutex_, std::defer_lock) {
  if (stream.caller_.load() == std::this_thread::get_id()) {
    throw Error(cat("stream.", call, "() called from inside this stream's ", stream.call_.load(),
                    "() (a signal handler?): a stream serves one call at a time, and that one waits for this. "
                    "Set a flag in the handler and call ", call, "() once ", stream.call_.load(), "() has returned"));
  }
  const WaitHook hook = python_signals();  // Ctrl-C while another thread's call holds the stream
  while (!lock_.try_lock_for(kWaitSlice)) hook();
  stream.caller_ = std::this_thread::get_id();
  stream.call_ = call;
}

PyStream::Turn::~Turn() { stream_.caller_ = std::thread::id{}; }

void PyStream::feed(const py::handle& samples) {
  std::vector<float> audio = array_samples(samples, "samples");
  auto s = stream();
  ReleasedGil nogil;
  Turn turn(*this, "feed");
  if (s->finished()) throw UsageError("stream: audio fed after finish()");
  if (resampler_) {
    std::vector<float> out;
    resampler_->push(audio, out);
    audio.swap(out);
  }
  s->feed(audio, python_signals());
}

void PyStream::flush() {
  auto s = stream();
  ReleasedGil nogil;
  Turn turn(*this, "flush");
  s->flush(python_signals());
}

void PyStream::finish() {
  auto s = stream();
  ReleasedGil nogil;
  Turn turn(*this, "finish");
  if (resampler_ && !s->finished()) {  // the filter's delay line holds the last few samples
    std::vector<float> tail;
    resampler_->finish(tail);
    s->feed(tail, python_signals());
  }
  s->finish(python_signals());
}

void PyStream::close() {
  std::shared_ptr<ScheduledStream> last;
  {
    std::lock_guard lock(mutex_);
    last.swap(stream_);
    pending_.clear();
  }
}

std::optional<TextPiece> PyStream::next() {
  std::lock_guard lock(mutex_);
  if (pending_.empty() && stream_) {
    for (auto& piece : stream_->take_pieces()) {
      if (!piece.text.empty()) pending_.push_back(std::move(piece));
    }
  }
  if (pending_.empty()) return std::nullopt;
  TextPiece piece = std::move(pending_.front());
  pending_.pop_front();
  return piece;
}

bool PyStream::finished() const {
  std::lock_guard lock(mutex_);
  return stream_ && stream_->finished();
}

bool PyStream::closed() const {
  std::lock_guard lock(mutex_);
  return !stream_;
}

}  // namespace voxtral::python
