// The C API from many threads: streams of one model fed at once (their decoder steps are
// batched by the model's scheduler) each give the text recorded for their recording alone,
// and a model refuses a stream beyond its max_streams.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "voxtral.h"

namespace {

using ::testing::HasSubstr;

std::string source(const std::string& relative) { return std::string(VOXTRAL_SOURCE_DIR) + "/" + relative; }

using ModelPtr = std::unique_ptr<voxtral_model, void (*)(voxtral_model*)>;
using StreamPtr = std::unique_ptr<voxtral_stream, void (*)(voxtral_stream*)>;

ModelPtr load_demo(int max_streams, char* err, size_t err_size) {
  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = std::getenv("VOXTRAL_TEST_BACKEND") != nullptr ? std::getenv("VOXTRAL_TEST_BACKEND") : "cpu";
  mo.max_streams = max_streams;
  return {voxtral_model_load(source("models/demo").c_str(), &mo, err, err_size),
          [](voxtral_model* m) { EXPECT_EQ(voxtral_model_free(m), 0); }};
}

// The text espeak-ng spoke for a shipped sample (what the demo model transcribes it as).
std::string recorded_text(const std::string& name) {
  std::ifstream in(source("samples/" + name + ".json"));
  return nlohmann::json::parse(in)["text"].get<std::string>();
}

// Feeds the sample in uneven small pieces, reading after each, and returns the text
// without the space the model writes before the first word; "" and `error` on a failure.
std::string transcribe(voxtral_model* model, const std::string& name, std::string& error) {
  char err[512] = "";
  size_t n = 0;
  std::unique_ptr<float, void (*)(float*)> samples(
      voxtral_load_audio(source("samples/" + name + ".wav").c_str(), 16000, &n, err, sizeof err), voxtral_free_samples);
  if (!samples) return error = err, "";
  StreamPtr stream(voxtral_stream_create(model, nullptr, err, sizeof err), voxtral_stream_free);
  if (!stream) return error = err, "";
  std::string text;
  auto read = [&] {
    const voxtral_piece* pieces = nullptr;
    const size_t count = voxtral_stream_read(stream.get(), &pieces);
    for (size_t i = 0; i < count; ++i) text += pieces[i].text;
  };
  for (size_t at = 0, take = 37 + name.size(); at < n; take = take * 2 % 5003 + 160) {
    const size_t k = std::min(take, n - at);
    if (voxtral_stream_feed(stream.get(), samples.get() + at, k) != 0) return error = voxtral_stream_error(stream.get()), "";
    at += k;
    read();
  }
  if (voxtral_stream_finish(stream.get()) != 0) return error = voxtral_stream_error(stream.get()), "";
  read();
  return text.substr(std::min(text.find_first_not_of(' '), text.size()));
}

TEST(CApiConcurrent, FourThreadsFeedingTheirOwnStreamsGetTheRecordedTexts) {
  char err[512] = "";
  auto model = load_demo(4, err, sizeof err);
  ASSERT_NE(model, nullptr) << err;
  const std::vector<std::string> names = {"commands", "lights", "numbers", "timer"};
  std::vector<std::string> texts(names.size()), errors(names.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < names.size(); ++i) {
    threads.emplace_back([&, i] { texts[i] = transcribe(model.get(), names[i], errors[i]); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(errors[i], "") << names[i];
    EXPECT_EQ(texts[i], recorded_text(names[i])) << names[i];
  }
}

TEST(CApiConcurrent, AStreamBeyondMaxStreamsIsRefusedUntilOneIsFreed) {
  char err[512] = "";
  auto model = load_demo(2, err, sizeof err);
  ASSERT_NE(model, nullptr) << err;
  StreamPtr a(voxtral_stream_create(model.get(), nullptr, err, sizeof err), voxtral_stream_free);
  StreamPtr b(voxtral_stream_create(model.get(), nullptr, err, sizeof err), voxtral_stream_free);
  ASSERT_NE(a, nullptr) << err;
  ASSERT_NE(b, nullptr) << err;
  err[0] = '\0';
  EXPECT_EQ(voxtral_stream_create(model.get(), nullptr, err, sizeof err), nullptr);
  EXPECT_THAT(err, HasSubstr("all 2 streams of this model are in use"));
  b.reset();
  StreamPtr c(voxtral_stream_create(model.get(), nullptr, err, sizeof err), voxtral_stream_free);
  EXPECT_NE(c, nullptr) << err;
  // The streams still open are usable: the freed one's place went to the new one.
  std::string error;
  c.reset();
  EXPECT_EQ(transcribe(model.get(), "lights", error), recorded_text("lights")) << error;
}

TEST(CApiConcurrent, MaxStreamsOutOfRangeIsRefusedNamingTheField) {
  char err[512] = "";
  for (const int max_streams : {-1, 4097}) {
    auto model = load_demo(max_streams, err, sizeof err);
    EXPECT_EQ(model, nullptr) << max_streams;
    EXPECT_THAT(err, HasSubstr("max_streams: " + std::to_string(max_streams) + " is out of range"));
  }
}

// The C API's messages name its own fields, never the command line's flags.
TEST(CApiOptions, KvCacheFarPastMemoryIsRefusedNamingTheFieldBeforeLoading) {
  char err[512] = "";
  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = "cpu";
  mo.kv_cache_mb = std::int64_t{1} << 30;  // 1 PiB
  // A model directory that does not exist: the options are refused before any file is read
  // or any memory taken (its error would name the directory).
  const std::string missing = source("models/demo") + "/no-such-model";
  EXPECT_EQ(voxtral_model_load(missing.c_str(), &mo, err, sizeof err), nullptr);
  EXPECT_THAT(err, HasSubstr("voxtral_model_options.kv_cache_mb: 1073741824 MiB is more than this machine's memory"));
  EXPECT_THAT(err, ::testing::Not(HasSubstr("--")));
}

TEST(CApiOptions, ACacheTooSmallForTheStreamsNamesTheCApiFields) {
  char err[512] = "";
  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = "cpu";
  mo.max_streams = 64;
  mo.kv_cache_mb = 1;
  EXPECT_EQ(voxtral_model_load(source("models/demo").c_str(), &mo, err, sizeof err), nullptr);
  EXPECT_THAT(err, HasSubstr("voxtral_model_options.kv_cache_mb: 64 streams need"));
  EXPECT_THAT(err, HasSubstr("lower voxtral_model_options.max_streams or raise voxtral_model_options.kv_cache_mb"));
  EXPECT_THAT(err, ::testing::Not(HasSubstr("--")));
}

}  // namespace
