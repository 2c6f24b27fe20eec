// OpenAI's realtime transcription sessions as OpenAI's own clients expect them: the default
// input format (24 kHz PCM16 when the session names none), each item's events in OpenAI's
// order (committed, item added/created, deltas, completed), no words of a cleared item, and
// error messages that say what is wrong with the audio. Over loopback with the demo model;
// expected words come from the samples' scripts (samples/*.json), never from the engine.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/openai_events.h"
#include "server_test_client.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kOpenAi = "/v1/realtime?intent=transcription";
constexpr const char* kDelta = "conversation.item.input_audio_transcription.delta";
constexpr const char* kCompleted = "conversation.item.input_audio_transcription.completed";

// Waits until the engine has taken `seconds` of audio (less what the resampler holds back)
// and stopped decoding (its words for it are written): what the server does with them is
// then up to the session.
void wait_until_decoded(RunningServer& s, double seconds) {
  std::int64_t rows = -1;
  int still = 0;
  for (int i = 0; i < 300; ++i) {
    const auto counters = s.engine.counters();
    still = counters.decoded_rows > 0 && counters.decoded_rows == rows ? still + 1 : 0;
    if (counters.audio_seconds >= seconds - 0.2 && still >= 3) return;
    rows = counters.decoded_rows;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL() << "the engine never finished decoding " << seconds << " s of audio";
}

// The next transcription.completed (or the error that comes instead), skipping the rest.
json read_completed_or_error(WsClient& c) {
  for (;;) {
    json event = c.read();
    if (event["type"] == kCompleted || event["type"] == "error") return event;
  }
}

double seconds_of(const std::string& pcm, int rate) { return static_cast<double>(pcm.size()) / 2 / rate; }

TEST(OpenAiRealtimeDefaults, WithoutAFormatAppendsAre24kHzPcm16) {
  RunningServer s(ServerOptions{});
  const std::string timer = pcm16_at("timer", 24000);
  {  // GA: no session.update at all
    WsClient c(s.port(), kOpenAi);
    const auto created = c.read();
    ASSERT_EQ(created["type"], "session.created") << created.dump();
    EXPECT_EQ(created["session"]["audio"]["input"]["format"], (json{{"type", "audio/pcm"}, {"rate", 24000}}));
    c.append_in_pieces(timer, 24000);
    c.send({{"type", "input_audio_buffer.commit"}});
    const json completed = read_completed_or_error(c);
    EXPECT_EQ(completed["transcript"], sample_text("timer")) << completed.dump();
    EXPECT_NEAR(completed["usage"]["seconds"].get<double>(), seconds_of(timer, 24000), 0.1);
  }
  {  // GA: a session.update that names no format
    WsClient c(s.port(), "/v1/realtime?model=gpt-4o-transcribe");
    c.read();
    c.send({{"type", "session.update"},
            {"session", {{"type", "transcription"}, {"audio", {{"input", {{"turn_detection", nullptr}}}}}}}});
    EXPECT_EQ(c.read()["session"]["audio"]["input"]["format"]["rate"], 24000);
  }
  {  // beta: the header, and a transcription_session.update that names no format
    WsClient c(s.port(), "/v1/realtime?model=gpt-4o-transcribe", {{"OpenAI-Beta", "realtime=v1"}});
    const auto created = c.read();
    ASSERT_EQ(created["type"], "transcription_session.created") << created.dump();
    EXPECT_EQ(created["session"]["input_audio_format"], "pcm16");
    EXPECT_EQ(created["session"]["input_audio_sample_rate"], 24000);
    c.send({{"type", "transcription_session.update"},
            {"session", {{"input_audio_transcription", {{"model", "whisper-1"}}}}}});
    EXPECT_EQ(c.read()["session"]["input_audio_sample_rate"], 24000);
    c.append_in_pieces(timer, 24000);
    c.send({{"type", "input_audio_buffer.commit"}});
    const json completed = read_completed_or_error(c);
    EXPECT_EQ(completed["transcript"], sample_text("timer")) << completed.dump();
  }
}

// vLLM's protocol keeps vLLM's own default: appends are 16 kHz PCM16.
TEST(OpenAiRealtimeDefaults, VllmSessionsStayAt16kHz) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port());
  c.read();
  c.validate();
  const std::string lights = pcm16_at("lights", 16000);
  c.append_in_pieces(lights);
  c.commit(true);
  const auto [deltas, done] = c.collect();
  EXPECT_EQ(done["text"], sample_text("lights"));
}

TEST(OpenAiRealtimeOrder, DeltasFollowTheCommitAndTheItem) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), kOpenAi);
  c.read();
  const std::string numbers = pcm16_at("numbers", 24000);
  c.append_in_pieces(numbers, 24000);
  wait_until_decoded(s, seconds_of(numbers, 24000));  // the words of the open turn exist by now
  c.send({{"type", "input_audio_buffer.commit"}});
  const auto committed = c.read();
  ASSERT_EQ(committed["type"], "input_audio_buffer.committed") << committed.dump();
  const std::string item = committed["item_id"];
  const auto added = c.read();
  ASSERT_EQ(added["type"], "conversation.item.added") << added.dump();
  EXPECT_EQ(added["item"]["id"], item);
  std::string deltas;
  int delta_events = 0;
  for (;;) {
    const auto event = c.read();
    if (event["type"] == kCompleted) {
      EXPECT_EQ(event["item_id"], item);
      EXPECT_EQ(event["transcript"], sample_text("numbers"));
      break;
    }
    ASSERT_EQ(event["type"], kDelta) << event.dump();
    EXPECT_EQ(event["item_id"], item);
    deltas += event["delta"].get<std::string>();
    ++delta_events;
  }
  EXPECT_EQ(deltas, sample_text("numbers"));
  EXPECT_GT(delta_events, 1);  // held words go out as the deltas they were, in order
}

TEST(OpenAiRealtimeOrder, ACommitWhileTheEngineWritesKeepsTheOrder) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), "/v1/realtime?model=gpt-4o-transcribe", {{"OpenAI-Beta", "realtime=v1"}});
  c.read();
  c.append_in_pieces(pcm16_at("timer", 24000), 24000);
  c.send({{"type", "input_audio_buffer.commit"}});  // no wait: words come before and after it
  std::vector<std::string> types;
  std::string deltas;
  for (;;) {
    const auto event = c.read();
    ASSERT_NE(event["type"], "error") << event.dump();
    types.push_back(event["type"]);
    if (event["type"] == kDelta) deltas += event["delta"].get<std::string>();
    if (event["type"] == kCompleted) break;
  }
  ASSERT_GE(types.size(), 3u);
  EXPECT_EQ(types[0], "input_audio_buffer.committed");
  EXPECT_EQ(types[1], "conversation.item.created");
  for (std::size_t i = 2; i + 1 < types.size(); ++i) EXPECT_EQ(types[i], kDelta);
  EXPECT_EQ(deltas, sample_text("timer"));
}

TEST(OpenAiRealtimeOrder, AClearedItemsWordsAreNeverSent) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), kOpenAi);
  c.read();
  const std::string lights = pcm16_at("lights", 24000);
  c.append_in_pieces(lights, 24000);
  wait_until_decoded(s, seconds_of(lights, 24000));
  c.send({{"type", "input_audio_buffer.clear"}});
  const auto cleared = c.read();
  ASSERT_EQ(cleared["type"], "input_audio_buffer.cleared") << cleared.dump();
  c.append_in_pieces(pcm16_at("timer", 24000), 24000);
  c.send({{"type", "input_audio_buffer.commit"}});
  const auto committed = c.read();
  ASSERT_EQ(committed["type"], "input_audio_buffer.committed") << committed.dump();
  const std::string item = committed["item_id"];
  std::string deltas;
  for (;;) {
    const auto event = c.read();
    ASSERT_NE(event["type"], "error") << event.dump();
    if (event.contains("item_id")) {
      EXPECT_EQ(event["item_id"], item) << event.dump();
    }
    if (event["type"] == kDelta) deltas += event["delta"].get<std::string>();
    if (event["type"] == kCompleted) break;
  }
  EXPECT_EQ(deltas, sample_text("timer"));
}

// vLLM's protocol keeps its early deltas: the words stream before the final commit.
TEST(OpenAiRealtimeOrder, VllmDeltasStillComeBeforeTheCommit) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port());
  c.read();
  c.validate();
  c.append_in_pieces(pcm16_at("numbers", 16000));
  const auto delta = c.read();  // no commit yet
  EXPECT_EQ(delta["type"], "transcription.delta") << delta.dump();
  c.commit(true);
  EXPECT_EQ(c.collect().second["text"], sample_text("numbers"));
}

// The message says what is wrong with the audio.
struct ErrorRecorder : OpenAiEventSink {
  RealtimeError error;
  void on_session_update(const OpenAiSessionUpdate&, const std::string&) override {}
  void on_append(std::string, const std::string&) override { error = {}; }
  void on_commit(const std::string&) override {}
  void on_clear(const std::string&) override {}
  void on_error(const RealtimeError& e, const std::string&) override { error = e; }
};

TEST(OpenAiRealtimeErrors, BadBase64IsCalledNotBase64) {
  ErrorRecorder r;
  for (const std::string audio : {"!!!!not base64@@@", "AAAAAA", "AAA=AAAA", "%%%"}) {
    dispatch_openai_event(json{{"type", "input_audio_buffer.append"}, {"audio", audio}}.dump(), r);
    EXPECT_EQ(r.error.code, "invalid_audio") << audio;
    EXPECT_EQ(r.error.param, "audio") << audio;
    EXPECT_THAT(r.error.message, HasSubstr("not valid base64")) << audio;
    EXPECT_THAT(r.error.message, Not(HasSubstr("empty"))) << audio;
  }
  dispatch_openai_event(R"({"type":"input_audio_buffer.append","audio":""})", r);
  EXPECT_EQ(r.error.code, "invalid_audio");
  EXPECT_THAT(r.error.message, HasSubstr("empty"));
  EXPECT_THAT(r.error.message, Not(HasSubstr("base64")));
}

}  // namespace
}  // namespace voxtral
