// The Wyoming protocol's framing (server/wyoming_event.h) and audio formats
// (server/wyoming_audio.h), without sockets or the engine. Expected values come from the
// protocol's description and from the audio's own construction.
#include <cmath>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/wyoming_audio.h"
#include "server/wyoming_event.h"

namespace voxtral {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

// Feeds `bytes` in pieces of `piece` bytes; returns the events, and the error if one came.
struct Framed {
  std::vector<WyomingEvent> events;
  std::optional<WyomingFramingError> error;
};
Framed frame(const std::string& bytes, std::size_t piece, WyomingLimits limits = {}) {
  WyomingEventReader reader(limits);
  Framed out;
  for (std::size_t at = 0; at < bytes.size();) {
    std::string_view rest = std::string_view(bytes).substr(at, piece);
    while (!rest.empty()) {
      const std::size_t n = reader.consume(rest);
      rest.remove_prefix(n);
      at += n;
      if (reader.has_event()) out.events.push_back(reader.take_event());
      if (reader.error()) {
        out.error = reader.error();
        return out;
      }
      if (n == 0 && !reader.has_event()) break;
    }
  }
  return out;
}

TEST(WyomingEvents, FramesEventsSplitAnywhere) {
  // Three events: data in the header, data in its own section overriding the header's,
  // and a payload with a newline and a zero byte in it.
  const std::string payload("ab\n\0cd", 6);
  const std::string bytes = std::string(R"({"type":"describe"})") + "\n" +
                            R"({"type":"audio-start","data":{"rate":8000,"width":2},"data_length":27,"version":"1.7.0"})" +
                            "\n" + R"({"rate":16000,"channels":1})" +
                            R"({"type":"audio-chunk","payload_length":6})" + "\n" + payload;
  for (const std::size_t piece : {bytes.size(), std::size_t{1}, std::size_t{7}}) {
    const Framed framed = frame(bytes, piece);
    ASSERT_FALSE(framed.error) << framed.error->message;
    ASSERT_EQ(framed.events.size(), 3u) << "pieces of " << piece;
    EXPECT_EQ(framed.events[0].type, "describe");
    EXPECT_EQ(framed.events[0].data, json::object());
    EXPECT_EQ(framed.events[1].type, "audio-start");
    EXPECT_EQ(framed.events[1].data, (json{{"rate", 16000}, {"width", 2}, {"channels", 1}}));
    EXPECT_EQ(framed.events[2].type, "audio-chunk");
    EXPECT_EQ(framed.events[2].payload, payload);
  }
}

TEST(WyomingEvents, WrittenEventsFrameBack) {
  const std::string bytes = wyoming_event_bytes("transcript", {{"text", "set a timer"}}) +
                            wyoming_event_bytes("transcript-stop") +
                            wyoming_event_bytes("audio-chunk", {{"rate", 16000}}, std::string("\x01\x02", 2));
  // The header line holds no data: it goes in the data section, as the reference writer does.
  EXPECT_EQ(bytes.substr(0, bytes.find('\n')), R"({"data_length":22,"type":"transcript","version":"1.7.0"})");
  const Framed framed = frame(bytes, 3);
  ASSERT_EQ(framed.events.size(), 3u);
  EXPECT_EQ(framed.events[0].data["text"], "set a timer");
  EXPECT_EQ(framed.events[1].type, "transcript-stop");
  EXPECT_EQ(framed.events[2].payload, std::string("\x01\x02", 2));
  // Client text that is not UTF-8 is written as U+FFFD, never thrown on.
  const std::string odd = wyoming_event_bytes("error", {{"text", "\xff"}});
  EXPECT_THAT(odd, HasSubstr("\xef\xbf\xbd"));
}

std::string error_code(const std::string& bytes, WyomingLimits limits = {}) {
  const Framed framed = frame(bytes, bytes.size(), limits);
  EXPECT_TRUE(framed.events.empty()) << bytes;
  if (!framed.error) return "none";
  EXPECT_FALSE(framed.error->message.empty());
  EXPECT_LT(framed.error->message.size(), 300u);
  return framed.error->code;
}

TEST(WyomingEvents, BrokenFramingIsNamed) {
  EXPECT_EQ(error_code("not json\n"), "invalid_header");
  EXPECT_EQ(error_code("\n"), "invalid_header");
  EXPECT_EQ(error_code("[1,2]\n"), "invalid_header");
  EXPECT_EQ(error_code("{\"data\":{}}\n"), "invalid_header");                      // no type
  EXPECT_EQ(error_code("{\"type\":7}\n"), "invalid_header");
  EXPECT_EQ(error_code("{\"type\":\"\"}\n"), "invalid_header");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"data\":[1]}\n"), "invalid_header");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"data_length\":-1}\n"), "invalid_header");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"payload_length\":2.5}\n"), "invalid_header");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"payload_length\":\"2\"}\n"), "invalid_header");
  EXPECT_EQ(error_code("{\"type\":\"\xff\"}\n"), "invalid_header");  // not UTF-8
  EXPECT_EQ(error_code(std::string(100000, '[') + "\n"), "header_too_long");
  EXPECT_EQ(error_code(std::string(1000, '[') + "\n"), "invalid_header");  // nested beyond any event
  EXPECT_EQ(error_code("{\"type\":\"x\",\"data_length\":2}\n[]"), "invalid_data");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"data_length\":2}\n{]"), "invalid_data");
  WyomingLimits small;
  small.max_header_bytes = 40;
  small.max_data_bytes = 10;
  small.max_payload_bytes = 100;
  EXPECT_EQ(error_code("{\"type\":\"audio-chunk\",\"x\":\"....................\"}\n", small), "header_too_long");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"data_length\":11}\n", small), "data_too_long");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"payload_length\":101}\n", small), "payload_too_long");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"payload_length\":1e30}\n", small), "invalid_header");
  // A header without its newline yet, or a payload still arriving, is no error.
  EXPECT_EQ(error_code("{\"type\":\"x\""), "none");
  EXPECT_EQ(error_code("{\"type\":\"x\",\"payload_length\":100}\nabc", small), "none");
}

TEST(WyomingEvents, TheReaderTakesNothingAfterAnError) {
  WyomingEventReader reader;
  EXPECT_EQ(reader.consume("oops\n{\"type\":\"describe\"}\n"), 5u);
  ASSERT_TRUE(reader.error());
  EXPECT_EQ(reader.consume("{\"type\":\"describe\"}\n"), 0u);
  EXPECT_FALSE(reader.has_event());
}

std::string format_error(const json& data) {
  std::string error;
  const auto format = wyoming_audio_format(data, error);
  EXPECT_EQ(format.has_value(), error.empty());
  return error;
}

TEST(WyomingAudioFormat, FieldsAreRequiredWholeAndInRange) {
  EXPECT_EQ(format_error({{"rate", 16000}, {"width", 2}, {"channels", 1}}), "");
  EXPECT_EQ(format_error({{"rate", 48000}, {"width", 4}, {"channels", 2}}), "");
  EXPECT_THAT(format_error({{"width", 2}, {"channels", 1}}), HasSubstr("`rate` is required"));
  EXPECT_THAT(format_error({{"rate", "16000"}, {"width", 2}, {"channels", 1}}), HasSubstr("`rate` must be a whole number"));
  EXPECT_THAT(format_error({{"rate", 16000.5}, {"width", 2}, {"channels", 1}}), HasSubstr("not a fraction"));
  EXPECT_THAT(format_error({{"rate", 0}, {"width", 2}, {"channels", 1}}), HasSubstr("`rate` is 0, outside"));
  EXPECT_THAT(format_error({{"rate", 18446744073709551615ull}, {"width", 2}, {"channels", 1}}), HasSubstr("outside"));
  EXPECT_THAT(format_error({{"rate", 16000}, {"width", 1}, {"channels", 1}}), HasSubstr("8-bit PCM is refused"));
  EXPECT_THAT(format_error({{"rate", 16000}, {"width", 5}, {"channels", 1}}), HasSubstr("2, 3 or 4 bytes"));
  EXPECT_THAT(format_error({{"rate", 16000}, {"width", 2}, {"channels", 0}}), HasSubstr("`channels` is 0"));
  EXPECT_THAT(format_error({{"rate", 16000}, {"width", 2}, {"channels", 9}}), HasSubstr("`channels` is 9"));
  EXPECT_THAT(WyomingAudio::chunk_error({16000, 2, 2}, 6), HasSubstr("not whole frames of 4 bytes"));
  EXPECT_EQ(WyomingAudio::chunk_error({16000, 3, 2}, 12), "");
}

// Little-endian signed samples of each width decode to value / 2^(8 width - 1), and a
// second channel that is the first's copy mixes to the same mono signal.
TEST(WyomingAudio, DecodesEachWidthAndMixesChannels) {
  const std::vector<double> values = {0.5, -0.25, -1.0, 0.125};
  for (const int width : {2, 3, 4}) {
    for (const int channels : {1, 2}) {
      std::string pcm;
      for (const double v : values) {
        const auto integer = static_cast<std::int64_t>(std::llround(v * std::pow(2.0, 8 * width - 1)));
        for (int c = 0; c < channels; ++c) {
          for (int b = 0; b < width; ++b) pcm += static_cast<char>((integer >> (8 * b)) & 0xFF);
        }
      }
      WyomingAudio audio({16000, width, channels}, 16000);
      std::vector<float> out;
      audio.push(pcm, out);
      audio.finish(out);
      ASSERT_EQ(out.size(), values.size()) << width << " bytes, " << channels << " channels";
      for (std::size_t i = 0; i < values.size(); ++i) EXPECT_FLOAT_EQ(out[i], static_cast<float>(values[i]));
      EXPECT_DOUBLE_EQ(audio.seconds(), 4.0 / 16000);
    }
  }
}

// 48 kHz in, 16 kHz out: a third as many samples, a 1 kHz tone kept at its amplitude.
TEST(WyomingAudio, ResamplesToTheModelRate) {
  std::string pcm;
  for (int i = 0; i < 48000; ++i) {
    const auto v = static_cast<std::int16_t>(std::lround(16000 * std::sin(2 * M_PI * 1000 * i / 48000.0)));
    pcm += static_cast<char>(v & 0xFF);
    pcm += static_cast<char>((v >> 8) & 0xFF);
  }
  WyomingAudio audio({48000, 2, 1}, 16000);
  std::vector<float> out;
  for (std::size_t at = 0; at < pcm.size(); at += 2048) audio.push(std::string_view(pcm).substr(at, 2048), out);
  audio.finish(out);
  EXPECT_NEAR(static_cast<double>(out.size()), 16000.0, 2.0);
  double peak = 0;
  for (std::size_t i = 4000; i < 12000; ++i) peak = std::max(peak, std::abs(static_cast<double>(out[i])));
  EXPECT_NEAR(peak, 16000.0 / 32768, 0.01);
}

}  // namespace
}  // namespace voxtral
