#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "core/config.h"
#include "core/mel.h"
#include "core/safetensors.h"
#include "model/schedule.h"
#include "test_util.h"

namespace voxtral {
namespace {

using voxtral::testing::fixture;
using voxtral::testing::to_floats;

// The tolerance the foundation issue sets: transformers' own float32 STFT differs from a
// float64 computation by up to ~3.3e-5 on these clips (recorded in the fixture JSON).
constexpr float kMelTolerance = 1e-4f;

AudioFrontEndConfig front_end() { return ModelConfig::load(fixture("tiny-a/params.json")).audio; }

TEST(Mel, FilterBankMatchesTransformers) {
  const MelSpectrogram mel(front_end());
  const auto st = SafeTensors::open(fixture("mel_filters.safetensors"));
  const auto& ref = st.get("mel_filters");
  ASSERT_EQ(ref.shape, (std::vector<std::int64_t>{201, 128}));
  const auto expected = to_floats(ref);
  ASSERT_EQ(mel.filters().size(), expected.size());
  float worst = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) worst = std::max(worst, std::fabs(mel.filters()[i] - expected[i]));
  EXPECT_LE(worst, 1e-8f);  // a float32 ulp or so
}

TEST(Mel, MatchesTransformersOnEveryFixtureClip) {
  const ModelConfig config = ModelConfig::load(fixture("tiny-a/params.json"));
  const MelSpectrogram mel(config.audio);
  for (const char* model : {"tiny-a", "tiny-b"}) {
    std::ifstream in(fixture(std::string(model) + ".json"));
    const auto summary = nlohmann::json::parse(in);
    for (const auto& clip : summary["clips"]) {
      const std::string tag = clip["tag"];
      auto samples = load_audio_file(fixture(clip["audio"]), 16000);
      ASSERT_EQ(samples.size(), clip["n_samples"].get<std::size_t>()) << tag;
      const auto padded = pad_offline(samples, config, 32, clip["delay_ms"].get<int>() / 80);

      const auto frames = mel.compute(padded);
      const auto st = SafeTensors::open(fixture(tag + ".safetensors"));
      const auto& ref = st.get("mel");
      const std::size_t n_frames = clip["n_mel_frames"];
      ASSERT_EQ(ref.shape, (std::vector<std::int64_t>{128, static_cast<std::int64_t>(n_frames)})) << tag;
      ASSERT_EQ(frames.size(), n_frames * 128) << tag;
      const auto expected = to_floats(ref);  // [mel][frame]
      float worst = 0;
      for (std::size_t t = 0; t < n_frames; ++t) {
        for (std::size_t m = 0; m < 128; ++m) {
          worst = std::max(worst, std::fabs(frames[t * 128 + m] - expected[m * n_frames + t]));
        }
      }
      EXPECT_LE(worst, kMelTolerance) << tag;
      RecordProperty(tag + "_max_abs_error", std::to_string(worst));
    }
  }
}

TEST(Mel, FrameCountDropsTheLastStftFrame) {
  const MelSpectrogram mel(front_end());
  EXPECT_EQ(mel.compute(std::vector<float>(1600, 0.1f)).size(), 10u * 128);
  EXPECT_EQ(mel.compute(std::vector<float>(1759, 0.1f)).size(), 10u * 128);
  EXPECT_EQ(mel.compute(std::vector<float>(100, 0.1f)).size(), 0u);
}

TEST(Mel, SilenceSitsOnTheFloor) {
  const MelSpectrogram mel(front_end());
  const auto frames = mel.compute(std::vector<float>(3200, 0.0f));
  for (float v : frames) EXPECT_FLOAT_EQ(v, (1.5f - 8.0f + 4.0f) / 4.0f);
}

TEST(Mel, ASineLightsTheRightBand) {
  const MelSpectrogram mel(front_end());
  std::vector<float> tone(16000);
  for (std::size_t i = 0; i < tone.size(); ++i) tone[i] = 0.5f * std::sin(2.0 * M_PI * 440.0 * i / 16000.0);
  const auto frames = mel.compute(tone);
  // The loudest band of a middle frame must be the one whose centre is nearest 440 Hz.
  const float* frame = frames.data() + 50 * 128;
  const int loudest = static_cast<int>(std::max_element(frame, frame + 128) - frame);
  double best_distance = 1e9;
  int nearest = -1;
  for (int m = 0; m < 128; ++m) {
    double sum = 0, weighted = 0;
    for (int f = 0; f < 201; ++f) {
      sum += mel.filters()[static_cast<std::size_t>(f) * 128 + m];
      weighted += mel.filters()[static_cast<std::size_t>(f) * 128 + m] * f * 40.0;
    }
    const double centre = weighted / sum;
    if (std::fabs(centre - 440.0) < best_distance) {
      best_distance = std::fabs(centre - 440.0);
      nearest = m;
    }
  }
  EXPECT_NEAR(loudest, nearest, 1);
}

}  // namespace
}  // namespace voxtral
