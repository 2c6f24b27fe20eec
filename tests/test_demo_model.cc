// The shipped demo model (models/demo) on held-out clips: the engine must produce exactly the
// token ids transformers produced with the same weights on the same audio, recorded by
// tools/demo_model/train.py and copied here by tools/demo_model/test_clips.py.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "runtime/transcriber.h"
#include "test_util.h"

namespace voxtral {
namespace {

using voxtral::testing::fixture;
using voxtral::testing::source_path;

std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// Word-level Levenshtein distance.
std::size_t word_errors(const std::vector<std::string>& ref, const std::vector<std::string>& hyp) {
  std::vector<std::size_t> row(hyp.size() + 1);
  for (std::size_t j = 0; j <= hyp.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= ref.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= hyp.size(); ++j) {
      const std::size_t substitution = diagonal + (ref[i - 1] == hyp[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitution});
    }
  }
  return row[hyp.size()];
}

TEST(WordErrors, CountsSubstitutionsInsertionsAndDeletions) {
  EXPECT_EQ(word_errors(words_of("a b c d"), words_of("a x c")), 2u);
  EXPECT_EQ(word_errors(words_of("a b"), words_of("a b")), 0u);
  EXPECT_EQ(word_errors(words_of(""), words_of("a")), 1u);
  EXPECT_EQ(word_errors(words_of("a b c"), words_of("b c")), 1u);
}

TEST(DemoModel, HeldOutClipsGiveTransformersTokensAndWords) {
  std::ifstream in(fixture("demo/heldout.json"));
  const auto doc = nlohmann::json::parse(in);
  auto model = Model::load(source_path("models/demo"), testing::test_model_options());
  std::size_t errors = 0, words = 0, transformers_errors = 0;
  ASSERT_GE(doc["clips"].size(), 8u);
  for (const auto& clip : doc["clips"]) {
    SCOPED_TRACE(clip["audio"].get<std::string>());
    const auto samples = load_audio_file(fixture(clip["audio"]), 16000);
    StreamOptions options;
    options.delay_ms = doc["delay_ms"];
    const auto transcript = transcribe(*model, samples, options);
    EXPECT_EQ(transcript.ids, clip["transformers_ids"].get<std::vector<int>>());
    const auto reference = words_of(clip["reference"]);
    EXPECT_EQ(words_of(transcript.text), words_of(clip["transformers_text"]));
    errors += word_errors(reference, words_of(transcript.text));
    transformers_errors += word_errors(reference, words_of(clip["transformers_text"]));
    words += reference.size();
  }
  // These clips hold one mistake of the model's ("had" heard as "head"), made by both.
  EXPECT_EQ(errors, transformers_errors);
  EXPECT_LE(errors, 1u) << "of " << words << " words";
}

}  // namespace
}  // namespace voxtral
