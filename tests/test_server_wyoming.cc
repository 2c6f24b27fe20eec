// The Wyoming protocol (voxtral-server --wyoming) over loopback with the demo model: the
// service description, whole transcriptions with streamed text, other audio formats, and
// clients that break the protocol or the limits. Expected words come from the samples'
// scripts (samples/*.json), never from the engine.
#include <cmath>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "wyoming_client.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

ServerOptions wyoming_options() {
  ServerOptions o;
  o.wyoming_port = 0;
  o.max_message_bytes = 256u << 10;
  o.max_audio_seconds = 120;
  o.idle_timeout_seconds = 5;
  return o;
}

// The server's next event is an error with `code` and a text, and then it closes.
void expect_refusal(WyomingClient& c, const std::string& code, const std::string& text_part = "") {
  const auto event = c.read();
  ASSERT_TRUE(event) << "no error event before the close";
  EXPECT_EQ(event->type, "error") << event->data.dump();
  EXPECT_EQ(event->data.value("code", ""), code) << event->data.dump();
  EXPECT_FALSE(event->data.value("text", "").empty()) << event->data.dump();
  if (!text_part.empty()) {
    EXPECT_THAT(event->data.value("text", ""), HasSubstr(text_part));
  }
  EXPECT_TRUE(c.closed());
}

// The server still answers a new connection.
void expect_alive(unsigned short port) {
  WyomingClient c(port);
  c.send("describe");
  EXPECT_EQ(c.expect().type, "info");
}

TEST(Wyoming, DescribeAnswersInfoWithTheModel) {
  RunningServer s(wyoming_options());
  ASSERT_NE(s.server.wyoming_port(), 0);
  ASSERT_NE(s.server.wyoming_port(), s.port());
  WyomingClient c(s.server.wyoming_port());
  c.send("describe");
  const auto info = c.expect();
  ASSERT_EQ(info.type, "info");
  ASSERT_EQ(info.data["asr"].size(), 1u) << info.data.dump();
  const json& program = info.data["asr"][0];
  EXPECT_EQ(program["name"], "voxtral");
  EXPECT_EQ(program["installed"], true);
  EXPECT_EQ(program["supports_transcript_streaming"], true);
  EXPECT_TRUE(program["attribution"]["name"].is_string());
  EXPECT_TRUE(program["attribution"]["url"].is_string());
  EXPECT_TRUE(program["description"].is_string());
  EXPECT_TRUE(program["version"].is_string());
  ASSERT_EQ(program["models"].size(), 1u);
  const json& model = program["models"][0];
  EXPECT_EQ(model["name"], "demo");
  EXPECT_EQ(model["installed"], true);
  EXPECT_TRUE(model["attribution"]["name"].is_string());
  EXPECT_THAT(model["languages"].get<std::vector<std::string>>(), ::testing::Contains("en"));
  // The connection stays for more events.
  c.send("ping", {{"text", "hello"}});
  const auto pong = c.expect();
  EXPECT_EQ(pong.type, "pong");
  EXPECT_EQ(pong.data["text"], "hello");
  EXPECT_EQ(request(s.port(), http::verb::get, "/health").status, 200);  // HTTP beside it
}

TEST(Wyoming, TranscribesAStreamAndStreamsItsText) {
  RunningServer s(wyoming_options());
  WyomingClient c(s.server.wyoming_port());
  for (const std::string name : {"timer", "numbers"}) {  // two transcriptions on one connection
    c.send("transcribe", {{"language", "en"}});
    c.audio_start();
    c.audio_chunks(pcm16(name));
    c.send("audio-stop");
    const auto answer = c.transcript();
    EXPECT_EQ(answer.text, sample_text(name));
    EXPECT_EQ(answer.chunks, sample_text(name));  // the chunks joined are the transcript
    ASSERT_GE(answer.types.size(), 4u);
    EXPECT_EQ(answer.types.front(), "transcript-start");
    EXPECT_EQ(answer.types[answer.types.size() - 2], "transcript");
    EXPECT_EQ(answer.types.back(), "transcript-stop");
  }
  const auto metrics = request(s.port(), http::verb::get, "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("voxtral_requests_total{endpoint=\"wyoming:transcribe\",status=\"200\"} 2"));
}

TEST(Wyoming, TextComesOutWhileTheAudioStreams) {
  RunningServer s(wyoming_options());
  WyomingClient c(s.server.wyoming_port());
  c.audio_start();  // transcribe is optional
  c.audio_chunks(pcm16("commands"));  // 16 s; no audio-stop yet
  const std::string expected = sample_text("commands");
  EXPECT_EQ(c.expect().type, "transcript-start");
  const auto first = c.expect();
  ASSERT_EQ(first.type, "transcript-chunk") << first.data.dump();
  std::string text = first.data["text"];
  EXPECT_THAT(expected, StartsWith(text));
  EXPECT_FALSE(text.empty());
  c.send("audio-stop");
  const auto rest = c.transcript();
  EXPECT_EQ(text + rest.chunks, expected);
  EXPECT_EQ(rest.text, expected);
}

// Interleaved 24-bit stereo at 48 kHz: mixed and resampled to the model's 16 kHz.
TEST(Wyoming, OtherRatesWidthsAndChannelsAreConverted) {
  RunningServer s(wyoming_options());
  const auto samples = load_audio_file(voxtral::testing::source_path("samples/timer.wav"), 48000);
  std::string pcm;
  for (const float v : samples) {
    const auto integer = static_cast<std::int32_t>(std::lround(std::clamp(v, -1.0f, 0.9999f) * 8388608.0));
    for (int channel = 0; channel < 2; ++channel) {
      for (int b = 0; b < 3; ++b) pcm += static_cast<char>((integer >> (8 * b)) & 0xFF);
    }
  }
  WyomingClient c(s.server.wyoming_port());
  c.audio_start(48000, 3, 2);
  c.audio_chunks(pcm, 6 * 4800, 48000, 3, 2);
  c.send("audio-stop");
  EXPECT_EQ(c.transcript().text, sample_text("timer"));
}

TEST(Wyoming, SilenceGivesAnEmptyTranscript) {
  RunningServer s(wyoming_options());
  WyomingClient c(s.server.wyoming_port());
  c.audio_start();
  c.audio_chunk(std::string(32000, '\0'));
  c.send("audio-stop");
  const auto answer = c.transcript();
  EXPECT_EQ(answer.text, "");
  EXPECT_THAT(answer.types, ElementsAre("transcript-start", "transcript", "transcript-stop"));
}

TEST(Wyoming, BrokenFramingGetsAnErrorThenTheClose) {
  RunningServer s(wyoming_options());
  const unsigned short port = s.server.wyoming_port();
  {
    WyomingClient c(port);
    c.send_bytes(std::string(100000, 'x'));  // no newline within the header limit
    expect_refusal(c, "header_too_long");
  }
  {
    WyomingClient c(port);
    c.send_bytes("{\"type\": \"describe\"\n");
    expect_refusal(c, "invalid_header", "not a line of valid JSON");
  }
  {
    WyomingClient c(port);
    c.send_bytes("{\"type\":\"audio-start\",\"data_length\":5}\n{\"ra}");
    expect_refusal(c, "invalid_data");
  }
  {
    WyomingClient c(port);  // over --max-message-kb (256 KiB here), refused before it is sent
    c.send_bytes("{\"type\":\"audio-chunk\",\"payload_length\":1000000}\n");
    expect_refusal(c, "payload_too_long", "--max-message-kb");
  }
  {
    // A payload shorter than its payload_length says: the next header is read as audio,
    // and the chunk is not whole frames.
    WyomingClient c(port);
    c.audio_start();
    const std::string stop = "{\"type\":\"audio-stop\"}\n";  // 22 bytes
    c.send_bytes("{\"type\":\"audio-chunk\",\"data\":{\"rate\":16000,\"width\":2,\"channels\":1},\"payload_length\":33}\n" +
                 std::string(10, '\0') + stop + "{");
    expect_refusal(c, "invalid_audio", "not whole frames");
  }
  {
    // Longer than it says: the rest of the payload is read as the next header.
    WyomingClient c(port);
    c.audio_start();
    c.send_bytes("{\"type\":\"audio-chunk\",\"data\":{\"rate\":16000,\"width\":2,\"channels\":1},\"payload_length\":4}\n" +
                 std::string(10, '\x01') + "\n");
    expect_refusal(c, "invalid_header");
  }
  expect_alive(port);
}

TEST(Wyoming, EventsOutOfOrderOrOfWrongFormatAreRefused) {
  RunningServer s(wyoming_options());
  const unsigned short port = s.server.wyoming_port();
  {
    WyomingClient c(port);
    c.audio_chunk(std::string(3200, '\0'));
    expect_refusal(c, "audio_not_started", "before audio-start");
  }
  {
    WyomingClient c(port);
    c.send("audio-stop");
    expect_refusal(c, "audio_not_started");
  }
  {
    WyomingClient c(port);
    c.audio_start(16000, 1, 1);
    expect_refusal(c, "invalid_audio_format", "`width`");
  }
  {
    WyomingClient c(port);
    c.audio_start();
    c.audio_chunk(std::string(3200, '\0'), 16000, 5, 1);
    expect_refusal(c, "invalid_audio_format", "`width` is 5");
  }
  {
    WyomingClient c(port);
    c.send("audio-start", {{"rate", "16000"}, {"width", 2}, {"channels", 1}});
    expect_refusal(c, "invalid_audio_format", "`rate` must be a whole number");
  }
  {
    WyomingClient c(port);
    c.audio_start();
    c.audio_chunk(std::string(3200, '\0'));
    c.audio_chunk(std::string(3200, '\0'), 22050, 2, 1);  // another rate in mid-stream
    expect_refusal(c, "audio_format_mismatch", "22050 Hz");
  }
  {
    WyomingClient c(port);
    c.audio_start();
    c.audio_start();
    expect_refusal(c, "audio_already_started");
  }
  {
    WyomingClient c(port);
    c.send("transcribe", {{"name", 7}});
    expect_refusal(c, "invalid_type", "`name`");
  }
  expect_alive(port);
  EXPECT_TRUE(s.idle());  // every refused stream gave its engine slot back
}

TEST(Wyoming, UnknownEventsAreIgnored) {
  RunningServer s(wyoming_options());
  WyomingClient c(s.server.wyoming_port());
  c.send("run-pipeline", {{"start_stage", "asr"}});
  c.send("describe");
  EXPECT_EQ(c.expect().type, "info");
}

TEST(Wyoming, ModelNamesAreCheckedWhenStrict) {
  ServerOptions options = wyoming_options();
  options.strict_model_name = true;
  RunningServer s(options);
  {
    WyomingClient c(s.server.wyoming_port());
    c.send("transcribe", {{"name", "demo"}});
    c.audio_start();
    c.audio_chunks(pcm16("lights"));
    c.send("audio-stop");
    EXPECT_EQ(c.transcript().text, sample_text("lights"));
  }
  WyomingClient c(s.server.wyoming_port());
  c.send("transcribe", {{"name", "whisper-1"}});
  expect_refusal(c, "model_not_found", "`whisper-1`");
}

TEST(Wyoming, ASilentClientIsClosed) {
  ServerOptions options = wyoming_options();
  options.idle_timeout_seconds = 1;
  RunningServer s(options);
  WyomingClient c(s.server.wyoming_port());  // silent after its header began
  c.send_bytes("{\"type\":\"describe\"");
  expect_refusal(c, "idle_timeout", "--idle-timeout");
}

// A stream holds an engine slot: pings alone do not keep it past --idle-timeout.
TEST(Wyoming, PingsDoNotKeepAStreamsSlot) {
  ServerOptions options = wyoming_options();
  options.idle_timeout_seconds = 1;
  SchedulerOptions engine;
  engine.max_jobs = 1;
  RunningServer s(options, engine);
  WyomingClient c(s.server.wyoming_port());
  c.audio_start();
  c.audio_chunk(pcm16("lights").substr(0, 16000));  // 0.5 s
  ASSERT_TRUE(s.jobs(1));
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
    c.send("ping", {{"text", "still here"}});
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (;;) {
    const auto event = c.read();
    ASSERT_TRUE(event) << "no error event before the close";
    if (event->type == "pong" || event->type.starts_with("transcript")) continue;
    EXPECT_EQ(event->type, "error") << event->data.dump();
    EXPECT_EQ(event->data.value("code", ""), "idle_timeout") << event->data.dump();
    EXPECT_THAT(event->data.value("text", ""), HasSubstr("no audio")) << event->data.dump();
    EXPECT_THAT(event->data.value("text", ""), HasSubstr("--idle-timeout")) << event->data.dump();
    break;
  }
  EXPECT_TRUE(c.closed());
  EXPECT_TRUE(s.idle());  // the slot is free
  WyomingClient next(s.server.wyoming_port());
  next.audio_start();
  next.audio_chunks(pcm16("lights"));
  next.send("audio-stop");
  EXPECT_EQ(next.transcript().text, sample_text("lights"));
}

TEST(Wyoming, LimitsOfTheServerApply) {
  ServerOptions options = wyoming_options();
  options.max_audio_seconds = 3;
  SchedulerOptions engine;
  engine.max_jobs = 1;
  RunningServer s(options, engine);
  const unsigned short port = s.server.wyoming_port();
  {
    WyomingClient c(port);
    c.audio_start();
    c.audio_chunks(pcm16("timer"));  // 4.5 s
    expect_refusal(c, "audio_too_long", "--max-audio-seconds");
  }
  ASSERT_TRUE(s.idle());
  WyomingClient first(port);
  first.audio_start();  // holds the one engine slot
  first.audio_chunk(std::string(3200, '\0'));
  ASSERT_TRUE(s.jobs(1));
  {
    WyomingClient second(port);
    second.audio_start();
    expect_refusal(second, "server_busy", "--max-sessions");
  }
  first.audio_chunks(pcm16("lights").substr(0, 32000));
  first.send("audio-stop");
  EXPECT_EQ(first.transcript().types.back(), "transcript-stop");
}

TEST(Wyoming, AClientFasterThanTheEngineIsHeldBackNotCut) {
  ServerOptions options = wyoming_options();
  options.max_buffered_audio_seconds = 2;
  RunningServer s(options);
  WyomingClient c(s.server.wyoming_port());
  c.audio_start();
  c.audio_chunks(pcm16("commands"), 32000);  // 16.3 s as fast as the socket takes it
  c.send("audio-stop");
  const auto answer = c.transcript();
  EXPECT_EQ(answer.text, sample_text("commands"));
}

TEST(Wyoming, ShutdownEndsARunningTranscription) {
  RunningServer s(wyoming_options());
  WyomingClient c(s.server.wyoming_port());
  c.audio_start();
  c.audio_chunk(pcm16("commands").substr(0, 64000));
  ASSERT_TRUE(s.jobs(1));
  s.server.abort_remaining();
  for (;;) {  // text of the audio so far may come first
    const auto event = c.expect();
    if (event.type == "error") {
      EXPECT_EQ(event.data["code"], "server_shutdown");
      break;
    }
    ASSERT_THAT(event.type, StartsWith("transcript-"));
  }
  EXPECT_TRUE(c.closed());
  EXPECT_TRUE(s.jobs(0));
}

}  // namespace
}  // namespace voxtral
