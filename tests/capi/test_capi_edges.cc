// The C API's input edges, from C++ (GoogleTest): non-finite samples, options out of range,
// and an endless FIFO given to voxtral_load_audio. Transcripts are compared with the one
// transformers recorded for the clip.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "voxtral.h"

namespace {

using ::testing::HasSubstr;

std::string source(const std::string& relative) { return std::string(VOXTRAL_SOURCE_DIR) + "/" + relative; }

using ModelPtr = std::unique_ptr<voxtral_model, void (*)(voxtral_model*)>;
using StreamPtr = std::unique_ptr<voxtral_stream, void (*)(voxtral_stream*)>;

voxtral_model_options cpu_options() {
  voxtral_model_options mo;
  voxtral_model_options_init(&mo);
  mo.backend = std::getenv("VOXTRAL_TEST_BACKEND") != nullptr ? std::getenv("VOXTRAL_TEST_BACKEND") : "cpu";
  mo.kv_cache = "f32";
  return mo;
}

ModelPtr load_tiny_a(char* err, size_t err_size) {
  const auto mo = cpu_options();
  return {voxtral_model_load(source("tests/fixtures/tiny-a").c_str(), &mo, err, err_size),
          [](voxtral_model* m) { EXPECT_EQ(voxtral_model_free(m), 0); }};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string read_text(voxtral_stream* s) {
  std::string text;
  const voxtral_piece* pieces = nullptr;
  const size_t count = voxtral_stream_read(s, &pieces);
  for (size_t i = 0; i < count; ++i) text += pieces[i].text;
  return text;
}

TEST(CApiEdges, NonFiniteOrIntegerScaledSamplesAreRefusedAndTheStreamStaysUsable) {
  // One NaN used to be taken silently and make every later transcript "".
  char err[512] = "";
  auto model = load_tiny_a(err, sizeof err);
  ASSERT_NE(model, nullptr) << err;
  size_t n = 0;
  std::unique_ptr<float, void (*)(float*)> speech(
      voxtral_load_audio(source("tests/fixtures/audio/speech_short.wav").c_str(), 16000, &n, err, sizeof err),
      voxtral_free_samples);
  ASSERT_NE(speech, nullptr) << err;
  ASSERT_GT(n, 16000u);
  StreamPtr stream(voxtral_stream_create(model.get(), nullptr, err, sizeof err), voxtral_stream_free);
  ASSERT_NE(stream, nullptr) << err;

  std::vector<float> poisoned(speech.get(), speech.get() + 4000);
  poisoned[7] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(voxtral_stream_feed(stream.get(), poisoned.data(), poisoned.size()), -1);
  EXPECT_THAT(voxtral_stream_error(stream.get()), HasSubstr("sample 7 of 4000 is NaN"));
  poisoned[7] = 0;
  poisoned[3999] = -std::numeric_limits<float>::infinity();
  EXPECT_EQ(voxtral_stream_feed(stream.get(), poisoned.data(), poisoned.size()), -1);
  EXPECT_THAT(voxtral_stream_error(stream.get()), HasSubstr("sample 3999 of 4000 is infinite"));

  // int16 values passed as floats (peak 6 dB and more over full scale) would be noise.
  std::vector<float> as_int16(speech.get(), speech.get() + 4000);
  for (float& v : as_int16) v = std::round(v * 32768.0f);
  as_int16[100] = -32000.0f;  // the peak: the clip's own in its first 4000 samples is 26210
  EXPECT_EQ(voxtral_stream_feed(stream.get(), as_int16.data(), as_int16.size()), -1);
  EXPECT_STREQ(voxtral_stream_error(stream.get()),
               "voxtral_stream_feed: samples must be in [-1, 1] (float full scale), got a peak of 32000 at sample "
               "100; if they are 16-bit PCM values, feed them with voxtral_stream_feed_pcm16 or divide them by "
               "32768; none of the call's samples were taken");
  std::vector<float> loud(speech.get(), speech.get() + 4000);
  loud[5] = 2.0f;  // the bound itself is loud audio (FloatPeak tests); just past it is refused
  loud[6] = -2.0009f;
  EXPECT_EQ(voxtral_stream_feed(stream.get(), loud.data(), loud.size()), -1);
  EXPECT_THAT(voxtral_stream_error(stream.get()), HasSubstr("got a peak of 2.0009 at sample 6"));

  // A read without a place for the pieces is an error and takes none of them.
  EXPECT_EQ(voxtral_stream_read(stream.get(), nullptr), 0u);
  EXPECT_STREQ(voxtral_stream_error(stream.get()), "voxtral_stream_read: pieces is NULL");

  // Nothing of the refused calls was taken: the whole clip, fed now, gives the recorded text.
  std::string text;
  for (size_t at = 0; at < n; at += 3000) {
    ASSERT_EQ(voxtral_stream_feed(stream.get(), speech.get() + at, std::min<size_t>(3000, n - at)), 0)
        << voxtral_stream_error(stream.get());
    EXPECT_STREQ(voxtral_stream_error(stream.get()), "");
    text += read_text(stream.get());
  }
  ASSERT_EQ(voxtral_stream_finish(stream.get()), 0) << voxtral_stream_error(stream.get());
  text += read_text(stream.get());
  EXPECT_EQ(text, slurp(source("tests/fixtures/tiny-a_speech_short_480ms.txt")));
}

TEST(CApiEdges, ModelOptionsOutOfRangeAreRefusedNamingTheField) {
  char err[512] = "";
  for (const int threads : {-5, -1, 1025, 2000, 100000}) {
    auto mo = cpu_options();
    mo.threads = threads;
    err[0] = '\0';
    voxtral_model* m = voxtral_model_load(source("tests/fixtures/tiny-a").c_str(), &mo, err, sizeof err);
    EXPECT_EQ(m, nullptr) << threads;
    EXPECT_THAT(err, HasSubstr("threads: " + std::to_string(threads) + " is out of range (1 to 1024, or 0"));
    voxtral_model_free(m);
  }
  auto mo = cpu_options();
  mo.precision = "fastest";
  EXPECT_EQ(voxtral_model_load(source("tests/fixtures/tiny-a").c_str(), &mo, err, sizeof err), nullptr);
  EXPECT_THAT(err, HasSubstr("precision: unknown value \"fastest\""));
  mo = cpu_options();
  mo.threads = 2;
  auto model = ModelPtr(voxtral_model_load(source("tests/fixtures/tiny-a").c_str(), &mo, err, sizeof err),
                        [](voxtral_model* m) { EXPECT_EQ(voxtral_model_free(m), 0); });
  EXPECT_NE(model, nullptr) << err;
}

TEST(CApiEdges, WeightsQ4QuantizesAtLoadAndAnUnknownFormatNamesTheField) {
  char err[512] = "";
  auto mo = cpu_options();
  mo.weights = "int4";
  EXPECT_EQ(voxtral_model_load(source("models/demo").c_str(), &mo, err, sizeof err), nullptr);
  EXPECT_THAT(err, HasSubstr("voxtral_model_options.weights: unknown value \"int4\""));
  mo.weights = "q4";
  auto model = ModelPtr(voxtral_model_load(source("models/demo").c_str(), &mo, err, sizeof err),
                        [](voxtral_model* m) { EXPECT_EQ(voxtral_model_free(m), 0); });
  ASSERT_NE(model, nullptr) << err;
  size_t count = 0;
  float* samples = voxtral_load_audio(source("samples/timer.wav").c_str(), 16000, &count, err, sizeof err);
  ASSERT_NE(samples, nullptr) << err;
  StreamPtr stream(voxtral_stream_create(model.get(), nullptr, err, sizeof err), voxtral_stream_free);
  ASSERT_NE(stream, nullptr) << err;
  EXPECT_EQ(voxtral_stream_feed(stream.get(), samples, count), 0);
  EXPECT_EQ(voxtral_stream_finish(stream.get()), 0);
  voxtral_free_samples(samples);
  EXPECT_EQ(read_text(stream.get()), " set a timer for ten minutes");
}

TEST(CApiEdges, StreamOptionsOutOfRangeAreRefusedNamingTheField) {
  char err[512] = "";
  auto model = load_tiny_a(err, sizeof err);
  ASSERT_NE(model, nullptr) << err;
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  struct Case {
    void (*set)(voxtral_stream_options&);
    const char* message;
  };
  static double value;  // (the setters are plain functions)
  const Case cases[] = {
      {[](voxtral_stream_options& o) { o.delay_ms = -1; }, "delay_ms: -1 is negative"},
      {[](voxtral_stream_options& o) { o.delay_ms = 100; }, "delay: 100 ms is not supported"},
      {[](voxtral_stream_options& o) { o.processing_interval_s = -1; }, "processing_interval_s: -1 is out of range"},
      {[](voxtral_stream_options& o) { o.processing_interval_s = value; }, "processing_interval_s: "},
      {[](voxtral_stream_options& o) { o.processing_interval_s = 1e300; }, "processing_interval_s: 1e+300 is out of"},
      {[](voxtral_stream_options& o) { o.processing_interval_s = 60.5; }, "processing_interval_s: 60.5 is out of"},
      {[](voxtral_stream_options& o) { o.alternatives = -3; }, "alternatives: -3 is out of range (0 to 20)"},
      {[](voxtral_stream_options& o) { o.alternatives = 1000000; }, "alternatives: 1000000 is out of range"},
      {[](voxtral_stream_options& o) { o.alternative_cutoff = 5; }, "alternative_cutoff: 5 is not a probability"},
      {[](voxtral_stream_options& o) { o.alternative_cutoff = -0.1; }, "alternative_cutoff: -0.1 is not a"},
      {[](voxtral_stream_options& o) { o.alternative_cutoff = value; }, "alternative_cutoff: "},
  };
  for (const double v : {nan, inf, -inf}) {
    value = v;
    for (const auto& c : cases) {
      voxtral_stream_options so;
      voxtral_stream_options_init(&so);
      c.set(so);
      err[0] = '\0';
      voxtral_stream* s = voxtral_stream_create(model.get(), &so, err, sizeof err);
      EXPECT_EQ(s, nullptr) << c.message << " (value " << v << ")";
      EXPECT_THAT(err, HasSubstr(c.message));
      voxtral_stream_free(s);
    }
  }
  // The ends of the ranges are accepted.
  voxtral_stream_options so;
  voxtral_stream_options_init(&so);
  so.processing_interval_s = 60;
  so.alternatives = 20;
  so.alternative_cutoff = 1;
  so.delay_ms = 2400;
  StreamPtr ok(voxtral_stream_create(model.get(), &so, err, sizeof err), voxtral_stream_free);
  EXPECT_NE(ok, nullptr) << err;
}

// A WAV header declaring the largest sizes (as live writers do), 1000 Hz 8-bit mono.
std::string endless_wav_header() {
  auto le32 = [](std::uint32_t v) { return std::string{char(v), char(v >> 8), char(v >> 16), char(v >> 24)}; };
  auto le16 = [](std::uint16_t v) { return std::string{char(v), char(v >> 8)}; };
  return "RIFF" + le32(0xFFFFFFFF) + "WAVE" + "fmt " + le32(16) + le16(1) + le16(1) + le32(1000) + le32(1000) + le16(1) +
         le16(8) + "data" + le32(0xFFFFFFFF);
}

TEST(CApiEdges, LoadAudioStopsAnEndlessFifoAtFourHours) {
  // It grew without limit (5.3 GB in 8 s). The writer gives up after 5 hours of audio, so
  // that without the limit the load returns (too much) instead of running forever.
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &old), 0);  // the reader closes early: EPIPE, not death
  const auto dir = std::filesystem::temp_directory_path() / ("voxtral-capi-fifo-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto fifo = dir / "endless.wav";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    std::string block = endless_wav_header();
    const std::string silence(1 << 16, char(128));
    std::int64_t written = 0;
    const std::int64_t five_hours = 5 * 3600 * 1000;
    bool ok = ::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size());
    while (ok && written < five_hours) {
      const ssize_t w = ::write(fd, silence.data(), silence.size());
      ok = w > 0;
      written += w > 0 ? w : 0;
    }
    ::close(fd);
  });
  char err[512] = "";
  size_t n = 0;
  float* samples = voxtral_load_audio(fifo.c_str(), 1000, &n, err, sizeof err);
  writer.join();
  ::sigaction(SIGPIPE, &old, nullptr);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(samples, nullptr) << n << " samples";
  EXPECT_THAT(err, HasSubstr("endless.wav: longer than 4 hours"));
  voxtral_free_samples(samples);
}

}  // namespace
