// The streaming engine: any chunking of the input, then finish, gives the tokens of the
// offline run (here: the ids transformers recorded); flush and continuous mode behave like
// separate offline runs; memory stays flat on endless input.
#include <gtest/gtest.h>

#include <malloc.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/audio.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/stream.h"
#include "runtime/transcriber.h"
#include "test_util.h"

#if defined(__SANITIZE_ADDRESS__)
extern "C" std::size_t __sanitizer_get_current_allocated_bytes();  // from the ASan runtime
#endif

namespace voxtral {
namespace {

using voxtral::testing::fixture;

using voxtral::testing::fixture_clips;

ModelOptions cpu() { return voxtral::testing::test_model_options(); }

// Feeds `samples` in random pieces of 1..max_piece samples.
std::vector<int> stream_ids(Model& model, const std::vector<float>& samples, StreamOptions options, std::mt19937& rng,
                            std::size_t max_piece) {
  Stream stream(model, options);
  std::uniform_int_distribution<std::size_t> size(1, max_piece);
  for (std::size_t at = 0; at < samples.size();) {
    const std::size_t n = std::min(size(rng), samples.size() - at);
    stream.feed(std::span(samples).subspan(at, n));
    at += n;
  }
  stream.finish();
  return stream.ids();
}

TEST(Stream, AnyChunkingGivesTheOfflineTokens) {
  std::mt19937 rng(20261127);
  for (const auto& clip : fixture_clips()) {
    auto model = Model::load(fixture(clip.model), cpu());
    const auto samples = load_audio_file(fixture(clip.info["audio"]), 16000);
    const auto want = clip.info["greedy_ids"].get<std::vector<int>>();
    StreamOptions options;
    options.delay_ms = clip.info["delay_ms"];
    // From single samples to several seconds per piece, with and without an interval.
    for (std::size_t max_piece : {std::size_t{7}, std::size_t{700}, std::size_t{5000}, std::size_t{64000}}) {
      for (double interval : {0.0, 0.37}) {
        if (max_piece == 7 && interval > 0) continue;  // 1..7-sample pieces: once is enough (slow)
        options.processing_interval_s = interval;
        EXPECT_EQ(stream_ids(*model, samples, options, rng, max_piece), want)
            << clip.info["tag"] << " pieces up to " << max_piece << " samples, interval " << interval;
      }
    }
  }
}

TEST(Stream, TeacherForcingDecodesTheGivenTokens) {
  const auto clips = fixture_clips();
  const auto& clip = clips.front();
  auto model = Model::load(fixture(clip.model), cpu());
  const auto samples = load_audio_file(fixture(clip.info["audio"]), 16000);
  auto teacher = clip.info["greedy_ids"].get<std::vector<int>>();
  ASSERT_GE(teacher.size(), 4u);
  std::reverse(teacher.begin(), teacher.end());  // not what the model would choose
  teacher.resize(teacher.size() / 2);
  std::erase(teacher, model->tokenizer().eos_id());
  StreamOptions options;
  options.delay_ms = clip.info["delay_ms"];
  options.ignore_eos = true;
  options.teacher_ids = teacher;
  std::vector<int> inputs;
  options.on_step_logits = [&](int input, std::int64_t, const Tensor&) { inputs.push_back(input); };
  std::mt19937 rng(1);
  const auto ids = stream_ids(*model, samples, options, rng, 4000);
  ASSERT_GT(ids.size(), teacher.size());
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(teacher.size())), teacher);
  // Each forced token is the next step's input.
  ASSERT_GT(inputs.size(), teacher.size());
  EXPECT_EQ(std::vector<int>(inputs.begin() + 1, inputs.begin() + 1 + static_cast<std::ptrdiff_t>(teacher.size())),
            teacher);
}

TEST(Stream, OfflinePiecesEndOnWholeEncoderChunks) {
  auto model = Model::load(fixture("tiny-a"), cpu());
  const auto samples = load_audio_file(fixture("audio/speech_long.wav"), 16000);
  StreamOptions options;
  options.encoder_chunk = 40;  // more than the 32 positions of left padding, as offline (128)
  const std::int64_t chunk_input = 40 * model->config().samples_per_position();
  Stream stream(*model, options);
  // The first piece completes the first chunk (left padding and the mel window's look-ahead
  // included); after it, every chunk needs exactly a chunk's worth of audio more.
  const std::int64_t first = stream.input_until_next_chunk();
  ASSERT_GT(first, 0);
  ASSERT_LT(first, chunk_input);
  stream.feed(std::span(samples).first(static_cast<std::size_t>(first)));
  EXPECT_EQ(stream.input_until_next_chunk(), chunk_input);
  stream.feed(std::span(samples).subspan(static_cast<std::size_t>(first), 100));
  EXPECT_EQ(stream.input_until_next_chunk(), chunk_input - 100);

  // With a processing interval the encoder waits although the audio is there: the answer is
  // a chunk's worth, never a trickle of single samples.
  options.processing_interval_s = 10.0;
  Stream waiting(*model, options);
  const std::int64_t ready = waiting.input_until_next_chunk();
  ASSERT_GE(samples.size(), static_cast<std::size_t>(ready + chunk_input));
  waiting.feed(std::span(samples).first(static_cast<std::size_t>(ready + chunk_input)));
  EXPECT_EQ(waiting.input_until_next_chunk(), chunk_input);

  // And the offline path fed this way (with an interval too) gives the recorded tokens.
  for (const auto& clip : fixture_clips()) {
    if (clip.model != "tiny-a") continue;
    const auto audio = load_audio_file(fixture(clip.info["audio"]), 16000);
    StreamOptions offline;
    offline.delay_ms = clip.info["delay_ms"];
    offline.processing_interval_s = 0.37;
    EXPECT_EQ(transcribe(*model, audio, offline).ids, clip.info["greedy_ids"].get<std::vector<int>>()) << clip.info["tag"];
  }
}

TEST(Stream, FlushEndsASegmentLikeASeparateRun) {
  auto model = Model::load(fixture("tiny-a"), cpu());
  const auto a = load_audio_file(fixture("audio/speech_short.wav"), 16000);
  const auto b = load_audio_file(fixture("audio/noise.wav"), 16000);
  Stream stream(*model, StreamOptions{});
  stream.feed(a);
  stream.flush();
  const auto after_flush = stream.take_pieces();
  ASSERT_FALSE(after_flush.empty());
  EXPECT_EQ(after_flush.back().id, -1);  // the segment-end marker
  stream.feed(b);
  stream.finish();

  auto expected = transcribe(*model, a).ids;
  const auto second = transcribe(*model, b).ids;
  expected.insert(expected.end(), second.begin(), second.end());
  EXPECT_EQ(stream.ids(), expected);
  EXPECT_EQ(stream.stats().segments, 2);
}

TEST(Stream, PiecesCarryTimesInOrder) {
  auto model = Model::load(fixture("tiny-a"), cpu());
  const auto samples = load_audio_file(fixture("audio/speech_long.wav"), 16000);
  const auto t = transcribe(*model, samples);
  const double duration = static_cast<double>(samples.size()) / 16000.0;
  double last = 0;
  for (const auto& p : t.pieces) {
    EXPECT_GE(p.time, last - 1e-9);
    EXPECT_GE(p.time, 0.0);
    EXPECT_LE(p.time, duration + 1e-9);
    EXPECT_GE(p.audio_end, p.time);
    last = p.time;
  }
  // The first token comes from position 38 = 32 left-padding + 6 delay: audio time 0.
  ASSERT_FALSE(t.pieces.empty());
  EXPECT_EQ(t.pieces.front().position, 38);
  EXPECT_DOUBLE_EQ(t.pieces.front().time, 0.0);
  EXPECT_NEAR(t.pieces.front().audio_end, 7 * 0.08, 1e-9);
}

TEST(Stream, AlternativesAreRankedProbabilities) {
  auto model = Model::load(fixture("tiny-a"), cpu());
  const auto samples = load_audio_file(fixture("audio/speech_short.wav"), 16000);
  StreamOptions options;
  options.alternatives = 3;
  options.alternative_cutoff = 0.0;
  const auto t = transcribe(*model, samples, options);
  int checked = 0;
  for (const auto& p : t.pieces) {
    if (p.id < 0) continue;
    ASSERT_EQ(p.alternatives.size(), 4u);
    EXPECT_EQ(p.alternatives.front().id, p.id);  // greedy: the most likely token
    float total = 0;
    for (std::size_t i = 0; i < p.alternatives.size(); ++i) {
      total += p.alternatives[i].probability;
      if (i > 0) {
        EXPECT_LE(p.alternatives[i].probability, p.alternatives[i - 1].probability);
      }
    }
    EXPECT_LE(total, 1.0f + 1e-5f);
    EXPECT_GT(p.alternatives.front().probability, 0.0f);
    ++checked;
  }
  EXPECT_GT(checked, 10);
  EXPECT_EQ(t.ids, transcribe(*model, samples).ids);  // asking for alternatives changes nothing
}

TEST(Stream, AControlTokenIsNeverAnAlternative) {
  // Issue 14 review: "[STREAMING_PAD]" was offered beside " music". A control token writes no
  // text: only when chosen is it listed, with empty text (its probability still scores it).
  auto model = Model::load(fixture("tiny-a"), cpu());
  const Tokenizer& tokenizer = model->tokenizer();
  const auto samples = load_audio_file(fixture("audio/speech_short.wav"), 16000);
  StreamOptions options;
  options.alternatives = 8;
  options.alternative_cutoff = 0.0;
  const auto t = transcribe(*model, samples, options);
  int chosen_control = 0;
  for (const auto& p : t.pieces) {
    if (p.id < 0) continue;
    ASSERT_EQ(p.alternatives.size(), 9u);
    for (std::size_t i = 0; i < p.alternatives.size(); ++i) {
      const auto& a = p.alternatives[i];
      if (a.id == p.id) continue;
      EXPECT_FALSE(tokenizer.is_special(a.id)) << "position " << p.position << ": " << tokenizer.special_name(a.id);
    }
    if (tokenizer.is_special(p.id)) {
      ++chosen_control;
      EXPECT_EQ(p.alternatives.front().id, p.id);
      EXPECT_EQ(p.alternatives.front().text, "");
    }
  }
  EXPECT_GE(chosen_control, 3);  // the fixture's greedy ids begin [STREAMING_PAD] x3
}

// Heap bytes in use now (not resident pages: freed memory that the allocator, or ASan's
// quarantine, keeps would look like growth).
std::size_t heap_in_use() {
#if defined(__SANITIZE_ADDRESS__)
  return __sanitizer_get_current_allocated_bytes();
#else
  return mallinfo2().uordblks;
#endif
}

TEST(Stream, EndlessInputKeepsMemoryFlat) {
  // tiny-b: encoder window 40 frames, decoder window 32 positions, 512 positions (37 s of
  // input) per segment. Ten minutes of audio pass every one of them many times.
  auto model = Model::load(fixture("tiny-b"), cpu());
  const auto clip = load_audio_file(fixture("audio/speech_long.wav"), 16000);
  StreamOptions options;
  options.continuous = true;
  Stream stream(*model, options);
  std::size_t after_warmup = 0, most_buffered = 0;
  const std::size_t second = 16000;
  for (std::size_t fed = 0; fed < 600 * second;) {
    const std::size_t n = std::min<std::size_t>(3 * second + 17, 600 * second - fed);
    std::vector<float> piece(n);
    for (std::size_t i = 0; i < n; ++i) piece[i] = clip[(fed + i) % clip.size()];
    stream.feed(piece);
    stream.take_pieces();
    fed += n;
    most_buffered = std::max(most_buffered, stream.buffered_samples());
    if (after_warmup == 0 && fed > 90 * second) after_warmup = heap_in_use();
  }
  stream.finish();
  EXPECT_GE(stream.stats().segments, 16);
  EXPECT_LE(most_buffered, std::size_t{32 * 1280 + 3 * 16000 + 65536 + 400});
  EXPECT_LE(heap_in_use(), after_warmup + (std::size_t{1} << 20)) << "memory grew on endless input";
}

// A known length sizes the decoder's cache to the file, in continuous mode too (the CLI's
// default): the recorded ids, and more audio than announced is a clear error, not a cache
// that silently wraps.
TEST(Stream, ExpectedLengthSizesTheCacheAndIsEnforced) {
  for (const auto& clip : fixture_clips()) {
    auto model = Model::load(fixture(clip.model), cpu());
    const auto samples = load_audio_file(fixture(clip.info["audio"]), 16000);
    StreamOptions options;
    options.delay_ms = clip.info["delay_ms"];
    options.continuous = true;
    options.expected_samples = static_cast<std::int64_t>(samples.size());
    Stream stream(*model, options);
    stream.feed(samples);
    stream.finish();
    EXPECT_EQ(stream.ids(), clip.info["greedy_ids"].get<std::vector<int>>()) << clip.info["tag"];
  }
  auto model = Model::load(fixture("tiny-a"), cpu());
  StreamOptions options;
  options.continuous = true;
  options.expected_samples = 16000;
  Stream stream(*model, options);
  stream.feed(std::vector<float>(12000, 0.0f));
  try {
    stream.feed(std::vector<float>(4001, 0.0f));
    FAIL() << "more audio than expected was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("16000 samples it was told to expect"), std::string::npos) << e.what();
  }
}

TEST(Stream, WithoutContinuousModeTooLongAudioIsAnError) {
  auto model = Model::load(fixture("tiny-b"), cpu());
  Stream stream(*model, StreamOptions{});
  const std::vector<float> minute(60 * 16000, 0.0f);
  EXPECT_THROW(stream.feed(minute), Error);
}

}  // namespace
}  // namespace voxtral
