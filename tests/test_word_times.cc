// Word and segment times (model/word_times.h, transcript/segments.h): the timer on energy frames
// made by hand, the segmenter on pieces made by hand, and the demo model's word times
// against the truth: the shipped samples (samples/*.json) and held-out espeak-ng sentences
// synthesized here, word by word, so that every word's first and last sample is known.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/audio.h"
#include "runtime/transcriber.h"
#include "model/word_times.h"
#include "transcript/segments.h"
#include "test_util.h"
#include "word_time_checks.h"

namespace voxtral {
namespace {

using testing::source_path;
using testing::TimedWord;

// ---- WordTimer on frames made by hand: 10 ms hop, levels in dB.

constexpr double kHop = 0.01;
constexpr double kLookahead = 0.48;

double power(double db) { return std::pow(10.0, db / 10.0); }

// Frames from 0 to `until` seconds at `noise_db`, louder (`speech_db`) inside the spans.
void add_frames(WordTimer& timer, double from, double until, const std::vector<std::pair<double, double>>& spans,
                double noise_db = -60, double speech_db = -20) {
  for (double t = from; t < until - 1e-9; t += kHop) {
    bool in = false;
    for (const auto& [a, b] : spans) in = in || (t >= a - 1e-9 && t < b - 1e-9);
    timer.add_frame(t, power(in ? speech_db : noise_db));
  }
}

WordTimer make_timer() { return WordTimer(kHop, kLookahead, 10.0); }

TEST(WordTimer, AWordStartsAtTheOnsetOfItsSound) {
  WordTimer timer = make_timer();
  add_frames(timer, 0, 3, {{0.50, 1.00}, {1.20, 1.70}});
  const WordSpan first = timer.next_word(1.02);
  EXPECT_NEAR(first.start, 0.49, 0.011);  // one hop before the first loud frame's centre
  EXPECT_DOUBLE_EQ(first.end, 1.02);
  EXPECT_NEAR(timer.next_word(1.74).start, 1.19, 0.011);
}

TEST(WordTimer, ThePreviousWordsTailIsSkipped) {
  WordTimer timer = make_timer();
  add_frames(timer, 0, 3, {{0.50, 1.00}, {1.20, 1.70}});
  timer.next_word(0.95);  // estimated 50 ms before the sound ends
  EXPECT_NEAR(timer.next_word(1.74).start, 1.19, 0.011);
}

TEST(WordTimer, WordsThatRunTogetherAbut) {
  WordTimer timer = make_timer();
  add_frames(timer, 0, 3, {{0.50, 1.70}});
  EXPECT_NEAR(timer.next_word(1.00).start, 0.49, 0.011);
  const WordSpan second = timer.next_word(1.70);
  EXPECT_DOUBLE_EQ(second.start, 1.00);
  EXPECT_DOUBLE_EQ(second.end, 1.70);
}

TEST(WordTimer, TheThresholdFollowsTheNoiseFloor) {
  // Loud noise (-35 dB) under louder speech: the noise is not taken for speech.
  WordTimer timer = make_timer();
  add_frames(timer, 0, 3, {{1.30, 1.80}}, -35, -12);
  EXPECT_NEAR(timer.next_word(1.84).start, 1.29, 0.011);
}

TEST(WordTimer, WithoutEvidenceAWordLastsTheShortestTime) {
  WordTimer timer = make_timer();
  const WordSpan first = timer.next_word(1.0);
  EXPECT_DOUBLE_EQ(first.start, 1.0 - WordTimer::kMinWordSeconds);
  const WordSpan second = timer.next_word(1.03);  // no room: it starts where the previous word ended
  EXPECT_DOUBLE_EQ(second.start, 1.0);
  EXPECT_DOUBLE_EQ(second.end, 1.03);
}

TEST(WordTimer, AudioBeyondTheLookaheadChangesNothing) {
  // What the encoder has run ahead must not change a word's times (live and offline agree).
  WordTimer a = make_timer(), b = make_timer();
  add_frames(a, 0, 1.5, {{0.50, 1.00}});
  add_frames(b, 0, 1.5, {{0.50, 1.00}});
  add_frames(b, 1.5, 4, {{1.5, 4.0}}, -60, 0);  // very loud, after end + lookahead
  const WordSpan x = a.next_word(1.0), y = b.next_word(1.0);
  EXPECT_DOUBLE_EQ(x.start, y.start);
  EXPECT_DOUBLE_EQ(x.end, y.end);
}

TEST(WordTimer, MemoryIsBoundedForEndlessInput) {
  WordTimer timer(kHop, kLookahead, 6.0);
  add_frames(timer, 0, 3600, {{100, 200}});  // an hour
  EXPECT_LE(timer.frames_held(), 602u);
}

// ---- Segmenter on pieces made by hand.

TextPiece word_piece(const std::string& text, double start, double end) {
  TextPiece p;
  p.id = 1000;
  p.text = text;
  p.start = start;
  p.end = end;
  p.time = end;
  p.audio_end = end + 0.2;  // (the stream has heard a little past the word)
  return p;
}

std::vector<Segment> segment(const std::vector<TextPiece>& pieces, double audio_end) {
  Segmenter s;
  std::vector<Segment> out;
  for (const auto& p : pieces) {
    for (auto& seg : s.add(p)) out.push_back(std::move(seg));
  }
  TextPiece last;
  last.id = -1;
  last.time = last.audio_end = audio_end;
  for (auto& seg : s.add(last)) out.push_back(std::move(seg));
  for (auto& seg : s.finish()) out.push_back(std::move(seg));
  return out;
}

TEST(Segmenter, BreaksOnPausesNotOnLongWords) {
  const auto segments = segment({word_piece(" a", 0.10, 0.30), word_piece(" temperature", 0.40, 1.60),
                                 word_piece(" b", 1.75, 1.95), word_piece(" c", 2.50, 2.80)},
                                3.0);
  ASSERT_EQ(segments.size(), 2u);
  EXPECT_EQ(segments[0].text, "a temperature b");
  EXPECT_DOUBLE_EQ(segments[0].start, 0.10);
  EXPECT_DOUBLE_EQ(segments[0].end, 1.95);
  EXPECT_EQ(segments[1].text, "c");
  EXPECT_DOUBLE_EQ(segments[1].start, 2.50);
}

TEST(Segmenter, CuesLastAtLeastOneSecondWithoutOverlapOrPassingTheAudio) {
  const auto segments = segment({word_piece(" yes", 1.00, 1.20), word_piece(" no", 1.80, 2.00)}, 2.30);
  ASSERT_EQ(segments.size(), 2u);
  EXPECT_DOUBLE_EQ(segments[0].start, 1.00);
  EXPECT_DOUBLE_EQ(segments[0].end, 1.80);  // 1 s would reach past the next cue's start
  EXPECT_DOUBLE_EQ(segments[1].start, 1.80);
  EXPECT_DOUBLE_EQ(segments[1].end, 2.30);  // 1 s would reach past the audio
  const auto alone = segment({word_piece(" yes", 1.00, 1.20)}, 5.0);
  ASSERT_EQ(alone.size(), 1u);
  EXPECT_DOUBLE_EQ(alone[0].end, 2.00);
  EXPECT_DOUBLE_EQ(alone[0].words[0].end, 1.20);  // words keep the speech's times
}

TEST(Segmenter, PiecesOfAWordShareItsTimes) {
  const auto segments = segment({word_piece(" kit", 0.50, 0.90), word_piece("chen", 0.50, 0.90)}, 2.0);
  ASSERT_EQ(segments.size(), 1u);
  ASSERT_EQ(segments[0].words.size(), 1u);
  EXPECT_EQ(segments[0].words[0].text, "kitchen");
  EXPECT_DOUBLE_EQ(segments[0].words[0].start, 0.50);
  EXPECT_DOUBLE_EQ(segments[0].words[0].end, 0.90);
}

// ---- The demo model against the truth.

Model& demo() {
  static std::unique_ptr<Model> model = Model::load(source_path("models/demo"), testing::test_model_options());
  return *model;
}

struct Timed {
  std::vector<TimedWord> words;
  std::vector<Segment> segments;
  std::vector<TextPiece> pieces;
};

Timed timed(const std::vector<TextPiece>& pieces) {
  Timed t;
  t.pieces = pieces;
  Segmenter s;
  for (const auto& p : pieces) {
    for (auto& seg : s.add(p)) t.segments.push_back(std::move(seg));
  }
  for (auto& seg : s.finish()) t.segments.push_back(std::move(seg));
  for (const auto& w : s.all_words()) t.words.push_back({w.text, w.start, w.end});
  return t;
}

Timed offline(std::span<const float> samples) { return timed(transcribe(demo(), samples).pieces); }

// Fed in uneven pieces (1, 4, 13, 40, ... samples), as a live source would.
Timed live(std::span<const float> samples) {
  Stream stream(demo(), StreamOptions{});
  std::vector<TextPiece> pieces;
  std::size_t at = 0, take = 1;
  while (at < samples.size()) {
    const std::size_t n = std::min(take, samples.size() - at);
    stream.feed(samples.subspan(at, n));
    at += n;
    take = take * 3 + 1;
    if (take > 30000) take = 7;
    for (auto& p : stream.take_pieces()) pieces.push_back(std::move(p));
  }
  stream.finish();
  for (auto& p : stream.take_pieces()) pieces.push_back(std::move(p));
  return timed(pieces);
}

nlohmann::json sample_doc(const std::string& name) {
  std::ifstream in(source_path("samples/" + name + ".json"));
  return nlohmann::json::parse(in);
}

double mean_db(std::span<const float> x, double from, double to) {
  const auto a = static_cast<std::size_t>(std::max(0.0, from) * 16000), b = static_cast<std::size_t>(to * 16000);
  double sum = 0;
  for (std::size_t i = a; i < b && i < x.size(); ++i) sum += static_cast<double>(x[i]) * x[i];
  return 10 * std::log10(sum / static_cast<double>(std::max<std::size_t>(1, b - a)) + 1e-12);
}

// The truth we compare with must itself be right: every true word is at least 10 dB louder
// than the pause next to it (pauses of 20 ms or more, 5 ms clear of the words).
void expect_truth_matches_audio(std::span<const float> audio, const std::vector<TimedWord>& truth) {
  for (std::size_t i = 0; i + 1 < truth.size(); ++i) {
    const double from = truth[i].end + 0.005, to = truth[i + 1].start - 0.005;
    if (to - from < 0.02) continue;
    const double pause = mean_db(audio, from, to);
    EXPECT_GE(mean_db(audio, truth[i].start, truth[i].end), pause + 10) << truth[i].text;
    EXPECT_GE(mean_db(audio, truth[i + 1].start, truth[i + 1].end), pause + 10) << truth[i + 1].text;
  }
}

TEST(WordTimes, TheShippedSamplesOnTarget) {
  testing::TimeErrors all;
  for (const std::string name : {"timer", "lights", "numbers", "commands"}) {
    SCOPED_TRACE(name);
    const auto audio = load_audio_file(source_path("samples/" + name + ".wav"), 16000);
    const auto truth = testing::true_words(sample_doc(name));
    expect_truth_matches_audio(audio, truth);
    const Timed got = offline(audio);
    all.add(testing::time_errors(truth, got.words));
  }
  testing::expect_on_target(all, "samples/*.wav (4 clips)");
}

// The audio times `gain`, written back as 16-bit samples (as a WAV file would be).
std::vector<float> with_gain(std::span<const float> audio, double gain) {
  std::vector<float> out(audio.size());
  for (std::size_t i = 0; i < audio.size(); ++i) {
    const double v = std::clamp(std::round(static_cast<double>(audio[i]) * gain * 32768.0), -32768.0, 32767.0);
    out[i] = static_cast<float>(v / 32768.0);
  }
  return out;
}

TEST(WordTimes, AGainChangesNoTime) {
  // Issue 14 review: at 1.05x "play the music" and "add coffee ..." became one cue and "add"
  // started 0.7 s early; at +3 dB "close" started 0.7 s early. The threshold is relative to
  // the audio's own levels, so a gain moves no word (tolerance: one 10 ms frame, for the
  // rounding to 16 bits) and every gain stays on target.
  constexpr double kTolerance = 0.011, kPosition = 0.08;
  const std::vector<std::pair<std::string, double>> gains = {
      {"-12 dB", std::pow(10.0, -12 / 20.0)}, {"-6 dB", std::pow(10.0, -6 / 20.0)}, {"1.05x", 1.05},
      {"+3 dB", std::pow(10.0, 3 / 20.0)},    {"+6 dB", std::pow(10.0, 6 / 20.0)}};
  std::map<std::string, testing::TimeErrors> errors;
  for (const std::string name : {"timer", "lights", "numbers", "commands"}) {
    const auto audio = load_audio_file(source_path("samples/" + name + ".wav"), 16000);
    const auto truth = testing::true_words(sample_doc(name));
    const Timed base = offline(audio);
    for (const auto& [label, gain] : gains) {
      SCOPED_TRACE(name + " at " + label);
      const Timed got = offline(with_gain(audio, gain));
      errors[label].add(testing::time_errors(truth, got.words));
      EXPECT_EQ(got.segments.size(), base.segments.size());
      // Against the times at the original level, word by word. The model itself may hear a
      // word differently at another level (at -12 dB it mishears three of the 24 commands words
      // and emits a few words one 80 ms position early or late): that is recognition, not
      // timing, so ends may move by one position; starts, found in the audio, may not.
      const auto moved = testing::time_errors(base.words, got.words);
      EXPECT_GE(static_cast<double>(moved.start.size()), 0.85 * static_cast<double>(base.words.size()));
      for (std::size_t i = 0; i < moved.start.size(); ++i) {
        EXPECT_LE(moved.start[i], kTolerance) << "word " << i;
        EXPECT_LE(moved.end[i], kPosition + kTolerance) << "word " << i;
      }
    }
  }
  for (const auto& [label, e] : errors) testing::expect_on_target(e, "samples/*.wav at " + label);
}

TEST(WordTimes, LiveStreamingGivesTheOfflineTimes) {
  const auto audio = load_audio_file(source_path("samples/commands.wav"), 16000);
  const Timed a = offline(audio), b = live(audio);
  ASSERT_EQ(a.pieces.size(), b.pieces.size());
  for (std::size_t i = 0; i < a.pieces.size(); ++i) {
    EXPECT_EQ(a.pieces[i].text, b.pieces[i].text) << i;
    EXPECT_DOUBLE_EQ(a.pieces[i].start, b.pieces[i].start) << i;
    EXPECT_DOUBLE_EQ(a.pieces[i].end, b.pieces[i].end) << i;
  }
}

TEST(WordTimes, TheFiveCommandsAreFiveSegments) {
  // samples/commands.wav: five commands, 0.5-0.75 s apart; words within them pause 0.2 s at most.
  const auto audio = load_audio_file(source_path("samples/commands.wav"), 16000);
  const Timed got = offline(audio);
  std::vector<std::string> texts;
  for (const auto& s : got.segments) texts.push_back(s.text);
  EXPECT_THAT(texts, ::testing::ElementsAre("set the temperature to twenty one degrees", "close the garage door",
                                            "play the music", "add coffee to the shopping list",
                                            "volume down ten percent"));
}

TEST(WordTimes, NoTimePassesTheEndOfTheAudio) {
  // Cut inside "degrees" (3.68-4.27 s): what the model still says lies within the audio.
  auto audio = load_audio_file(source_path("samples/commands.wav"), 16000);
  audio.resize(static_cast<std::size_t>(4.10 * 16000));
  const Timed got = offline(audio);
  ASSERT_FALSE(got.words.empty());
  for (const auto& w : got.words) {
    EXPECT_LE(w.start, w.end) << w.text;
    EXPECT_LE(w.end, 4.10) << w.text;
  }
  for (const auto& s : got.segments) EXPECT_LE(s.end, 4.10) << s.text;
}

// ---- Held-out espeak-ng speech, made here.

constexpr int kRate = 16000;
constexpr float kLoud = 0.01f;  // a word's sound: samples above this (as make_samples.py)

// One word as espeak-ng says it alone, trimmed to 5 ms before its first loud sample and
// 10 ms after its last (tools/demo_model/corpus.py does the same for the training data).
std::vector<float> espeak_word(const std::string& word, const std::string& voice, int rate, int pitch,
                               const testing::TempDir& dir) {
  static std::map<std::string, std::vector<float>> cache;
  const std::string key = word + "|" + voice + "|" + std::to_string(rate) + "|" + std::to_string(pitch);
  if (auto it = cache.find(key); it != cache.end()) return it->second;
  const auto path = dir.path() / "word.wav";
  const std::string command = "espeak-ng -v " + voice + " -s " + std::to_string(rate) + " -p " + std::to_string(pitch) +
                              " -w '" + path.string() + "' '" + word + "'";
  if (std::system(command.c_str()) != 0) throw Error("espeak-ng failed (scripts/setup.sh installs it): " + command);
  const auto x = load_audio_file(path, kRate);
  std::size_t first = x.size(), last = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::fabs(x[i]) > kLoud) {
      first = std::min(first, i);
      last = i;
    }
  }
  if (first == x.size()) throw Error("espeak-ng said nothing for: " + command);
  const std::size_t a = first >= 80 ? first - 80 : 0, b = std::min(x.size(), last + 160);
  return cache[key] = std::vector<float>(x.begin() + static_cast<std::ptrdiff_t>(a), x.begin() + static_cast<std::ptrdiff_t>(b));
}

struct Spoken {
  std::vector<float> audio;
  std::vector<TimedWord> words;
  int sentences = 0;
};

// Sentences joined with a 0.6-0.9 s pause, words with 30-200 ms gaps, silence around them;
// then a gain of 0.3-1.2 and white noise 20-40 dB under the speech.
Spoken speak(const std::vector<std::string>& sentences, const std::string& voice, int rate, std::uint32_t seed,
             const testing::TempDir& dir) {
  std::mt19937 rng(seed);
  auto uniform = [&](double a, double b) { return a + (b - a) * (static_cast<double>(rng()) / 4294967296.0); };
  auto silence = [&](Spoken& s, double seconds) { s.audio.resize(s.audio.size() + static_cast<std::size_t>(seconds * kRate), 0.0f); };
  Spoken s;
  const int pitch = 40 + static_cast<int>(rng() % 21);
  silence(s, uniform(0.05, 0.4));
  for (std::size_t k = 0; k < sentences.size(); ++k) {
    if (k > 0) silence(s, uniform(0.6, 0.9));
    std::istringstream in(sentences[k]);
    bool first = true;
    for (std::string w; in >> w; first = false) {
      if (!first) silence(s, uniform(0.03, 0.2));
      const auto clip = espeak_word(w, voice, rate, pitch, dir);
      const double at = static_cast<double>(s.audio.size()) / kRate;
      s.words.push_back({w, at, at + static_cast<double>(clip.size()) / kRate});
      s.audio.insert(s.audio.end(), clip.begin(), clip.end());
    }
  }
  silence(s, uniform(0.1, 0.5));
  s.sentences = static_cast<int>(sentences.size());

  // Verify the truth before any noise: the loud samples lie in the words' spans, each span
  // beginning at most 5 ms before its first and ending at most 10 ms after its last.
  std::size_t w = 0;
  std::vector<std::size_t> first(s.words.size(), 0), last(s.words.size(), 0);
  for (std::size_t i = 0; i < s.audio.size(); ++i) {
    if (std::fabs(s.audio[i]) <= kLoud) continue;
    const double t = static_cast<double>(i) / kRate;
    while (w < s.words.size() && t >= s.words[w].end) ++w;
    EXPECT_TRUE(w < s.words.size() && t >= s.words[w].start) << "a loud sample outside the words at " << t << " s";
    if (w >= s.words.size()) break;
    if (first[w] == 0) first[w] = i;
    last[w] = i;
  }
  for (std::size_t i = 0; i < s.words.size(); ++i) {
    const double a = static_cast<double>(first[i]) / kRate, b = static_cast<double>(last[i] + 1) / kRate;
    EXPECT_GE(a, s.words[i].start) << s.words[i].text;
    EXPECT_LE(a, s.words[i].start + 0.005 + 1e-6) << s.words[i].text;
    EXPECT_LE(b, s.words[i].end) << s.words[i].text;
    EXPECT_GE(b, s.words[i].end - 0.010 - 1e-6) << s.words[i].text;
    EXPECT_GE(s.words[i].end - s.words[i].start, 0.05) << s.words[i].text;
  }

  const double gain = uniform(0.3, 1.2);
  double speech = 0;
  for (float& v : s.audio) {
    v = static_cast<float>(v * gain);
    speech += static_cast<double>(v) * v;
  }
  const double span = (s.words.back().end - s.words.front().start) * kRate;
  const double sigma = std::sqrt(speech / span / std::pow(10.0, uniform(20, 40) / 10));
  for (float& v : s.audio) {
    const double u1 = (rng() + 1.0) / 4294967297.0, u2 = rng() / 4294967296.0;
    v = std::clamp(static_cast<float>(v + sigma * std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2)), -1.0f, 1.0f);
  }
  return s;
}

TEST(WordTimes, HeldOutEspeakSentencesOnTarget) {
  // Sentences of the demo model's domain that its training and the shipped samples never
  // used, in the held-out voice variants and rates (models/demo/README.md).
  struct Clip {
    std::vector<std::string> sentences;
    std::string voice;
    int rate;
  };
  const std::vector<Clip> clips = {
      {{"turn off the bedroom fan", "call father tomorrow"}, "en-us+f5", 140},
      {{"set a timer for forty five seconds", "skip the song"}, "en-gb+m8", 205},
      {{"volume up thirty percent", "lock the back door"}, "en-029+benjamin", 140},
      {{"six two nine four", "seven thousand three hundred eighty"}, "en-gb-x-rp+Annie", 205},
      {{"set the temperature to eighteen degrees", "pause the radio"}, "en-us+klatt4", 140},
      {{"add water to the shopping list", "open the front door"}, "en-gb-scotland+grandma", 205},
      {{"turn on the garage heating", "three hundred twelve"}, "en-us-nyc+m8", 140},
      {{"call office now", "five eight one"}, "en-gb-x-gbclan+f5", 205},
  };
  testing::TempDir dir;
  testing::TimeErrors all;
  std::uint32_t seed = 2614;
  for (const auto& clip : clips) {
    SCOPED_TRACE(clip.sentences[0] + " / " + clip.sentences[1] + " (" + clip.voice + ")");
    const Spoken spoken = speak(clip.sentences, clip.voice, clip.rate, seed++, dir);
    const Timed got = offline(spoken.audio);
    all.add(testing::time_errors(spoken.words, got.words));
    EXPECT_EQ(got.segments.size(), 2u) << "the pause between the sentences, and only it, breaks the segment";
  }
  testing::expect_on_target(all, "held-out espeak-ng sentences (8 clips)");
}

}  // namespace
}  // namespace voxtral
