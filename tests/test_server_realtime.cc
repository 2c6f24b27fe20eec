// The realtime WebSocket (/v1/realtime) against hostile and careless clients, its limits,
// utterance order, commits and shutdown; over loopback with the demo model. Expected words
// come from the samples' scripts (samples/*.json), never from the engine.
#include <mutex>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server/json_text.h"
#include "server/realtime_events.h"
#include "server_test_client.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;

ServerOptions small_limits() {
  ServerOptions o;
  o.max_message_bytes = 256u << 10;
  o.max_audio_seconds = 120;
  o.idle_timeout_seconds = 5;
  return o;
}

void expect_error(WsClient& c, const std::string& code, const std::string& param = "") {
  const auto e = c.read_skipping_deltas();
  EXPECT_EQ(e["type"], "error") << e.dump();
  EXPECT_EQ(e["code"], code) << e.dump();
  EXPECT_FALSE(e.value("error", "").empty()) << e.dump();
  if (!param.empty()) {
    EXPECT_EQ(e.value("param", ""), param) << e.dump();
  }
}

// The event handler alone, with no socket or engine.
struct Recorder : RealtimeEventSink {
  std::vector<std::string> calls;
  void on_session_update(const VllmSessionUpdate& update) override {
    std::string call = "update " + update.model.value_or("-");
    if (update.sample_rate) call += " rate " + std::to_string(*update.sample_rate);
    if (update.turn_detection_given) {
      call += update.turn_detection ? " vad " + std::to_string(update.turn_detection->silence_duration_ms) : " vad off";
    }
    calls.push_back(call);
  }
  void on_append(std::vector<float> samples) override { calls.push_back("append " + std::to_string(samples.size())); }
  void on_commit(bool final) override { calls.push_back(final ? "commit final" : "commit"); }
  void on_error(const RealtimeError& e) override { calls.push_back("error " + e.code + " " + e.param); }
  std::string last(std::string_view message) {
    calls.clear();
    dispatch_realtime_event(message, *this);
    EXPECT_EQ(calls.size(), 1u) << message;
    return calls.empty() ? "" : calls.back();
  }
};

TEST(RealtimeEvents, FieldsAreTypeCheckedAndNamed) {
  Recorder r;
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.commit"})"), "commit");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.commit","final":true})"), "commit final");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.commit","final":1})"), "error invalid_type final");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.commit","final":"true"})"), "error invalid_type final");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.commit","final":null})"), "error invalid_type final");
  EXPECT_EQ(r.last(R"({"type":"session.update"})"), "update -");
  EXPECT_EQ(r.last(R"({"type":"session.update","model":"whisper-1"})"), "update whisper-1");
  EXPECT_EQ(r.last(R"({"type":"session.update","model":null,"language":"en"})"), "update -");
  EXPECT_EQ(r.last(R"({"type":"session.update","model":7})"), "error invalid_type model");
  EXPECT_EQ(r.last(R"({"type":"session.update","model":["demo"]})"), "error invalid_type model");
  EXPECT_EQ(r.last(R"({"type":"session.update","language":1})"), "error invalid_type language");
  EXPECT_EQ(r.last(R"({"type":"session.update","prompt":{}})"), "error invalid_type prompt");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append","audio":"AAABAA=="})"), "append 2");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append","audio":["AAAA"]})"), "error invalid_type audio");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append"})"), "error missing_field audio");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append","audio":"AA=="})"), "error invalid_audio audio");
  EXPECT_EQ(r.last(R"({"type":"input_audio_buffer.append","audio":"A"})"), "error invalid_audio audio");
  EXPECT_EQ(r.last(R"({"type":5})"), "error invalid_type type");
  EXPECT_EQ(r.last(R"({"final":true})"), "error invalid_event type");
  EXPECT_EQ(r.last(R"({"type":"response.create"})"), "error unknown_event type");
  EXPECT_EQ(r.last("[1,2]"), "error invalid_event ");
  EXPECT_EQ(r.last("{not json"), "error invalid_json ");
  EXPECT_EQ(r.last("{\"type\":\"\xff\"}"), "error invalid_json ");
  // Nested or wide beyond any event: refused while parsing.
  EXPECT_EQ(r.last(std::string(100000, '[')), "error invalid_json ");
  EXPECT_EQ(r.last(std::string(50, '[') + std::string(50, ']')), "error invalid_event ");
  std::string wide = "[0";
  for (int i = 0; i < 5000; ++i) wide += ",0";
  EXPECT_EQ(r.last(wide + "]"), "error invalid_event ");
}

TEST(RealtimeEvents, ClientTextInMessagesIsShortAndAlwaysSerializable) {
  struct Capture : Recorder {
    RealtimeError error;
    void on_error(const RealtimeError& e) override {
      error = e;
      Recorder::on_error(e);
    }
  } c;
  std::string type;
  for (int i = 0; i < 100; ++i) type += "\xe2\x82\xac";  // the euro sign, 3 bytes: a cut splits one
  c.last(json{{"type", type}}.dump());
  EXPECT_EQ(c.error.code, "unknown_event");
  EXPECT_LT(c.error.message.size(), 120u);
  const auto text = json_text({{"type", "error"}, {"error", c.error.message}});
  EXPECT_THAT(json::parse(text)["error"].get<std::string>(), HasSubstr("..."));
}

// The engine serves a job's appends, flushes and utterance ends in the order they came.
TEST(Scheduler, UtteranceEndsAndFlushesAreServedInOrderWithTheAudio) {
  Scheduler engine(demo_model(), SchedulerOptions{});
  std::mutex m;
  std::string text;
  std::vector<std::string> done;
  JobCallbacks callbacks;
  callbacks.on_pieces = [&](std::vector<TextPiece> pieces) {
    std::lock_guard lock(m);
    for (const auto& piece : pieces) text += piece.text;
  };
  callbacks.on_done = [&](const StreamStats&) {
    std::lock_guard lock(m);
    done.push_back(text.substr(std::min(text.find_first_not_of(' '), text.size())));
    text.clear();
  };
  StreamOptions options;
  options.continuous = true;
  auto job = engine.start(JobKind::Live, options, std::move(callbacks));
  const auto audio = [](const std::string& name) {
    return load_audio_file(voxtral::testing::source_path("samples/" + name + ".wav"), 16000);
  };
  job->append(audio("lights"));
  job->flush();
  job->append(audio("timer"));
  job->end_utterance();
  job->append(audio("numbers"));
  EXPECT_GT(job->queued_samples(), 0);
  job->end_utterance();
  for (int i = 0; i < 600; ++i) {
    {
      std::lock_guard lock(m);
      if (done.size() == 2) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::vector<std::string> texts;
  {
    std::lock_guard lock(m);
    texts = done;
  }
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0], sample_text("lights") + " " + sample_text("timer"));
  EXPECT_EQ(texts[1], sample_text("numbers"));
  EXPECT_EQ(job->queued_samples(), 0);
  EXPECT_EQ(engine.counters().active_jobs, 1);  // the job stays for the next utterance
  job->cancel();
}

TEST(Realtime, FinalOfAnotherTypeIsAnErrorAndTheServerLives) {
  RunningServer s(small_limits());
  WsClient c(s.port());
  c.read();
  c.validate();
  for (const auto& final : {json(1), json("true"), json(nullptr)}) {
    c.send({{"type", "input_audio_buffer.commit"}, {"final", final}});
    expect_error(c, "invalid_type", "final");
  }
  c.send({{"type", "session.update"}, {"model", 42}});
  expect_error(c, "invalid_type", "model");
  // The session and the server go on.
  c.append(pcm16("lights"));
  c.commit(true);
  EXPECT_EQ(c.collect().second["text"], sample_text("lights"));
  EXPECT_EQ(request(s.port(), http::verb::get, "/health").status, 200);
}

TEST(Realtime, NonUtf8BytesNeverEndTheServer) {
  ServerOptions options = small_limits();
  options.strict_model_name = true;
  RunningServer s(options);
  {
    WsClient c(s.port());
    c.read();
    // A model name and an event type of multi-byte characters, cut in the middle of one
    // when quoted back: the error events are still valid JSON.
    std::string name;
    for (int i = 0; i < 100; ++i) name += "\xe2\x82\xac";
    c.validate(name);
    expect_error(c, "model_not_found", "model");
    c.send({{"type", name}});
    expect_error(c, "unknown_event", "type");
    // Bytes that are not UTF-8, in a binary message: refused as binary, unread.
    c.send_binary("{\"type\":\"input_audio_buffer.commit\",\"final\":\"\xff\xfe\"}");
    expect_error(c, "invalid_event");
    c.validate("demo");
    c.append(pcm16("timer"));
    c.commit(true);
    EXPECT_EQ(c.collect().second["text"], sample_text("timer"));
    // A text message that is not UTF-8: the WebSocket layer closes (1007), nothing more.
    c.send_text("{\"type\":\"\xff\"}");
    beast::flat_buffer buffer;
    EXPECT_EQ(c.read_into(buffer), websocket::error::closed);
    EXPECT_EQ(c.ws().reason().code, websocket::close_code::bad_payload);
  }
  EXPECT_EQ(request(s.port(), http::verb::get, "/health").status, 200);
}

TEST(Realtime, OversizedMessageGetsAnErrorThenTheClose) {
  RunningServer s(small_limits());  // 256 KiB
  WsClient c(s.port());
  c.read();
  try {
    c.append(std::string(300u << 10, 'a'));
  } catch (const beast::system_error&) {
    // The server may close before the whole message is written; the events still come.
  }
  expect_error(c, "message_too_big");
  beast::flat_buffer buffer;
  EXPECT_EQ(c.read_into(buffer), websocket::error::closed);
  EXPECT_EQ(c.ws().reason().code, websocket::close_code::too_big);
  const auto metrics = request(s.port(), http::verb::get, "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("voxtral_errors_total{kind=\"message_too_big\"} 1"));
}

TEST(Realtime, OneAppendOfALongClipFitsTheDefaultLimit) {
  EXPECT_EQ(ServerOptions{}.max_message_bytes, 16u << 20);
  RunningServer s(ServerOptions{});
  WsClient c(s.port());
  c.read();
  // 5 minutes of audio in one append: 12.8 MiB of base64.
  const std::string commands = pcm16("commands");
  std::string clip;
  while (clip.size() < 300u * 32000) clip += commands;
  clip.resize(300u * 32000);
  c.append(clip);
  c.send({{"type", "no.such.event"}});  // the next answer: this error, not a refusal or a close
  expect_error(c, "unknown_event", "type");
}

TEST(Realtime, AudioHeldBeyondTheBoundGetsAnError) {
  ServerOptions options = small_limits();
  options.max_buffered_audio_seconds = 3;
  RunningServer s(options);
  WsClient c(s.port());
  c.read();
  c.validate();
  const std::string timer = pcm16("timer");  // 4.5 s in one append: over 3 s
  c.append(timer);
  expect_error(c, "audio_buffer_full", "audio");
  // The session goes on; audio within the bound is transcribed.
  c.append(pcm16("lights"));  // 2.7 s
  c.commit(true);
  EXPECT_EQ(c.collect().second["text"], sample_text("lights"));
}

TEST(Realtime, AClientFasterThanTheEngineIsHeldBackNotCut) {
  ServerOptions options = small_limits();
  options.max_buffered_audio_seconds = 2;
  RunningServer s(options);
  WsClient c(s.port());
  c.read();
  c.validate();
  const std::string commands = pcm16("commands");  // 16.3 s as fast as the socket takes it
  for (std::size_t at = 0; at < commands.size(); at += 32000) c.append(commands.substr(at, 32000));
  c.commit(true);
  const auto [deltas, done] = c.collect();  // an error event instead fails here
  EXPECT_EQ(done["text"], sample_text("commands"));
  EXPECT_EQ(deltas, sample_text("commands"));
}

TEST(Realtime, HeldAudioIsTakenFromTheMemoryBudget) {
  ServerOptions options = small_limits();
  options.memory_budget_bytes = 200u << 10;  // 3.2 s of held samples
  RunningServer s(options);
  WsClient c(s.port());
  c.read();
  c.validate();
  c.append(pcm16("timer"));  // 4.5 s: 288 KB as samples
  expect_error(c, "server_busy", "audio");
  c.append_in_pieces(pcm16("lights"));  // 2.7 s in all
  c.commit(true);
  EXPECT_EQ(c.collect().second["text"], sample_text("lights"));
}

TEST(Realtime, MaxSessionsCountsSessionsHoldingAudio) {
  SchedulerOptions engine;
  engine.max_jobs = 1;
  RunningServer s(small_limits(), engine);
  WsClient first(s.port());
  first.read();
  first.append(pcm16("lights"));  // no commit yet: the session holds audio
  ASSERT_TRUE(s.jobs(1));
  WsClient second(s.port());
  second.read();
  second.append(pcm16("timer"));
  expect_error(second, "server_busy");
  EXPECT_EQ(upload(s.port(), "timer").status, 503);
  // The first session's audio is still there: it is transcribed when it commits.
  first.validate();
  first.commit(true);
  EXPECT_EQ(first.collect().second["text"], sample_text("lights"));
  // Its slot is freed when it closes.
  first.ws().close(websocket::close_code::normal);
  ASSERT_TRUE(s.jobs(0));
  EXPECT_EQ(upload(s.port(), "timer").status, 200);
}

TEST(Realtime, ASecondUtteranceSentBeforeTheFirstIsDoneIsTranscribed) {
  RunningServer s(small_limits());
  WsClient c(s.port());
  c.read();
  c.validate();
  c.commit(false);
  c.append_in_pieces(pcm16("lights"));
  c.commit(true);
  // At once, before the first transcription.done.
  c.append_in_pieces(pcm16("timer"));
  c.commit(true);
  c.append(pcm16("numbers"));
  c.commit(true);
  EXPECT_EQ(c.collect().second["text"], sample_text("lights"));
  EXPECT_EQ(c.collect().second["text"], sample_text("timer"));
  EXPECT_EQ(c.collect().second["text"], sample_text("numbers"));
}

TEST(Realtime, ACommitBringsOutTheLastWord) {
  RunningServer s(small_limits());
  WsClient c(s.port());
  c.read();
  c.validate();
  c.append(pcm16("lights"));  // the last word ends 0.36 s before the audio: it needs the commit
  c.commit(false);
  std::string text;
  while (text != sample_text("lights")) {  // a read that times out fails the test
    const auto event = c.read();
    ASSERT_EQ(event["type"], "transcription.delta") << event.dump();
    text += event["delta"].get<std::string>();
    ASSERT_LE(text.size(), sample_text("lights").size()) << text;
  }
  c.commit(true);
  const auto [deltas, done] = c.collect();
  EXPECT_EQ(deltas, "");
  EXPECT_EQ(done["text"], sample_text("lights"));
}

TEST(Realtime, TextsAgreeWithTheUpload) {
  RunningServer s(small_limits());
  for (const std::string name : {"timer", "numbers"}) {
    const auto uploaded = upload(s.port(), name);
    ASSERT_EQ(uploaded.status, 200) << uploaded.body;
    EXPECT_EQ(json::parse(uploaded.body)["text"], sample_text(name));
    WsClient c(s.port());
    c.read();
    c.validate();
    c.commit(false);
    c.append_in_pieces(pcm16(name));
    c.commit(true);
    const auto [deltas, done] = c.collect();
    EXPECT_EQ(deltas, sample_text(name));  // the first delta has no leading space
    EXPECT_EQ(done["text"], sample_text(name));
  }
}

TEST(Realtime, ModelNamesAreAcceptedUnlessStrict) {
  RunningServer loose(small_limits());
  WsClient c(loose.port());
  c.read();
  c.validate("mistralai/Voxtral-Mini-4B-Realtime-2602");
  c.commit(true);  // validated: an empty utterance is done at once
  EXPECT_EQ(c.collect().second["text"], "");
  ServerOptions options = small_limits();
  options.strict_model_name = true;
  options.served_model_names = {"demo", "whisper-1"};
  RunningServer strict(options);
  WsClient d(strict.port());
  d.read();
  d.validate("gpt-4o-transcribe");
  expect_error(d, "model_not_found", "model");
  d.validate("whisper-1");
  d.commit(true);
  EXPECT_EQ(d.collect().second["text"], "");
}

TEST(Realtime, ShutdownClosesWithGoingAway) {
  RunningServer s(small_limits());
  WsClient c(s.port());
  c.read();
  c.validate();
  c.append_in_pieces(pcm16("commands"));
  ASSERT_TRUE(s.jobs(1));
  s.server.abort_remaining();
  expect_error(c, "server_shutdown");
  beast::flat_buffer buffer;
  EXPECT_EQ(c.read_into(buffer), websocket::error::closed);
  EXPECT_EQ(c.ws().reason().code, websocket::close_code::going_away);
  EXPECT_TRUE(s.jobs(0)) << s.engine.counters().active_jobs;  // its transcription was cancelled
}

}  // namespace
}  // namespace voxtral
