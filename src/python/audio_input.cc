#include "python/audio_input.h"

#include <pybind11/numpy.h>

#include "core/audio.h"
#include "core/error.h"
#include "core/float_peak.h"
#include "runtime/scheduled_model.h"

namespace py = pybind11;

namespace voxtral::python {

namespace {

std::string type_name(const py::handle& object) { return py::str(object.get_type().attr("__name__")).cast<std::string>(); }

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += cat(i > 0 ? ", " : "", a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// The array's elements as T in native order and one contiguous run (numpy copies only when
// the array is strided or byte-swapped; the kind and size were checked before).
template <typename T>
py::array_t<T> contiguous(const py::array& a) {
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(a);
}

}  // namespace

std::vector<float> array_samples(const py::handle& audio, const char* name) {
  if (py::isinstance<py::str>(audio) || py::isinstance<py::bytes>(audio)) {
    throw py::type_error(cat(name, ": expected a numpy array of samples, got ", type_name(audio)));
  }
  py::array a = py::array::ensure(audio);
  if (!a) {
    PyErr_Clear();
    throw py::type_error(cat(name, ": expected a numpy array of samples (float32 in [-1, 1] or int16), got ",
                             type_name(audio)));
  }
  if (a.dtype().kind() == 'O') {  // None, or an object numpy sees no numbers in
    throw py::type_error(cat(name, ": expected a numpy array of samples (float32 in [-1, 1] or int16), got ",
                             type_name(audio)));
  }
  if (a.ndim() != 1) {
    throw UsageError(cat(name, ": expected a 1-D array of mono samples, got shape ", shape_of(a),
                         a.ndim() == 2 ? "; mix the channels to one first (e.g. samples.mean(axis=1) for (frames, channels))"
                                       : ""));
  }
  const py::dtype type = a.dtype();
  const char kind = type.kind();
  const auto size = type.itemsize();
  std::vector<float> out(static_cast<std::size_t>(a.size()));
  if (kind == 'f' && size == 4) {
    const auto c = contiguous<float>(a);
    std::copy(c.data(), c.data() + c.size(), out.begin());
  } else if (kind == 'f' && size == 8) {
    const auto c = contiguous<double>(a);
    std::transform(c.data(), c.data() + c.size(), out.begin(), [](double v) { return static_cast<float>(v); });
  } else if (kind == 'i' && size == 2) {
    const auto c = contiguous<std::int16_t>(a);
    std::transform(c.data(), c.data() + c.size(), out.begin(),
                   [](std::int16_t v) { return static_cast<float>(v) / 32768.0f; });
  } else {
    throw py::type_error(cat(name, ": samples of dtype ", py::str(py::handle(type)).cast<std::string>(),
                             " are not audio this accepts: pass float32 (or float64) in [-1, 1], or int16 PCM "
                             "(e.g. samples.astype(numpy.float32) / scale)"));
  }
  // Before any resampling: the index is then the caller's, and no NaN reaches a filter's state.
  check_finite(out);
  if (kind == 'f') {
    if (const auto peak = excessive_peak(out)) {
      throw UsageError(cat(name, ": ", excessive_peak_problem(*peak, "sample", "pass them as an int16 array"),
                           "; nothing of this call was taken"));
    }
  }
  return out;
}

void check_sample_rate(int rate) {
  if (rate < kMinTargetRate || rate > kMaxTargetRate) {
    throw UsageError(cat("sample_rate: ", rate, " Hz is out of range (", kMinTargetRate, " to ", kMaxTargetRate, " Hz)"));
  }
}

std::string path_of(const py::handle& object, const char* name) {
  // bytes stay out: to transcribe() they read as a WAV file's contents, not its name.
  if (!py::isinstance<py::str>(object) && !py::hasattr(object, "__fspath__")) return "";
  // The file system's bytes, as open() takes them: a name that is not UTF-8 (os.listdir gives
  // it with surrogate escapes) is still that file.
  const py::object encoded = py::module_::import("os").attr("fsencode")(object);
  std::string s = encoded.cast<std::string>();
  if (s.empty()) throw UsageError(cat(name, ": the file name is empty"));
  if (s.find('\0') != std::string::npos) throw UsageError(cat(name, ": embedded null byte in the file name"));
  return s;
}

std::vector<float> resample_whole(std::vector<float> samples, int rate, int target_rate) {
  if (rate == target_rate) return samples;
  std::vector<float> out;
  Resampler resampler(rate, target_rate);
  resampler.push(samples, out);
  resampler.finish(out);
  return out;
}

}  // namespace voxtral::python
