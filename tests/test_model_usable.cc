// check_model_usable: values each file accepts alone but that leave no usable model are
// refused at load, naming the field (tiny-a's files with one value changed).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "model/usable.h"
#include "test_util.h"

namespace voxtral::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kEightGB = 8'000'000'000;

nlohmann::json tiny_a_params() {
  std::ifstream in(fixture("tiny-a/params.json"));
  return nlohmann::json::parse(in);
}

nlohmann::json& encoder_args(nlohmann::json& p) { return p["multimodal"]["whisper_model_args"]["encoder_args"]; }

// The message check_model_usable throws for tiny-a with `params`, or "" when it accepts them.
std::string problem(const nlohmann::json& params, std::uint64_t memory = kEightGB) {
  const Tokenizer tokenizer = Tokenizer::load(fixture("tiny-a/tekken.json"));
  const ModelConfig config = ModelConfig::from_json_text(params.dump(), "params.json");
  try {
    check_model_usable(config, tokenizer, "params.json", memory);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelUsable, TinyAIsUsable) { EXPECT_EQ(problem(tiny_a_params()), ""); }

TEST(ModelUsable, ModelMaxLengthMustLeaveASecondOfAudio) {
  // tiny-a: 32 left-pad + 6 delay + 1 + 10 right-pad positions, and 13 for a second.
  auto p = tiny_a_params();
  p["model_max_length"] = 61;
  EXPECT_EQ(problem(p), "params.json: model_max_length: 61 positions leave no room for audio: the prompt's padding "
                        "takes 49 at the model's 480 ms delay, and a second of audio 13 more");
  p["model_max_length"] = 62;
  EXPECT_EQ(problem(p), "");
}

TEST(ModelUsable, AttentionWindowsWhoseCacheExceedsTheMachinesMemory) {
  auto p = tiny_a_params();
  encoder_args(p)["sliding_window"] = 1 << 24;  // 2^24 rows x 128 wide x 2 layers x K,V x 4 bytes
  EXPECT_EQ(problem(p), "params.json: multimodal.whisper_model_args.encoder_args.sliding_window: 16777216 positions "
                        "need a K/V cache of 34.4 GB per stream, more than this machine's 8 GB of memory");
  EXPECT_EQ(problem(p, 64'000'000'000), "");  // a machine with more memory takes it
  EXPECT_EQ(problem(p, 0), "");                // unknown memory: not checked

  p = tiny_a_params();
  p["sliding_window"] = 1 << 24;
  p["model_max_length"] = 1 << 30;
  EXPECT_THAT(problem(p), HasSubstr("params.json: sliding_window: 16777216 positions need a K/V cache of 17.2 GB"));
  // The decoder's cache never holds more than model_max_length positions.
  p["model_max_length"] = 4096;
  EXPECT_EQ(problem(p), "");
  p["model_max_length"] = 1 << 30;
  p["sliding_window"] = 48;
  EXPECT_EQ(problem(p), "");
}

}  // namespace
}  // namespace voxtral::testing
