// OpenAI's realtime transcription sessions on /v1/realtime (server/realtime.h), sample rates
// in both protocols, and turn detection; over loopback with the demo model. Expected words
// come from the samples' scripts and word times (samples/*.json), never from the engine.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/openai_events.h"
#include "server/pcm.h"
#include "server_test_client.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;

// Seconds where a sample's first word starts and its last word ends.
std::pair<double, double> speech_span(const std::string& name) {
  std::ifstream in(voxtral::testing::source_path("samples/" + name + ".json"));
  const auto words = json::parse(in)["words"];
  return {words.front()[1].get<double>(), words.back()[2].get<double>()};
}

json session_update(int rate, const json& turn_detection = nullptr) {
  return {{"type", "session.update"},
          {"session", {{"type", "transcription"},
                       {"audio", {{"input", {{"format", {{"type", "audio/pcm"}, {"rate", rate}}},
                                             {"transcription", {{"model", "gpt-4o-transcribe"}}},
                                             {"turn_detection", turn_detection}}}}}}}};
}

// Reads events until `type`, returning it; the deltas on the way are joined into `deltas`
// (when given) and must name `item` (when not empty).
json read_until(WsClient& c, const std::string& type, std::string* deltas = nullptr, const std::string& item = "") {
  for (;;) {
    auto event = c.read();
    EXPECT_NE(event["type"], "error") << event.dump();
    if (event["type"] == type) return event;
    if (event["type"] == "conversation.item.input_audio_transcription.delta") {
      if (!item.empty()) {
        EXPECT_EQ(event["item_id"], item);
      }
      if (deltas != nullptr) *deltas += event["delta"].get<std::string>();
    }
  }
}

json expect_error(WsClient& c, const std::string& code, const std::string& param = "") {
  const auto e = c.read();
  EXPECT_EQ(e["type"], "error") << e.dump();
  EXPECT_TRUE(e["event_id"].is_string()) << e.dump();
  EXPECT_EQ(e["error"]["code"], code) << e.dump();
  EXPECT_FALSE(e["error"].value("message", "").empty()) << e.dump();
  if (!param.empty()) {
    EXPECT_EQ(e["error"]["param"], param) << e.dump();
  }
  return e;
}

constexpr const char* kOpenAi = "/v1/realtime?intent=transcription";

TEST(OpenAiRealtime, A24kHzSessionIsTranscribedWithCommitEvents) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), kOpenAi);
  const auto created = c.read();
  ASSERT_EQ(created["type"], "session.created") << created.dump();
  EXPECT_EQ(created["session"]["type"], "transcription");
  EXPECT_TRUE(created["session"]["id"].get<std::string>().starts_with("sess_"));
  EXPECT_TRUE(created["session"]["audio"]["input"]["turn_detection"].is_null());
  c.send(session_update(24000));
  const auto updated = c.read();
  ASSERT_EQ(updated["type"], "session.updated") << updated.dump();
  EXPECT_EQ(updated["session"]["audio"]["input"]["format"]["rate"], 24000);
  EXPECT_EQ(updated["session"]["audio"]["input"]["transcription"]["model"], "gpt-4o-transcribe");
  for (const std::string name : {"lights", "timer"}) {
    c.append_in_pieces(pcm16_at(name, 24000), 24000);
    c.send({{"type", "input_audio_buffer.commit"}});
    std::string deltas;
    const auto committed = read_until(c, "input_audio_buffer.committed", &deltas);
    const std::string item = committed["item_id"];
    EXPECT_TRUE(item.starts_with("item_")) << committed.dump();
    const auto completed = read_until(c, "conversation.item.input_audio_transcription.completed", &deltas, item);
    EXPECT_EQ(completed["item_id"], item);
    EXPECT_EQ(completed["transcript"], sample_text(name));
    EXPECT_EQ(deltas, sample_text(name));  // streamed under the same item id
    EXPECT_EQ(completed["usage"]["type"], "duration");
    EXPECT_GT(completed["usage"]["seconds"].get<double>(), 2.0);
  }
}

TEST(OpenAiRealtime, BetaEventsAndTheModelQueryParameterWork) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), "/v1/realtime?model=gpt-4o-transcribe");  // as the SDKs' realtime clients connect
  ASSERT_EQ(c.read()["type"], "session.created");
  c.send({{"type", "transcription_session.update"},
          {"event_id", "event_client_1"},
          {"session", {{"input_audio_format", "pcm16"},
                       {"input_audio_transcription", {{"model", "whisper-1"}, {"language", "en"}}},
                       {"turn_detection", nullptr}}}});
  const auto updated = c.read();
  ASSERT_EQ(updated["type"], "transcription_session.updated") << updated.dump();
  EXPECT_EQ(updated["session"]["input_audio_format"], "pcm16");
  EXPECT_EQ(updated["session"]["input_audio_sample_rate"], 24000);
  c.append_in_pieces(pcm16_at("numbers", 24000), 24000);
  c.send({{"type", "input_audio_buffer.commit"}});
  const auto created = read_until(c, "conversation.item.created");
  EXPECT_EQ(created["item"]["role"], "user");
  EXPECT_EQ(read_until(c, "conversation.item.input_audio_transcription.completed")["transcript"], sample_text("numbers"));
}

// G.711 mu-law of a sample at 8 kHz (the encoder written from the standard's segment table,
// independently of the server's decoder).
std::string mulaw_at_8k(const std::string& name) {
  const auto samples = load_audio_file(voxtral::testing::source_path("samples/" + name + ".wav"), 8000);
  std::string bytes;
  for (const float x : samples) {
    int v = static_cast<int>(std::lround(std::clamp(x, -1.0f, 1.0f) * 32767));
    const int sign = v < 0 ? 0x80 : 0;
    v = std::min(std::abs(v), 32635) + 0x84;
    int exponent = 7;
    while (exponent > 0 && (v & (0x4000 >> (7 - exponent))) == 0) --exponent;
    const int mantissa = (v >> (exponent + 3)) & 0x0F;
    bytes.push_back(static_cast<char>(~(sign | (exponent << 4) | mantissa)));
  }
  return bytes;
}

TEST(OpenAiRealtime, G711AudioAt8kHzIsDecodedAndResampled) {
  EXPECT_EQ(decode_pcm(std::string(1, '\xff'), PcmEncoding::Mulaw)->at(0), 0.0f);
  EXPECT_EQ(decode_pcm(std::string(1, '\x80'), PcmEncoding::Mulaw)->at(0), 32124.0f / 32768);
  EXPECT_EQ(decode_pcm(std::string(1, '\x00'), PcmEncoding::Mulaw)->at(0), -32124.0f / 32768);
  EXPECT_EQ(decode_pcm(std::string(1, '\xd5'), PcmEncoding::Alaw)->at(0), 8.0f / 32768);
  EXPECT_EQ(decode_pcm(std::string(1, '\x55'), PcmEncoding::Alaw)->at(0), -8.0f / 32768);
  EXPECT_EQ(decode_pcm(std::string(1, '\xaa'), PcmEncoding::Alaw)->at(0), 32256.0f / 32768);
  EXPECT_FALSE(decode_pcm("abc", PcmEncoding::Pcm16));
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), kOpenAi);
  c.read();
  c.send({{"type", "session.update"}, {"session", {{"audio", {{"input", {{"format", {{"type", "audio/pcmu"}}}}}}}}}});
  EXPECT_EQ(c.read()["session"]["audio"]["input"]["format"]["type"], "audio/pcmu");
  const std::string audio = mulaw_at_8k("timer");
  for (std::size_t at = 0; at < audio.size(); at += 800) c.append(audio.substr(at, 800));
  c.send({{"type", "input_audio_buffer.commit"}});
  // The demo model was trained on wideband speech and does not transcribe telephone audio:
  // the check is that one byte is one sample at 8 kHz (read at another rate, the engine
  // would get another length of audio).
  const auto completed = read_until(c, "conversation.item.input_audio_transcription.completed");
  EXPECT_NEAR(completed["usage"]["seconds"].get<double>(), static_cast<double>(audio.size()) / 8000, 0.1);
}

TEST(OpenAiRealtime, ServerVadEndsEachTurnAtItsPause) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), kOpenAi);
  c.read();
  c.send(session_update(24000, {{"type", "server_vad"}, {"threshold", 0.5}, {"prefix_padding_ms", 300},
                                {"silence_duration_ms", 500}}));
  EXPECT_EQ(c.read()["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"], 500);
  // Two recordings, each followed by a second of silence, and no commit: the server ends the turns.
  const std::vector<std::string> names = {"lights", "timer"};
  double offset = 0;
  std::string previous;
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    c.append_in_pieces(pcm16_at(name, 24000, 1.0), 24000);
    const auto [first, last] = speech_span(name);
    const auto started = read_until(c, "input_audio_buffer.speech_started");
    const std::string item = started["item_id"];
    // audio_start_ms includes the 300 ms of padding, audio_end_ms the 500 ms of silence.
    EXPECT_NEAR(started["audio_start_ms"].get<double>() / 1000 + 0.3, offset + first, 0.3);
    std::string deltas;
    const auto stopped = read_until(c, "input_audio_buffer.speech_stopped", &deltas, item);
    EXPECT_EQ(stopped["item_id"], item);
    EXPECT_NEAR(stopped["audio_end_ms"].get<double>() / 1000 - 0.5, offset + last, 0.3);
    const auto committed = read_until(c, "input_audio_buffer.committed", &deltas, item);
    EXPECT_EQ(committed["item_id"], item);
    EXPECT_EQ(committed["previous_item_id"], previous.empty() ? json(nullptr) : json(previous));
    const auto completed = read_until(c, "conversation.item.input_audio_transcription.completed", &deltas, item);
    EXPECT_EQ(completed["transcript"], sample_text(name));
    previous = item;
    offset += static_cast<double>(pcm16_at(name, 24000, 1.0).size()) / 2 / 24000;
  }
}

// voxtral-server --vad: every session starts with turn detection; one may turn it off.
TEST(OpenAiRealtime, ServerWideVadIsEachSessionsDefault) {
  ServerOptions options;
  options.turn_detection = TurnDetectionOptions{};
  RunningServer s(options);
  WsClient c(s.port(), kOpenAi);
  const auto created = c.read();
  EXPECT_EQ(created["session"]["audio"]["input"]["turn_detection"]["type"], "server_vad") << created.dump();
  c.append_in_pieces(pcm16_at("lights", 24000, 1.0), 24000);  // OpenAI's default format: 24 kHz PCM16
  EXPECT_EQ(read_until(c, "conversation.item.input_audio_transcription.completed")["transcript"], sample_text("lights"));
  c.send(session_update(16000));  // turn_detection: null
  EXPECT_TRUE(read_until(c, "session.updated")["session"]["audio"]["input"]["turn_detection"].is_null());
  c.append_in_pieces(pcm16_at("timer", 16000, 1.0), 16000);
  c.send({{"type", "input_audio_buffer.commit"}});  // no turn ended by itself: the commit ends it
  const auto committed = c.read();
  EXPECT_EQ(committed["type"], "input_audio_buffer.committed") << committed.dump();
  EXPECT_EQ(read_until(c, "conversation.item.input_audio_transcription.completed")["transcript"], sample_text("timer"));
}

TEST(OpenAiRealtime, ClearDropsTheTurnAndCommitsNeedAudio) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port(), kOpenAi);
  c.read();
  c.send({{"type", "input_audio_buffer.commit"}, {"event_id", "event_c1"}});
  EXPECT_EQ(expect_error(c, "input_audio_buffer_commit_empty")["error"]["event_id"], "event_c1");
  c.append(std::string(640, '\0'));  // 20 ms at 16 kHz
  c.send({{"type", "input_audio_buffer.commit"}});
  expect_error(c, "input_audio_buffer_commit_empty");
  c.append_in_pieces(pcm16_at("lights", 16000), 16000);
  c.send({{"type", "input_audio_buffer.clear"}});
  read_until(c, "input_audio_buffer.cleared");
  c.append_in_pieces(pcm16_at("timer", 16000), 16000);
  c.send({{"type", "input_audio_buffer.commit"}});
  // The cleared words never come: the next transcript is the timer's alone.
  const auto completed = read_until(c, "conversation.item.input_audio_transcription.completed");
  EXPECT_EQ(completed["transcript"], sample_text("timer"));
}

TEST(OpenAiRealtime, BadEventsGetErrorsNamingTheFieldAndTheSessionGoesOn) {
  ServerOptions options;
  options.strict_model_name = true;
  RunningServer s(options);
  WsClient c(s.port(), kOpenAi);
  c.read();
  c.send(session_update(4000));
  expect_error(c, "invalid_value", "session.audio.input.format.rate");
  c.send(session_update(24000, {{"type", "semantic_vad"}}));
  expect_error(c, "invalid_value", "session.audio.input.turn_detection.type");
  c.send(session_update(24000, {{"type", "server_vad"}, {"threshold", 2}}));
  expect_error(c, "invalid_value", "session.audio.input.turn_detection.threshold");
  c.send(session_update(24000, {{"type", "server_vad"}, {"silence_duration_ms", "500"}}));
  expect_error(c, "invalid_type", "session.audio.input.turn_detection.silence_duration_ms");
  c.send({{"type", "session.update"}, {"session", {{"type", "realtime"}}}});
  expect_error(c, "invalid_value", "session.type");
  c.send({{"type", "session.update"}, {"session", {{"audio", {{"input", {{"format", {{"rate", 22050.5}}}}}}}}}});
  expect_error(c, "invalid_type", "session.audio.input.format.rate");
  c.send(session_update(16000));  // the model name is not served under --strict-model-name
  expect_error(c, "model_not_found", "session.audio.input.transcription.model");
  c.send({{"type", "response.create"}});
  expect_error(c, "unsupported_event", "type");
  c.send({{"type", "input_audio_buffer.append"}, {"audio", base64_encode("abc")}});
  expect_error(c, "invalid_audio", "audio");
  c.send({{"type", "input_audio_buffer.append"}, {"audio", "%%%"}});
  expect_error(c, "invalid_audio", "audio");
  c.send_text("{not json");
  expect_error(c, "invalid_json");
  c.send({{"type", "input_audio_buffer.commit"}, {"event_id", 7}});
  expect_error(c, "invalid_type", "event_id");
  // Nothing of that changed the session: 24 kHz PCM (OpenAI's default), no turn detection.
  c.append_in_pieces(pcm16_at("lights", 24000), 24000);
  c.send({{"type", "input_audio_buffer.commit"}});
  EXPECT_EQ(read_until(c, "conversation.item.input_audio_transcription.completed")["transcript"], sample_text("lights"));
  EXPECT_EQ(request(s.port(), http::verb::get, "/health").status, 200);
}

TEST(VllmRealtime, TheDeclaredSampleRateIsHonoured) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port());
  c.read();
  c.send({{"type", "session.update"}, {"model", "demo"}, {"sample_rate", 4000}});
  const auto e = c.read();
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["code"], "invalid_value");
  EXPECT_EQ(e["param"], "sample_rate");
  c.send({{"type", "session.update"}, {"model", "demo"}, {"sample_rate", 24000}});
  c.commit(false);
  c.append_in_pieces(pcm16_at("timer", 24000), 24000);
  c.commit(true);
  const auto [deltas, done] = c.collect();
  EXPECT_EQ(done["text"], sample_text("timer"));
  // Then 48 kHz in the same session.
  c.send({{"type", "session.update"}, {"model", "demo"}, {"sample_rate", 48000}});
  c.append_in_pieces(pcm16_at("lights", 48000), 48000);
  c.commit(true);
  EXPECT_EQ(c.collect().second["text"], sample_text("lights"));
}

TEST(VllmRealtime, TurnDetectionEndsUtterancesAtPauses) {
  RunningServer s(ServerOptions{});
  WsClient c(s.port());
  c.read();
  c.send({{"type", "session.update"}, {"model", "demo"}, {"turn_detection", {{"type", "server_vad"}}}});
  c.append_in_pieces(pcm16_at("numbers", 16000, 1.0));  // two phrases 0.64 s apart: no commit
  // The turn events come as the audio is read; each done follows its turn's stop.
  std::vector<std::string> events, texts;
  while (texts.size() < 2) {
    const auto event = c.read();
    const std::string type = event["type"];
    if (type == "transcription.delta") continue;
    events.push_back(type);
    if (type == "transcription.done") texts.push_back(event["text"]);
  }
  EXPECT_EQ(texts, (std::vector<std::string>{"four one five two", "nine hundred twelve"}));
  const auto position = [&](const std::string& type, int nth) {
    int seen = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (events[i] == type && seen++ == nth) return static_cast<int>(i);
    }
    return -1;
  };
  EXPECT_EQ(position("input_audio_buffer.speech_started", 0), 0);
  EXPECT_LT(position("input_audio_buffer.speech_stopped", 0), position("transcription.done", 0));
  EXPECT_LT(position("input_audio_buffer.speech_stopped", 0), position("input_audio_buffer.speech_started", 1));
  EXPECT_LT(position("input_audio_buffer.speech_stopped", 1), position("transcription.done", 1));
  c.commit(true);  // the final commit still gets its (empty) done
  EXPECT_EQ(c.collect().second["text"], "");
}

// The OpenAI parser alone.
struct Recorder : OpenAiEventSink {
  std::vector<std::string> calls;
  OpenAiSessionUpdate update;
  void on_session_update(const OpenAiSessionUpdate& u, const std::string& id) override {
    update = u;
    calls.push_back("update " + id);
  }
  void on_append(std::string bytes, const std::string&) override { calls.push_back("append " + std::to_string(bytes.size())); }
  void on_commit(const std::string&) override { calls.push_back("commit"); }
  void on_clear(const std::string&) override { calls.push_back("clear"); }
  void on_error(const RealtimeError& e, const std::string&) override { calls.push_back("error " + e.code + " " + e.param); }
  std::string last(const std::string& message) {
    calls.clear();
    dispatch_openai_event(message, *this);
    EXPECT_EQ(calls.size(), 1u) << message;
    return calls.empty() ? "" : calls.back();
  }
};

TEST(OpenAiEvents, BothShapesAreReadAndFieldsAreTypeChecked) {
  Recorder r;
  EXPECT_EQ(r.last(R"({"type":"transcription_session.update","event_id":"e1","session":{"input_audio_format":"g711_alaw",
      "turn_detection":{"type":"server_vad","silence_duration_ms":700}}})"), "update e1");
  EXPECT_TRUE(r.update.beta);
  EXPECT_EQ(r.update.format, (InputAudioFormat{PcmEncoding::Alaw, 8000}));
  ASSERT_TRUE(r.update.turn_detection);
  EXPECT_EQ(r.update.turn_detection->silence_duration_ms, 700);
  EXPECT_EQ(r.update.turn_detection->prefix_padding_ms, 300);
  EXPECT_EQ(r.last(R"({"type":"session.update","session":{"audio":{"input":{"turn_detection":null,
      "format":{"type":"audio/pcm","rate":44100.0}}}}})"), "update ");
  EXPECT_FALSE(r.update.beta);
  EXPECT_TRUE(r.update.turn_detection_given);
  EXPECT_FALSE(r.update.turn_detection);
  EXPECT_EQ(r.update.format, (InputAudioFormat{PcmEncoding::Pcm16, 44100}));
  EXPECT_EQ(r.last(R"({"type":"session.update","session":{}})"), "update ");
  EXPECT_FALSE(r.update.format);
  EXPECT_FALSE(r.update.turn_detection_given);
  EXPECT_EQ(r.last(R"({"type":"session.update","session":{"input_audio_format":"mp3"}})"),
            "error invalid_value session.input_audio_format");
  EXPECT_EQ(r.last(R"({"type":"session.update","session":{"audio":{"input":{"format":{"type":"audio/pcmu","rate":16000}}}}})"),
            "error invalid_value session.audio.input.format.rate");
  EXPECT_EQ(r.last(R"({"type":"session.update","session":{"audio":{"input":{"transcription":{"model":5}}}}})"),
            "error invalid_type session.audio.input.transcription.model");
  EXPECT_EQ(r.last(R"({"type":"session.update","session":{"audio":{"input":{"noise_reduction":"far"}}}})"),
            "error invalid_type session.audio.input.noise_reduction");
  EXPECT_EQ(r.last(R"({"type":"session.update","session":7})"), "error invalid_type session");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append","audio":"AAEC"})"), "append 3");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append","audio":""})"), "error invalid_audio audio");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append"})"), "error missing_field audio");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.clear"})"), "clear");
  EXPECT_EQ(r.last(R"({"type":"conversation.item.create"})"), "error unsupported_event type");
  EXPECT_EQ(r.last(R"({"type":"nope"})"), "error unknown_event type");
  EXPECT_EQ(r.last(R"([])"), "error invalid_event ");
  EXPECT_EQ(r.last(std::string(100000, '{')), "error invalid_json ");
  EXPECT_EQ(r.last(std::string(20, '[') + std::string(20, ']')), "error invalid_event ");
}

}  // namespace
}  // namespace voxtral
