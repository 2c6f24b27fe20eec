// The C API's word times (voxtral_piece.start / .end): the demo model on samples/commands.wav
// fed in uneven pieces, against the true word times, and the same as the CLI prints.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "../word_time_checks.h"
#include "voxtral.h"

namespace {

using voxtral::testing::TimedWord;

std::string source(const std::string& relative) { return std::string(VOXTRAL_SOURCE_DIR) + "/" + relative; }

TEST(CApiTimes, PiecesCarryTheirWordsTimes) {
  char err[512] = "";
  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = std::getenv("VOXTRAL_TEST_BACKEND") != nullptr ? std::getenv("VOXTRAL_TEST_BACKEND") : "cpu";
  // voxtral_model_free returns whether it freed; the stream below goes first (declared later).
  std::unique_ptr<voxtral_model, void (*)(voxtral_model*)> model(
      voxtral_model_load(source("models/demo").c_str(), &mo, err, sizeof err),
      [](voxtral_model* m) { EXPECT_EQ(voxtral_model_free(m), 0); });
  ASSERT_NE(model, nullptr) << err;
  size_t n = 0;
  std::unique_ptr<float, void (*)(float*)> samples(
      voxtral_load_audio(source("samples/commands.wav").c_str(), 16000, &n, err, sizeof err), voxtral_free_samples);
  ASSERT_NE(samples, nullptr) << err;
  const double duration = static_cast<double>(n) / 16000;
  std::unique_ptr<voxtral_stream, void (*)(voxtral_stream*)> stream(
      voxtral_stream_create(model.get(), nullptr, err, sizeof err), voxtral_stream_free);
  ASSERT_NE(stream, nullptr) << err;

  std::vector<TimedWord> words;
  auto read = [&] {
    const voxtral_piece* pieces = nullptr;
    const size_t count = voxtral_stream_read(stream.get(), &pieces);
    for (size_t i = 0; i < count; ++i) {
      const voxtral_piece& p = pieces[i];
      const std::string text = p.text;
      if (text.empty()) {
        EXPECT_EQ(p.start, p.time);
        EXPECT_EQ(p.end, p.time);
        continue;
      }
      EXPECT_LE(p.start, p.end);
      EXPECT_LE(p.end, duration);
      if (text.front() == ' ' || words.empty()) {
        words.push_back({text.substr(text.front() == ' ' ? 1 : 0), p.start, p.end});
      } else {  // the rest of a word: its times
        words.back().text += text;
        EXPECT_EQ(p.start, words.back().start);
        EXPECT_EQ(p.end, words.back().end);
      }
    }
  };
  size_t at = 0, take = 1;
  while (at < n) {
    const size_t k = std::min(take, n - at);
    ASSERT_EQ(voxtral_stream_feed(stream.get(), samples.get() + at, k), 0) << voxtral_stream_error(stream.get());
    at += k;
    take = take > 20000 ? 5 : take * 3 + 1;
    read();
  }
  ASSERT_EQ(voxtral_stream_finish(stream.get()), 0) << voxtral_stream_error(stream.get());
  read();

  std::ifstream in(source("samples/commands.json"));
  const auto truth = voxtral::testing::true_words(nlohmann::json::parse(in));
  voxtral::testing::expect_on_target(voxtral::testing::time_errors(truth, words), "C API, samples/commands.wav");

  // The CLI's words for the same file: the same times (its JSON rounds to 1 ms).
  // (named per process: test runs of other checkouts share the temporary directory)
  const std::string out = ::testing::TempDir() + "capi_times_cli_" + std::to_string(::getpid()) + ".json";
  const std::string command = std::string("'") + VOXTRAL_CLI + "' -d '" + source("models/demo") + "' -i '" +
                              source("samples/commands.wav") + "' --format json --silent --backend " + mo.backend +
                              " > '" + out + "'";
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command;
  std::ifstream cli_in(out);
  const auto cli = voxtral::testing::json_words(nlohmann::json::parse(cli_in)["words"]);
  std::remove(out.c_str());
  ASSERT_EQ(cli.size(), words.size());
  for (std::size_t i = 0; i < words.size(); ++i) {
    EXPECT_EQ(cli[i].text, words[i].text);
    EXPECT_NEAR(cli[i].start, words[i].start, 0.0005) << words[i].text;
    EXPECT_NEAR(cli[i].end, words[i].end, 0.0005) << words[i].text;
  }
}

}  // namespace
