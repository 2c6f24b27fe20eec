// What the Python module accepts as audio: numpy arrays (or anything numpy turns into one)
// of float32 / float64 in [-1, 1] or int16 PCM, 1-D, at a declared sample rate; and audio files
// by path. Every refusal names the argument and says what to pass instead.
#pragma once

#include <string>
#include <vector>

#include <pybind11/pybind11.h>

namespace voxtral::python {

// The samples of a 1-D array as floats (int16 scaled by 1/32768). TypeError for anything that
// is not an array of float32, float64 or int16; UsageError (ValueError) for another shape, a
// NaN or infinite sample (named by its index), or float samples beyond ±kMaxFloatPeak
// (core/float_peak.h: int16 values passed as floats). Needs the GIL.
std::vector<float> array_samples(const pybind11::handle& audio, const char* name);

// UsageError unless `rate` is a sample rate the engine resamples from (1000 to 384000 Hz).
void check_sample_rate(int rate);

// A str or os.PathLike (of str or bytes) as the file system's bytes (os.fsencode), or an empty string
// when `object` is none of them. An empty name or one with a NUL byte is a UsageError naming
// `name`. Needs the GIL.
std::string path_of(const pybind11::handle& object, const char* name);

// `samples` at `rate` resampled to `target_rate` (the engine's resampler, libsoxr HQ), drained.
std::vector<float> resample_whole(std::vector<float> samples, int rate, int target_rate);

}  // namespace voxtral::python
