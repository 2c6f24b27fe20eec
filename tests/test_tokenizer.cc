#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/tokenizer.h"
#include "core/utf8.h"
#include "test_util.h"

namespace voxtral {
namespace {

using ::testing::HasSubstr;
using voxtral::testing::fixture;
using voxtral::testing::TempDir;

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

TEST(Tokenizer, LoadsTheTinyTekken) {
  const Tokenizer t = Tokenizer::load(fixture("tiny-a/tekken.json"));
  EXPECT_EQ(t.num_special(), 1000);
  EXPECT_EQ(t.vocab_size(), 1515);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.streaming_pad_id(), 32);
  EXPECT_EQ(t.streaming_word_id(), 33);
  EXPECT_EQ(t.find_special("[AUDIO]"), 24);
  EXPECT_EQ(t.find_special("[BEGIN_AUDIO]"), 25);
  EXPECT_EQ(t.special_name(32), "[STREAMING_PAD]");
  EXPECT_TRUE(t.is_special(999));
  EXPECT_FALSE(t.is_special(1000));
  EXPECT_EQ(t.token_bytes(1000 + 'A'), "A");  // byte tokens come first
  EXPECT_EQ(t.token_bytes(1256), " the");
  EXPECT_EQ(t.token_bytes(32), "");
  EXPECT_EQ(t.token_bytes(1515), "");
  EXPECT_EQ(t.audio().transcription_delay_ms, 480);
  EXPECT_EQ(t.audio().n_left_pad_tokens, 32);
  EXPECT_EQ(t.audio().hop_length, 160);
  EXPECT_EQ(t.audio().sampling_rate, 16000);
}

// The recorded text is Python's bytes.decode("utf-8", "replace") of the greedy ids.
TEST(Tokenizer, DecodesEveryFixtureTranscriptExactly) {
  for (const char* model : {"tiny-a", "tiny-b"}) {
    const Tokenizer t = Tokenizer::load(fixture(std::string(model) + "/tekken.json"));
    const auto summary = read_json(fixture(std::string(model) + ".json"));
    for (const auto& clip : summary["clips"]) {
      const auto ids = clip["greedy_ids"].get<std::vector<int>>();
      EXPECT_EQ(t.decode(ids), clip["text"].get<std::string>()) << clip["tag"];

      TextStream stream(t);
      std::string pieces;
      for (int id : ids) {
        const std::string piece = stream.push(id);
        EXPECT_EQ(repair_utf8(piece), piece) << "broken UTF-8 emitted in " << clip["tag"];
        pieces += piece;
      }
      pieces += stream.finish();
      EXPECT_EQ(pieces, clip["text"].get<std::string>()) << clip["tag"];
    }
  }
}

TEST(Tokenizer, StreamHoldsACharacterSplitAcrossTokens) {
  const Tokenizer t = Tokenizer::load(fixture("tiny-a/tekken.json"));
  // The tiny vocabulary has "\xE2\x82" and "\xAC" as separate tokens (the euro sign).
  int first = -1, second = -1;
  for (int id = t.num_special(); id < t.vocab_size(); ++id) {
    if (t.token_bytes(id) == "\xE2\x82") first = id;
    if (t.token_bytes(id) == "\xAC") second = id;
  }
  ASSERT_GE(first, 0);
  ASSERT_GE(second, 0);
  TextStream stream(t);
  EXPECT_EQ(stream.push(first), "");
  EXPECT_EQ(stream.push(t.streaming_pad_id()), "");
  EXPECT_EQ(stream.push(second), "\xE2\x82\xAC");
}

class BadTekken : public ::testing::Test {
 protected:
  nlohmann::json good = read_json(fixture("tiny-a/tekken.json"));
  TempDir dir;

  std::string load_error(const nlohmann::json& doc) { return load_error_text(doc.dump()); }
  std::string load_error_text(const std::string& text) {
    const auto path = dir.write("tekken.json", text);
    try {
      Tokenizer::load(path);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }
};

TEST_F(BadTekken, MissingFile) {
  try {
    Tokenizer::load(dir.path() / "nope.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nope.json: no such file"));
  }
}

TEST_F(BadTekken, NotJson) { EXPECT_THAT(load_error_text("{\"vocab\": ["), HasSubstr("invalid JSON")); }

TEST_F(BadTekken, EmptyFile) { EXPECT_THAT(load_error_text(""), HasSubstr("empty file")); }

TEST_F(BadTekken, MissingVocab) {
  good.erase("vocab");
  EXPECT_THAT(load_error(good), HasSubstr("vocab: missing"));
}

TEST_F(BadTekken, VocabTooShort) {
  good["vocab"].erase(good["vocab"].size() - 1);
  EXPECT_THAT(load_error(good), HasSubstr("vocab: has 514 entries but default_vocab_size 1515"));
}

TEST_F(BadTekken, BadBase64) {
  good["vocab"][7]["token_bytes"] = "@@@=";
  EXPECT_THAT(load_error(good), HasSubstr("vocab[7].token_bytes: is not valid base64"));
}

TEST_F(BadTekken, RankOutOfOrder) {
  good["vocab"][3]["rank"] = 4;
  EXPECT_THAT(load_error(good), HasSubstr("vocab[3].rank: is 4, expected 3"));
}

TEST_F(BadTekken, MissingBos) {
  good["special_tokens"][1]["token_str"] = "<not-bos>";
  EXPECT_THAT(load_error(good), HasSubstr("special_tokens: has no \"<s>\" token"));
}

TEST_F(BadTekken, SpecialRankOutOfRange) {
  good["special_tokens"][5]["rank"] = 1000;
  EXPECT_THAT(load_error(good), HasSubstr("special_tokens[5].rank: value 1000 is outside the valid range 0..999"));
}

TEST_F(BadTekken, DuplicateSpecialRank) {
  good["special_tokens"][5]["rank"] = 4;
  EXPECT_THAT(load_error(good), HasSubstr("special_tokens[5].rank: 4 appears twice"));
}

TEST_F(BadTekken, NoAudioSection) {
  good.erase("audio");
  EXPECT_THAT(load_error(good), HasSubstr("audio: missing"));
}

TEST_F(BadTekken, AudioFieldWrongType) {
  good["audio"]["transcription_delay_ms"] = "480";
  EXPECT_THAT(load_error(good), HasSubstr("audio.transcription_delay_ms: expected an integer"));
}

TEST_F(BadTekken, NumSpecialLargerThanVocab) {
  good["config"]["default_vocab_size"] = 10;
  EXPECT_THAT(load_error(good), HasSubstr("config.default_vocab_size: value 10 is outside the valid range"));
}

}  // namespace
}  // namespace voxtral
