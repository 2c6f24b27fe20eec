// The turn detector (runtime/voice_activity.h) on signals whose speech spans are known by
// construction, and on the samples' recorded word times (samples/*.json, from espeak-ng's
// synthesis events): never on its own earlier output.
#include <cmath>
#include <fstream>
#include <numbers>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "core/error.h"
#include "runtime/voice_activity.h"
#include "test_util.h"

namespace voxtral {
namespace {

constexpr int kRate = 16000;

struct Turn {
  std::int64_t audio_start = -1, speech_start = -1, speech_end = -1, audio_end = -1, samples = 0;
};

struct Recorder : TurnSink {
  std::vector<Turn> turns;
  void speech_started(std::int64_t audio_start, std::int64_t speech_start) override {
    turns.push_back({audio_start, speech_start});
  }
  void turn_audio(std::span<const float> samples) override {
    ASSERT_FALSE(turns.empty());
    turns.back().samples += static_cast<std::int64_t>(samples.size());
  }
  void speech_stopped(std::int64_t speech_end, std::int64_t audio_end) override {
    ASSERT_FALSE(turns.empty());
    turns.back().speech_end = speech_end;
    turns.back().audio_end = audio_end;
  }
};

// Noise at `noise_db` dBFS (RMS) everywhere, and a vowel-like sound (a 150 Hz tone's first
// six harmonics, falling as 1/h) of RMS `speech_db` dBFS at its syllables' peaks (a 4 Hz
// modulation down to a fifth) within each [start, end) second span.
std::vector<float> signal(double seconds, const std::vector<std::pair<double, double>>& speech, double noise_db = -60,
                          double speech_db = -20) {
  std::mt19937 random(7);
  std::normal_distribution<float> gauss(0, static_cast<float>(std::pow(10, noise_db / 20)));
  std::vector<float> out(static_cast<std::size_t>(seconds * kRate));
  // The harmonics' RMS: sqrt(sum over h of 1 / (2 h^2)).
  double power = 0;
  for (int h = 1; h <= 6; ++h) power += 0.5 / (h * h);
  const double amplitude = std::pow(10, speech_db / 20) / std::sqrt(power);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const double t = static_cast<double>(i) / kRate;
    out[i] = gauss(random);
    for (const auto& [start, end] : speech) {
      if (t < start || t >= end) continue;
      const double syllables = 0.6 + 0.4 * std::sin(2 * std::numbers::pi * 4 * (t - start));
      double vowel = 0;
      for (int h = 1; h <= 6; ++h) vowel += std::sin(2 * std::numbers::pi * 150 * h * t) / h;
      out[i] += static_cast<float>(amplitude * syllables * vowel);
    }
  }
  return out;
}

std::vector<Turn> detect(const std::vector<float>& audio, const TurnDetectionOptions& options, std::size_t piece = 4000) {
  TurnDetector detector(options);
  Recorder recorder;
  for (std::size_t at = 0; at < audio.size(); at += piece) {
    detector.push(std::span(audio).subspan(at, std::min(piece, audio.size() - at)), recorder);
  }
  return recorder.turns;
}

std::int64_t at(double seconds) { return static_cast<std::int64_t>(seconds * kRate); }

TEST(TurnDetector, FindsEachTurnAndPadsIt) {
  const auto audio = signal(6, {{1.0, 2.2}, {3.5, 4.4}});
  TurnDetectionOptions o;  // threshold 0.5, 300 ms padding, 500 ms silence
  const auto turns = detect(audio, o);
  ASSERT_EQ(turns.size(), 2u);
  const std::vector<std::pair<double, double>> truth = {{1.0, 2.2}, {3.5, 4.4}};
  for (std::size_t i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    // The signal's syllables fade to a fifth of their peak: its last trough may end early.
    EXPECT_NEAR(turns[i].speech_start, at(truth[i].first), 320);
    EXPECT_NEAR(turns[i].speech_end, at(truth[i].second), 1600);
    EXPECT_EQ(turns[i].audio_start, turns[i].speech_start - at(0.3));
    EXPECT_GE(turns[i].audio_end - turns[i].speech_end, at(0.5));
    EXPECT_LT(turns[i].audio_end - turns[i].speech_end, at(0.5) + 160);
    // Every sample of the turn, once, in order.
    EXPECT_EQ(turns[i].samples, turns[i].audio_end - turns[i].audio_start);
  }
}

TEST(TurnDetector, AnyChunkingGivesTheSameTurns) {
  const auto audio = signal(4, {{0.7, 1.9}, {2.6, 3.2}});
  TurnDetectionOptions o;
  o.silence_duration_ms = 300;
  const auto whole = detect(audio, o, audio.size());
  ASSERT_EQ(whole.size(), 2u);
  for (const std::size_t piece : {1u, 37u, 160u, 1601u}) {
    const auto turns = detect(audio, o, piece);
    ASSERT_EQ(turns.size(), whole.size()) << piece;
    for (std::size_t i = 0; i < turns.size(); ++i) {
      EXPECT_EQ(turns[i].audio_start, whole[i].audio_start) << piece;
      EXPECT_EQ(turns[i].speech_end, whole[i].speech_end) << piece;
      EXPECT_EQ(turns[i].samples, whole[i].samples) << piece;
    }
  }
}

TEST(TurnDetector, APauseShorterThanTheSilenceDurationDoesNotEndTheTurn) {
  const auto audio = signal(5, {{0.5, 1.5}, {1.9, 3.0}});  // a 400 ms pause
  TurnDetectionOptions o;
  o.silence_duration_ms = 600;
  ASSERT_EQ(detect(audio, o).size(), 1u);
  o.silence_duration_ms = 200;
  EXPECT_EQ(detect(audio, o).size(), 2u);
}

TEST(TurnDetector, SteadyNoiseAndClicksAreNotSpeech) {
  TurnDetectionOptions o;
  EXPECT_TRUE(detect(signal(4, {}, -30), o).empty());  // loud steady noise from the first sample
  EXPECT_TRUE(detect(signal(4, {}, -120), o).empty());  // near-digital silence
  EXPECT_TRUE(detect(signal(4, {{1.0, 1.02}, {2.0, 2.02}}), o).empty());  // 20 ms clicks
  // The same vowel 18 dB above the noise is speech at threshold 0.5 (12 dB), not at 1 (20 dB).
  const auto quiet = signal(4, {{1.0, 2.5}}, -40, -22);
  EXPECT_EQ(detect(quiet, o).size(), 1u);
  o.threshold = 1;
  EXPECT_TRUE(detect(quiet, o).empty());
}

// Room noise is not steady: each 10 ms frame of a recording's pause is a few dB above or below
// the last (jfk.wav's pauses: 10 ms levels spread over 8 dB around their median). Here every
// frame's gain is drawn uniformly within +-`spread_db`.
void make_noise_fluctuate(std::vector<float>& audio, double spread_db, std::uint32_t seed = 11) {
  std::mt19937 random(seed);
  std::uniform_real_distribution<double> gain_db(-spread_db, spread_db);
  for (std::size_t at = 0; at < audio.size(); at += 160) {
    const auto gain = static_cast<float>(std::pow(10, gain_db(random) / 20));
    for (std::size_t i = at; i < std::min(at + 160, audio.size()); ++i) audio[i] *= gain;
  }
}

TEST(TurnDetector, APauseInFluctuatingRoomNoiseEndsTheTurn) {
  // Speech 30 dB over noise (-50 dBFS) whose frames spread over +-4 dB, pauses of 1.1 s and
  // 0.7 s as in jfk.wav: the floor's minimum would sit 4 dB under the noise's typical frame.
  auto audio = signal(7, {{0.5, 2.0}, {3.1, 4.2}, {4.9, 6.0}}, -50, -20);
  make_noise_fluctuate(audio, 4);
  const auto turns = detect(audio, TurnDetectionOptions{});
  ASSERT_EQ(turns.size(), 3u);
  const double ends[3] = {2.0, 4.2, 6.0};
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_NEAR(turns[i].speech_end, at(ends[i]), 1600);  // the last syllable's fade, as above
  }
}

TEST(TurnDetector, LoneLoudFramesInAPauseDoNotHoldTheTurn) {
  // After the speech, a 10 ms burst 10 dB over the noise every 100 ms (a ticking clock,
  // crackle): each one is over the continuation bound, none is 30 ms of sound.
  auto audio = signal(4, {{0.5, 1.5}}, -55);
  std::mt19937 random(5);
  std::normal_distribution<float> gauss(0, static_cast<float>(std::pow(10, -45.0 / 20)));
  for (double t = 1.6; t < 3.5; t += 0.1) {
    for (std::int64_t i = at(t); i < at(t) + 160; ++i) audio[static_cast<std::size_t>(i)] += gauss(random);
  }
  const auto turns = detect(audio, TurnDetectionOptions{});
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_NEAR(turns[0].speech_end, at(1.5), 1600);
  EXPECT_LT(turns[0].audio_end, at(2.2));
}

TEST(TurnDetector, ABreathFarBelowTheSpeechDoesNotHoldTheTurn) {
  // A quiet room (-75 dBFS) and an exhale 200 ms after the speech: 400 ms of noise at
  // -54 dBFS, 21 dB over the room (past the margins over the noise floor) but 34 dB under
  // the speech.
  auto audio = signal(4, {{0.5, 1.5}}, -75, -20);
  std::mt19937 random(9);
  std::normal_distribution<float> gauss(0, static_cast<float>(std::pow(10, -54.0 / 20)));
  for (std::int64_t i = at(1.7); i < at(2.1); ++i) audio[static_cast<std::size_t>(i)] += gauss(random);
  const auto turns = detect(audio, TurnDetectionOptions{});
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_NEAR(turns[0].speech_end, at(1.5), 1600);
  EXPECT_LT(turns[0].audio_end, at(2.2));
}

TEST(TurnDetector, ResetEndsATurnWithoutAStop) {
  const auto audio = signal(3, {{0.5, 2.5}});
  TurnDetector detector(TurnDetectionOptions{});
  Recorder recorder;
  detector.push(std::span(audio).first(at(1.5)), recorder);
  ASSERT_TRUE(detector.in_speech());
  detector.reset();
  EXPECT_FALSE(detector.in_speech());
  detector.push(std::span(audio).subspan(at(1.5)), recorder);
  ASSERT_EQ(recorder.turns.size(), 2u);  // the speech after the reset is a new turn
  EXPECT_EQ(recorder.turns[0].speech_end, -1);
  EXPECT_GE(recorder.turns[1].audio_start, at(1.5));  // its padding stays after the reset
}

TEST(TurnDetector, OptionsOutOfRangeAreNamed) {
  const auto message = [](TurnDetectionOptions o) {
    try {
      TurnDetector detector(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message({1.5, 300, 500}).substr(0, 10), "threshold:");
  EXPECT_EQ(message({std::nan(""), 300, 500}).substr(0, 10), "threshold:");
  EXPECT_EQ(message({0.5, -1, 500}).substr(0, 18), "prefix_padding_ms:");
  EXPECT_EQ(message({0.5, 300, 5}).substr(0, 20), "silence_duration_ms:");
  EXPECT_EQ(message({0.5, 300, 500}), "accepted");
}

// numbers.wav: two phrases 0.64 s apart, with the recording noise of the samples.
TEST(TurnDetector, FindsThePhrasesOfARecordingWithinAFewFrames) {
  auto audio = load_audio_file(testing::source_path("samples/numbers.wav"), kRate);
  audio.resize(audio.size() + kRate);  // a second of silence after it: the last turn ends
  std::ifstream in(testing::source_path("samples/numbers.json"));
  const auto words = nlohmann::json::parse(in)["words"];
  const auto turns = detect(audio, TurnDetectionOptions{});
  ASSERT_EQ(turns.size(), 2u);
  // Phrase edges: "four" .. "two", "nine" .. "twelve".
  const auto time = [&](int word, int edge) { return words[word][edge].get<double>(); };
  const double edges[2][2] = {{time(0, 1), time(3, 2)}, {time(4, 1), time(6, 2)}};
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    EXPECT_NEAR(static_cast<double>(turns[i].speech_start) / kRate, edges[i][0], 0.1);
    EXPECT_NEAR(static_cast<double>(turns[i].speech_end) / kRate, edges[i][1], 0.15);
  }
}

}  // namespace
}  // namespace voxtral
