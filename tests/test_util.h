// Shared helpers for the tests: fixture paths, temporary files, reference tensors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/error.h"
#include "core/safetensors.h"
#include "model/model.h"

namespace voxtral::testing {

// tests/fixtures/<relative>
std::filesystem::path fixture(const std::string& relative);

// <repository root>/<relative>, e.g. models/demo or samples/timer.wav (found from the
// fixtures directory, so a copy of the tests run elsewhere finds them too).
std::filesystem::path source_path(const std::string& relative);

// A fresh empty directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path write(const std::string& name, const std::string& bytes) const;

 private:
  std::filesystem::path path_;
};

// One clip of the reference fixtures (tests/fixtures/tiny-*.json).
struct FixtureClip {
  std::string model;    // "tiny-a" or "tiny-b"
  nlohmann::json info;  // tag, audio, delay_ms, greedy_ids, text, ...
};
std::vector<FixtureClip> fixture_clips();

// Options for loading a model under test: the CPU unless VOXTRAL_TEST_BACKEND names another
// backend (the GPU suite runs the same tests on CUDA), in the exact mode with F32 caches
// that the reference tolerances assume.
ModelOptions test_model_options();

// Copies a tensor's values as floats (F32, F16 or BF16) or ints (I32, I64).
std::vector<float> to_floats(const TensorView& tensor);
std::vector<std::int64_t> to_ints(const TensorView& tensor);

// Runs `action`, which must throw voxtral::Error, and returns its message (a test failure,
// and "", when it does not throw).
template <typename Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a voxtral::Error";
  return "";
}

// Writes a safetensors file from raw parts (for malformed-input tests).
std::string safetensors_bytes(const std::string& header_json, const std::string& data);

// Largest |got - want| over the largest magnitude of `want` (the parity tests' measure).
double relative_error(const std::vector<float>& got, const std::vector<float>& want);
// A backend tensor's values, F32, on the host.
std::vector<float> download(Backend& backend, const Tensor& t);
// The same floats, bit for bit (the promise of paths that only reorder work between rows).
bool same_bits(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace voxtral::testing
