// Speculative decoding with pad drafts (runtime/speculation.h): the policy's choice of rows,
// and the engine's promise that the text, and on the CPU every logit bit, equal those of one
// row per step, while the demo model's real speech takes far fewer steps than tokens.
#include <gtest/gtest.h>

#include "core/audio.h"
#include "core/error.h"
#include "model/model.h"
#include "runtime/scheduled_model.h"
#include "runtime/speculation.h"
#include "runtime/stream.h"
#include "runtime/transcriber.h"
#include "test_util.h"

namespace voxtral {
namespace {

using voxtral::testing::download;
using voxtral::testing::same_bits;
using voxtral::testing::source_path;

TEST(SpeculationPolicy, ExpectedTokensIsTheGeometricSum) {
  EXPECT_DOUBLE_EQ(SpeculationPolicy::expected_tokens(0.5, 4), 1.875);
  EXPECT_DOUBLE_EQ(SpeculationPolicy::expected_tokens(0.0, 4), 1.0);
  EXPECT_DOUBLE_EQ(SpeculationPolicy::expected_tokens(1.0, 8), 8.0);
  EXPECT_DOUBLE_EQ(SpeculationPolicy::expected_tokens(0.9, 1), 1.0);
}

TEST(SpeculationPolicy, RowsFollowThePadShareTheAudioAndTheLimit) {
  const int pad = 32;
  const std::vector<int> pads(200, pad), words(200, 1500);
  SpeculationPolicy policy(3);
  // Before any step: speech's pad share (3/4) and the prior costs: 4 rows (2.73 tokens for
  // 1.65 of one row's time).
  EXPECT_EQ(policy.rows(100), 4);
  EXPECT_EQ(policy.rows(3), 2);  // powers of two within the audio encoded
  EXPECT_EQ(policy.rows(1), 1);
  EXPECT_EQ(policy.rows(0), 1);
  // Text after text: the guesses fail, one row per step.
  policy.observe(1, 100.0, words.data(), 60, pad);
  EXPECT_EQ(policy.rows(100), 1);
  // Long pauses: back to 4 rows (not 8: at most 3 speculative rows).
  policy.observe(1, 100.0, pads.data(), 200, pad);
  EXPECT_EQ(policy.rows(100), 4);
  // Measured: 4 rows cost 4 times one row; 2 rows (prior 1.15) pay.
  for (int i = 0; i < 20; ++i) policy.observe(4, 400.0, pads.data(), 0, pad);
  EXPECT_EQ(policy.rows(100), 2);

  EXPECT_EQ(SpeculationPolicy(0).rows(100), 1);
  SpeculationPolicy wide(kMaxSpeculativeTokens);
  wide.observe(1, 100.0, pads.data(), 200, pad);
  EXPECT_EQ(wide.rows(100), 8);
  EXPECT_EQ(SpeculationPolicy(99).rows(100), SpeculationPolicy(kMaxSpeculativeTokens).rows(100));  // clamped
  EXPECT_EQ(SpeculationPolicy(-5).rows(100), 1);
}

// Above the measured row counts the cost follows the line through them, not the priors: with
// 1 row at 113 ms and 4 at 145 (a 2-core AVX-512 VNNI Xeon, Q4 fast), 8 rows are estimated at
// 188 ms (the prior ratio 3.0 would say 264) and pay at a pad share of 0.89. Where rows are
// dear (1 row 202 ms, 4 rows 331: a 2-core AVX2 machine) the line says 503 ms, 8 rows are
// tried, and once measured (613 ms) they are left.
TEST(SpeculationPolicy, LargerStepsAreEstimatedFromTheMeasuredOnes) {
  const int pad = 32;
  std::vector<int> pattern(100, pad);
  for (std::size_t i = 0; i < pattern.size(); i += 9) pattern[i] = 1500;  // pad share ~0.89
  const auto measured = [&](double one_row, double four_rows, double eight_rows) {
    SpeculationPolicy policy(kMaxSpeculativeTokens);
    policy.observe(1, one_row, pattern.data(), static_cast<int>(pattern.size()), pad);
    for (int i = 0; i < 20; ++i) policy.observe(4, four_rows, pattern.data(), 0, pad);
    if (eight_rows > 0) policy.observe(8, eight_rows, pattern.data(), 0, pad);
    return policy.rows(100);
  };
  EXPECT_EQ(measured(113.0, 145.0, 0), 8);
  EXPECT_EQ(measured(113.0, 145.0, 205.0), 8);
  EXPECT_EQ(measured(202.0, 331.0, 0), 8);
  EXPECT_EQ(measured(202.0, 331.0, 613.0), 4);
}

TEST(SpeculationOptions, OutOfRangeIsAnErrorNamingTheOption) {
  ModelOptions options = testing::test_model_options();
  options.speculative_tokens = 8;
  EXPECT_THROW(validate(options), Error);
  try {
    validate(options);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("speculative_tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("0 to 7"), std::string::npos) << e.what();
  }
  options.speculative_tokens = -2;
  EXPECT_THROW(validate(options), Error);
  options.speculative_tokens = -1;
  EXPECT_NO_THROW(validate(options));
}

struct Recorded {
  std::vector<int> ids;
  std::vector<std::int64_t> positions;
  std::vector<int> inputs;
  std::vector<float> logits;  // every step's, one after another
  StreamStats stats;
};

// A whole recording fed at once (offline), with every step's input, position and logits.
Recorded run(Model& model, const std::vector<float>& samples, StreamOptions options = {}) {
  Recorded r;
  options.on_step_logits = [&](int input, std::int64_t position, const Tensor& logits) {
    r.inputs.push_back(input);
    r.positions.push_back(position);
    const auto row = download(model.backend(), logits);
    r.logits.insert(r.logits.end(), row.begin(), row.end());
  };
  options.expected_samples = static_cast<std::int64_t>(samples.size());
  options.encoder_chunk = kOfflineEncoderChunk;
  Stream stream(model, options);
  stream.feed(samples);
  stream.finish();
  r.ids = stream.ids();
  r.stats = stream.stats();
  return r;
}

std::unique_ptr<Model> demo(const char* weights, const char* precision, int speculative_tokens) {
  ModelOptions options = testing::test_model_options();
  options.weights = weights;
  options.precision = precision;
  options.speculative_tokens = speculative_tokens;
  return Model::load(source_path("models/demo"), options);
}

// The demo model on real (recorded-like) speech: most positions emit the pad, so most steps
// carry accepted speculative rows; the tokens and every logit keep their bits.
TEST(SpeculativeSteps, GiveTheBitsOfOneRowPerStepInFewerSteps) {
  const auto samples = load_audio_file(source_path("samples/commands.wav"), 16000);
  for (const char* weights : {"auto", "q8", "q4"}) {
    for (const char* precision : {"exact", "fast"}) {
      SCOPED_TRACE(std::string(weights) + ", " + precision);
      const Recorded one = run(*demo(weights, precision, 0), samples);
      ASSERT_GT(one.ids.size(), 50u);
      EXPECT_EQ(one.stats.decode_passes, static_cast<int>(one.stats.step_ms.size()));
      for (int speculative : {1, 3, 7}) {
        SCOPED_TRACE(speculative);
        const Recorded many = run(*demo(weights, precision, speculative), samples);
        EXPECT_EQ(many.ids, one.ids);
        EXPECT_EQ(many.inputs, one.inputs);
        EXPECT_EQ(many.positions, one.positions);
        EXPECT_TRUE(same_bits(many.logits, one.logits)) << "logits differ";
        // Some steps carried accepted rows. How many depends on the measured step times (the
        // policy weighs them; the demo model's tiny steps cost mostly overhead and vary with
        // the machine's load), so the count is not bounded here: the policy's choices are
        // checked on given times in SpeculationPolicy.* (a bound of 0.7 x tokens failed on a
        // loaded 2-core machine: 185-189 passes for 215 tokens with one speculative row).
        const auto tokens = static_cast<int>(many.stats.step_ms.size());
        EXPECT_LT(many.stats.decode_passes, tokens) << many.stats.decode_passes << " steps, " << tokens << " tokens";
      }
    }
  }
}

// Teacher forcing decides which guesses hold (bench runs on random weights use it to stand in
// for real speech): the forced tokens come out, and the logits are those of one row per step.
TEST(SpeculativeSteps, FollowTeacherForcing) {
  const auto samples = load_audio_file(source_path("samples/timer.wav"), 16000);
  StreamOptions options;
  options.ignore_eos = true;
  for (int i = 0; i < 60; ++i) options.teacher_ids.push_back(i % 3 == 2 ? 1500 + i : 32);
  const Recorded one = run(*demo("auto", "exact", 0), samples, options);
  const Recorded many = run(*demo("auto", "exact", 7), samples, options);
  ASSERT_GT(one.ids.size(), options.teacher_ids.size());
  EXPECT_TRUE(std::equal(options.teacher_ids.begin(), options.teacher_ids.end(), many.ids.begin()));
  EXPECT_EQ(many.ids, one.ids);
  EXPECT_EQ(many.inputs, one.inputs);
  EXPECT_TRUE(same_bits(many.logits, one.logits));
  EXPECT_LT(many.stats.decode_passes, one.stats.decode_passes);
}

// Live: audio fed in 80 ms pieces never waits ahead of the decoder, so every step has one row;
// a large processing interval leaves encoded audio ahead, and the steps speculate.
TEST(SpeculativeSteps, OnlyWhereEncodedAudioWaits) {
  const auto samples = load_audio_file(source_path("samples/lights.wav"), 16000);
  auto model = demo("auto", "exact", 3);
  struct Run {
    std::vector<int> ids;
    StreamStats before_finish, after;
  };
  const auto live = [&](double interval) {
    StreamOptions options;
    options.processing_interval_s = interval;
    Stream stream(*model, options);
    for (std::size_t at = 0; at < samples.size(); at += 1280) {
      stream.feed(std::span(samples).subspan(at, std::min<std::size_t>(1280, samples.size() - at)));
    }
    Run r;
    r.before_finish = stream.stats();
    stream.finish();  // the right padding's positions come at once: they may speculate
    r.ids = stream.ids();
    r.after = stream.stats();
    return r;
  };
  const Run every_80ms = live(0), every_2s = live(2.0);
  EXPECT_EQ(every_2s.ids, every_80ms.ids);
  ASSERT_GT(every_80ms.before_finish.step_ms.size(), 20u);
  EXPECT_EQ(every_80ms.before_finish.decode_passes, static_cast<int>(every_80ms.before_finish.step_ms.size()));
  EXPECT_LT(every_2s.before_finish.decode_passes, static_cast<int>(every_2s.before_finish.step_ms.size()));
  // Not compared: the passes after finish(). Its right padding is encoded at once in both runs,
  // and how far they speculate through it follows the step times they measured (a loaded CI
  // machine once gave 34 passes against 33).
}

// Uploads through the scheduler (the server's and the CLI's batch path) speculate too, alone
// and beside others, with the same text.
TEST(SpeculativeSteps, ThroughTheScheduler) {
  const auto samples = load_audio_file(source_path("samples/numbers.wav"), 16000);
  const auto want = transcribe(*demo("auto", "exact", 0), samples).ids;
  ScheduledModel scheduled(demo("auto", "exact", 3), OptionNaming::Field);
  const OfflineResult alone = scheduled.transcribe(samples, {});
  std::vector<int> ids;
  for (const auto& p : alone.pieces) {
    if (p.id >= 0) ids.push_back(p.id);
  }
  EXPECT_EQ(ids, want);
  EXPECT_LT(alone.stats.decode_passes, static_cast<int>(alone.stats.step_ms.size()) * 7 / 10);

  std::vector<std::vector<int>> together(3);
  std::vector<std::thread> threads;
  for (auto& out : together) {
    threads.emplace_back([&] {
      for (const auto& p : scheduled.transcribe(samples, {}).pieces) {
        if (p.id >= 0) out.push_back(p.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& out : together) EXPECT_EQ(out, want);
}

// A model of one stream still has room in its steps for the stream's speculative rows.
TEST(SpeculativeSteps, WithOneStreamToo) {
  ModelOptions options = testing::test_model_options();
  options.max_streams = 1;
  options.speculative_tokens = 7;
  auto model = Model::load(source_path("models/demo"), options);
  EXPECT_EQ(model->speculative_tokens(), 7);
  EXPECT_GE(model->decoder().options().max_batch, 8);
  const auto samples = load_audio_file(source_path("samples/timer.wav"), 16000);
  const Transcript t = transcribe(*model, samples);
  EXPECT_LT(t.stats.decode_passes, static_cast<int>(t.stats.step_ms.size()) / 2);
  EXPECT_EQ(t.ids, transcribe(*demo("auto", "exact", 0), samples).ids);
}

// A step's rows of one sequence must be adjacent and at consecutive positions.
TEST(SpeculativeSteps, StepRefusesScatteredRowsOfOneSequence) {
  auto model = demo("auto", "exact", 0);
  DecoderPool& pool = model->decoder();
  const int a = pool.acquire(), b = pool.acquire();
  pool.start(a, model->ffn_norms(6));
  pool.start(b, model->ffn_norms(6));
  std::vector<int> next(3);
  const std::vector<DecodeRow> gap = {{a, 32, 0, 0}, {a, 32, 2, 2}};
  EXPECT_THROW(pool.step(gap, next), Error);
  const std::vector<DecodeRow> apart = {{a, 32, 0, 0}, {b, 32, 0, 0}, {a, 32, 1, 1}};
  EXPECT_THROW(pool.step(apart, next), Error);
  const std::vector<DecodeRow> fine = {{a, 32, 0, 0}, {a, 32, 1, 1}, {b, 32, 0, 0}};
  EXPECT_NO_THROW(pool.step(fine, next));
  pool.release(a);
  pool.release(b);
}

}  // namespace
}  // namespace voxtral
