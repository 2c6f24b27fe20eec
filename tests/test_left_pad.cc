// The left padding's state, computed by a model's first stream and copied into later ones
// (model/left_pad.h): the same tokens and logit bits as computing it, fewer positions encoded.
#include <gtest/gtest.h>

#include "core/audio.h"
#include "model/left_pad.h"
#include "model/model.h"
#include "runtime/stream.h"
#include "runtime/transcriber.h"
#include "test_util.h"

namespace voxtral {
namespace {

using voxtral::testing::fixture;
using voxtral::testing::download;
using voxtral::testing::same_bits;
using voxtral::testing::source_path;

TEST(LeftPad, ZeroPositionsAreThoseWhoseFramesSeeOnlyZeros) {
  const ModelConfig real = ModelConfig::load(fixture("real/params.json"));
  // 32 positions of 1280 zeros: mel frames 0..254 end by sample 40960; position p reads
  // frames up to 8p + 7, so p = 0..30.
  EXPECT_EQ(zero_padding_positions(real, 32), 31);
  EXPECT_EQ(zero_padding_positions(real, 1), 0);
  EXPECT_EQ(zero_padding_positions(real, 0), 0);
  EXPECT_EQ(zero_padding_positions(real, 2), 1);
}

struct Recorded {
  std::vector<int> ids;
  std::vector<float> logits;
  StreamStats stats;
};

Recorded run(Model& model, const std::vector<float>& samples, int delay_ms, std::size_t piece) {
  Recorded r;
  StreamOptions options;
  options.delay_ms = delay_ms;
  options.on_step_logits = [&](int, std::int64_t, const Tensor& logits) {
    const auto row = download(model.backend(), logits);
    r.logits.insert(r.logits.end(), row.begin(), row.end());
  };
  Stream stream(model, options);
  for (std::size_t at = 0; at < samples.size(); at += piece) {
    stream.feed(std::span(samples).subspan(at, std::min(piece, samples.size() - at)));
  }
  stream.finish();
  r.ids = stream.ids();
  r.stats = stream.stats();
  return r;
}

TEST(LeftPad, LaterStreamsStartFromTheFirstStreamsStateWithTheSameBits) {
  const auto samples = load_audio_file(source_path("samples/commands.wav"), 16000);
  for (const char* precision : {"exact", "fast"}) {
    for (std::size_t piece : {std::size_t{1280}, std::size_t{4000}, samples.size()}) {
      SCOPED_TRACE(std::string(precision) + ", pieces of " + std::to_string(piece));
      auto options = testing::test_model_options();
      options.precision = precision;
      auto model = Model::load(source_path("models/demo"), options);
      ASSERT_FALSE(model->left_pad().encoder());
      const Recorded first = run(*model, samples, 480, piece);
      ASSERT_TRUE(model->left_pad().encoder());
      ASSERT_TRUE(model->left_pad().decoder(6));
      EXPECT_FALSE(model->left_pad().decoder(3));
      ASSERT_GT(first.ids.size(), 50u);
      const Recorded later = run(*model, samples, 480, piece);
      EXPECT_EQ(later.ids, first.ids);
      EXPECT_TRUE(same_bits(later.logits, first.logits)) << "logits differ";
      EXPECT_EQ(later.stats.encoder_positions, first.stats.encoder_positions - 31);

      // Another delay: the encoder's state is shared, the decoder's computed for it (from the
      // cached embeddings), then cached too; the bits of a model that never saw 480 ms.
      const Recorded other = run(*model, samples, 240, piece);
      EXPECT_TRUE(model->left_pad().decoder(3));
      const Recorded other_again = run(*model, samples, 240, piece);
      auto fresh = Model::load(source_path("models/demo"), options);
      const Recorded alone = run(*fresh, samples, 240, piece);
      EXPECT_EQ(other.stats.encoder_positions, alone.stats.encoder_positions - 31);
      EXPECT_EQ(other.ids, alone.ids);
      EXPECT_TRUE(same_bits(other.logits, alone.logits)) << "logits differ";
      EXPECT_TRUE(same_bits(other_again.logits, alone.logits)) << "logits differ";
    }
  }
}

// Continuous mode restarts the decoder at the model's length limit: each new segment starts
// from the cached state too, with the text of separate runs.
TEST(LeftPad, NewSegmentsStartFromIt) {
  auto model = Model::load(fixture("tiny-b"), testing::test_model_options());
  const auto samples = load_audio_file(fixture("audio/speech_long.wav"), 16000);
  std::vector<float> long_audio;
  while (long_audio.size() < 16000u * 90) long_audio.insert(long_audio.end(), samples.begin(), samples.end());
  StreamOptions options;
  options.continuous = true;
  Stream stream(*model, options);
  stream.feed(long_audio);
  stream.finish();
  const StreamStats& s = stream.stats();
  ASSERT_GE(s.segments, 2);
  // Every segment but the first skips the 31 zero positions.
  EXPECT_EQ(s.positions - s.encoder_positions, 31 * (s.segments - 1));
}

}  // namespace
}  // namespace voxtral
