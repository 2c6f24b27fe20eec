// A model and a recording for tests of admission by K/V pages. The demo model's decoder
// window is 64 positions, so its every stream fits a cache of any size the loader accepts
// (each stream is given at least 30 s). This is the demo model with a window of 1024
// positions (the weights do not depend on it: its words are the demo's for the first 64
// positions only), so a cache of a few streams' minimum holds one long file's pages but not
// two; and a recording of 65 s (samples/commands.wav four times).
#pragma once

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "test_util.h"
#include "wav_builder.h"

namespace voxtral::testing {

class WideWindowDemo {
 public:
  static constexpr int kStreams = 2;
  static constexpr int kLongFileTimes = 4;  // copies of commands.wav in the long file

  WideWindowDemo() {
    namespace fs = std::filesystem;
    const fs::path demo = source_path("models/demo");
    fs::create_directory(model());
    std::ifstream in(demo / "params.json");
    auto params = nlohmann::json::parse(in);
    params["sliding_window"] = 1024;
    std::ofstream(model() / "params.json") << params.dump(2);
    fs::create_symlink(demo / "tekken.json", model() / "tekken.json");
    fs::create_symlink(demo / "consolidated.safetensors", model() / "consolidated.safetensors");
    const auto samples = load_audio_file(source_path("samples/commands.wav"), 16000);
    std::vector<std::int16_t> pcm;
    for (int copy = 0; copy < kLongFileTimes; ++copy) {
      for (float s : samples) pcm.push_back(static_cast<std::int16_t>(std::lround(std::clamp(s, -1.0f, 0.99997f) * 32768)));
    }
    long_seconds_ = static_cast<double>(pcm.size()) / 16000;
    long_wav_ = dir_.write("long.wav", simple_wav(fmt_body(1, 1, 16000, 16), s16_bytes(pcm)));
    // The smallest cache the loader accepts for kStreams streams.
    for (kv_cache_mb_ = 1; kv_cache_mb_ < 64; ++kv_cache_mb_) {
      try {
        Model::load(model(), options());
        break;
      } catch (const Error&) {
      }
    }
  }
  std::filesystem::path model() const { return dir_.path() / "model"; }
  const std::filesystem::path& long_wav() const { return long_wav_; }
  double long_seconds() const { return long_seconds_; }
  std::int64_t kv_cache_mb() const { return kv_cache_mb_; }
  ModelOptions options() const {
    ModelOptions o = test_model_options();
    o.max_streams = kStreams;
    o.kv_cache_mb = kv_cache_mb_;
    return o;
  }

 private:
  TempDir dir_;
  std::filesystem::path long_wav_;
  double long_seconds_ = 0;
  std::int64_t kv_cache_mb_ = 1;
};

}  // namespace voxtral::testing
