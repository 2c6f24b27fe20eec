// The Python module voxtral._voxtral (re-exported by python/voxtral/__init__.py; the types
// are described for type checkers in python/voxtral/_voxtral.pyi, kept in step by a test).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <new>
#include <string>
#include <utility>

#include "core/error.h"
#include "model/kv_pages.h"
#include "python/interpreter_exit.h"
#include "python/objects.h"

namespace py = pybind11;
using namespace voxtral;
using namespace voxtral::python;

namespace {

std::string quoted(const std::string& s) { return py::repr(py::str(s)).cast<std::string>(); }

std::string seconds(double t) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", t);
  return buffer;
}

// Shown as voxtral.Name (the package's name for them), not voxtral._voxtral.Name.
template <typename Class>
Class& public_name(Class& cls) {
  cls.attr("__module__") = "voxtral";
  return cls;
}

// Objects the engine makes (Transcript, Stream, ...): Cls.__new__(Cls) would give one with no
// C++ object behind it, whose use reads uninitialized memory.
template <typename Class>
void made_by_the_engine_only(Class& cls, const char* name, const char* how) {
  const std::string message = cat("voxtral.", name, " cannot be created directly; ", how);
  cls.attr("__new__") =
      py::cpp_function([message](const py::args&, const py::kwargs&) -> py::object { throw py::type_error(message); });
}

// Model.__new__(Model) without __init__ has no C++ object behind it: every method checks.
PyModel& constructed(py::handle self) {
  if (!py::isinstance<PyModel>(self)) throw py::type_error("expected a voxtral.Model");
  auto* instance = reinterpret_cast<py::detail::instance*>(self.ptr());
  auto made = instance->get_value_and_holder(py::detail::get_type_info(typeid(PyModel)));
  if (!made.holder_constructed()) {
    throw py::type_error("voxtral.Model: this object was made by Model.__new__ without __init__; create it as "
                         "voxtral.Model(path)");
  }
  return *static_cast<PyModel*>(made.value_ptr());
}

template <typename R, typename... A>
auto checked(R (PyModel::*method)(A...)) {
  return [method](py::handle self, A... a) -> R { return (constructed(self).*method)(std::forward<A>(a)...); };
}

template <typename R, typename... A>
auto checked(R (PyModel::*method)(A...) const) {
  return [method](py::handle self, A... a) -> R { return (constructed(self).*method)(std::forward<A>(a)...); };
}

}  // namespace

PYBIND11_MODULE(_voxtral, m) {
  m.doc() = "Voxtral Realtime speech-to-text: the C++ engine's Python binding (use the package voxtral).";
  m.attr("__version__") = "0.1.0";
  watch_interpreter_exit();

  // Every engine failure is voxtral.Error (a RuntimeError) with the engine's message; a busy
  // model voxtral.BusyError; a wrong argument ValueError or TypeError.
  // Held for the life of the process, never released: a static's destructor would run after
  // the interpreter has finalized.
  static auto* const error = new py::exception<Error>(m, "Error", PyExc_RuntimeError);
  static auto* const busy = new py::exception<BusyError>(m, "BusyError", error->ptr());
  error->attr("__module__") = "voxtral";
  busy->attr("__module__") = "voxtral";
  error->doc() = "The engine could not do what was asked; the message is the engine's (it names the file or option).";
  busy->doc() =
      "No room now: every stream of the model is in use, or its K/V cache is full. Try again later, or load the "
      "model with a larger max_streams / kv_cache_mb.";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const UsageError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const BusyError& e) {
      PyErr_SetString(busy->ptr(), e.what());
    } catch (const Error& e) {
      PyErr_SetString(error->ptr(), e.what());
    }
  });

  auto word_class = py::class_<Word>(m, "Word", "A word and where it was spoken, in seconds of input audio.")
                  .def_readonly("text", &Word::text, "The word, without spaces around it.")
                  .def_readonly("start", &Word::start, "Seconds: the onset of its speech.")
                  .def_readonly("end", &Word::end, "Seconds: the end of its speech.")
                  .def("__repr__", [](const Word& w) {
                    return "Word(" + quoted(w.text) + ", " + seconds(w.start) + "-" + seconds(w.end) + ")";
                  });
  public_name(word_class);
  made_by_the_engine_only(word_class, "Word", "Transcript.words and Segment.words give them");

  auto segment_class = py::class_<Segment>(m, "Segment",
                                     "A stretch of speech: a sentence, or words up to a pause (> 0.4 s), a flush, "
                                     "or 84 characters; at least 1 s long where the audio allows (as subtitle cues).")
                     .def_readonly("text", &Segment::text)
                     .def_readonly("start", &Segment::start, "Seconds.")
                     .def_readonly("end", &Segment::end, "Seconds.")
                     .def_readonly("words", &Segment::words)
                     .def("__repr__", [](const Segment& s) {
                       return "Segment(" + quoted(s.text) + ", " + seconds(s.start) + "-" + seconds(s.end) + ")";
                     });
  public_name(segment_class);
  made_by_the_engine_only(segment_class, "Segment", "Transcript.segments gives them");

  auto transcript_class = py::class_<Transcript>(m, "Transcript", "What Model.transcribe() heard.")
                        .def_readonly("text", &Transcript::text, "The whole text.")
                        .def_readonly("segments", &Transcript::segments)
                        .def_readonly("words", &Transcript::words, "Every word of every segment, in order.")
                        .def_readonly("duration", &Transcript::duration, "Seconds of audio.")
                        .def("__str__", [](const Transcript& t) { return t.text; })
                        .def("__repr__", [](const Transcript& t) {
                          return "Transcript(" + quoted(t.text) + ", " + std::to_string(t.segments.size()) +
                                 " segments, " + seconds(t.duration) + " s)";
                        });
  public_name(transcript_class);
  made_by_the_engine_only(transcript_class, "Transcript", "Model.transcribe() gives one");

  auto piece_class =
      py::class_<TextPiece>(m, "Piece",
                            "New text from a stream: one token's text. A piece whose text starts with a space "
                            "starts a word; start and end are that word's times.")
          .def_readonly("text", &TextPiece::text)
          .def_readonly("token_id", &TextPiece::id)
          .def_readonly("start", &TextPiece::start, "Seconds: where the word this text belongs to starts.")
          .def_readonly("end", &TextPiece::end, "Seconds: where that word ends.")
          .def_readonly("time", &TextPiece::time, "Seconds: the audio position the model emitted this text at.")
          .def_readonly("audio_end", &TextPiece::audio_end, "Seconds of audio the stream had taken in by then.")
          .def("__repr__", [](const TextPiece& p) {
            return "Piece(" + quoted(p.text) + ", " + seconds(p.start) + "-" + seconds(p.end) + ")";
          });
  public_name(piece_class);
  made_by_the_engine_only(piece_class, "Piece", "iterating a Stream gives them");

  auto stream_class =
      py::class_<PyStream>(m, "Stream",
                           "Live transcription: feed audio as it arrives; iterating gives the new text.\n\n"
                           "feed() returns once the audio has been decoded as far as it allows, so its text can be "
                           "read at once: each `for piece in stream` takes the pieces produced since the last one, "
                           "without waiting. Thread-safe: calls on one stream are served in order.")
          .def("feed", &PyStream::feed, py::arg("samples"),
               "Adds audio: a 1-D numpy array of float32 (or float64) in [-1, 1] or int16 PCM at the stream's "
               "sample_rate. A NaN or infinite sample, or a float beyond +-2 (int16 values passed as floats), is a "
               "ValueError and nothing of the call is taken.")
          .def("flush", &PyStream::flush,
               "At a pause: brings out everything said so far; later audio continues the stream.")
          .def("finish", &PyStream::finish, "End of the audio: brings out the rest. No audio may follow.")
          .def("close", &PyStream::close, "Drops the stream (text still to come is lost) and frees its place.")
          .def_property_readonly("finished", &PyStream::finished)
          .def_property_readonly("closed", &PyStream::closed)
          .def_property_readonly("sample_rate", &PyStream::sample_rate, "Hz of the audio feed() takes.")
          .def("__iter__", [](py::object self) { return self; })
          .def("__next__",
               [](PyStream& s) {
                 auto p = s.next();
                 if (!p) throw py::stop_iteration();
                 return std::move(*p);
               })
          .def("__enter__", [](py::object self) { return self; })
          .def("__exit__", [](PyStream& s, const py::args&) { s.close(); });
  public_name(stream_class);
  made_by_the_engine_only(stream_class, "Stream", "Model.stream() gives one");

  auto model_class =
      py::class_<PyModel>(m, "Model",
                          "A loaded Voxtral Realtime model. Its streams and transcriptions, from any threads, are "
                          "decoded together by one scheduler (one batched decoder step for all).")
          .def(py::init<const py::handle&, std::string, std::string, std::string, int, std::string, int,
                        std::int64_t>(),
               py::arg("path"), py::kw_only(), py::arg("backend") = "auto", py::arg("weights") = "auto",
               py::arg("precision") = "auto", py::arg("threads") = 0, py::arg("kv_cache") = "auto",
               py::arg("max_streams") = 0, py::arg("kv_cache_mb") = 0,
               "Loads a model directory (params.json, tekken.json, consolidated.safetensors). The options are "
               "the CLI's (README): backend cpu/cuda/auto, weights auto/bf16/fp16/q8/q4, precision "
               "auto/exact/fast, threads (0: one per core), kv_cache auto/f32/bf16, max_streams (0: the "
               "backend's), kv_cache_mb (0: from free memory). A value out of range is a ValueError naming it; "
               "a model that cannot be loaded a voxtral.Error.")
          .def("transcribe", checked(&PyModel::transcribe), py::arg("audio"), py::kw_only(), py::arg("sample_rate") = py::none(),
               py::arg("delay_ms") = 0, py::arg("continuous") = true,
               "Transcribes a whole recording: a path (WAV: any rate, channels, PCM or float) or a 1-D array "
               "(float32/float64 in [-1, 1], up to +-2 taken as loud audio, or int16) at sample_rate (default: the model's, 16000 Hz). delay_ms: "
               "the transcription delay (0: the model's, 480). continuous: restart by itself before the model's "
               "length limit (else longer audio is an error).")
          .def("stream", checked(&PyModel::stream), py::kw_only(), py::arg("sample_rate") = 16000, py::arg("delay_ms") = 0,
               py::arg("processing_interval_s") = 0.0, py::arg("continuous") = true,
               "A live stream taking audio at sample_rate (Hz; resampled by the engine). processing_interval_s: "
               "audio gathered per encoder run (0: every 80 ms). BusyError when every stream of the model is in use.")
          .def("close", checked(&PyModel::close), "Lets the model go once its open streams are closed.")
          .def_property_readonly("closed", checked(&PyModel::closed))
          .def_property_readonly("path", checked(&PyModel::path))
          .def_property_readonly("backend", checked(&PyModel::backend),
                                 "Where the model runs: \"cpu\" or \"cuda\" (backend=\"auto\" decided).")
          .def_property_readonly("backend_description", checked(&PyModel::backend_description),
                                 "The backend in words, for people (threads and kernels, or the GPU and its "
                                 "settings); its wording may change between versions.")
          .def_property_readonly("sample_rate", checked(&PyModel::sample_rate), "Hz of the model's input (16000).")
          .def_property_readonly("max_streams", checked(&PyModel::max_streams), "Streams and transcriptions at once.")
          .def("__enter__", [](py::object self) { return self; })
          .def("__exit__", [](py::handle self, const py::args&) { constructed(self).close(); })
          .def("__repr__", [](py::handle self) {
            const PyModel& model = constructed(self);
            return "Model(" + quoted(model.path()) + ", backend=" + quoted(model.backend()) + ")";
          });
  public_name(model_class);
}
