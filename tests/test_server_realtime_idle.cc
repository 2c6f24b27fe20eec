// A realtime session that holds an engine slot and goes silent (pings alone) is ended after
// --idle-timeout so the slot serves another client; one that keeps sending is not. Binary
// frames are refused as such. Both protocols, over loopback with the demo model.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "server_test_client.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;

struct Door {
  const char* target;
  bool openai;
};
const Door kDoors[] = {{"/v1/realtime", false}, {"/v1/realtime?intent=transcription", true}};

// The error in either protocol's shape: (code, message).
std::pair<std::string, std::string> error_of(const json& event) {
  if (event["error"].is_object()) return {event["error"].value("code", ""), event["error"].value("message", "")};
  return {event.value("code", ""), event.value("error", "")};
}

// Reads past transcript events to the next error; {} when the connection ends first.
json next_error(WsClient& c) {
  for (;;) {
    beast::flat_buffer buffer;
    if (c.read_into(buffer)) return {};
    const auto event = json::parse(beast::buffers_to_string(buffer.data()));
    if (event["type"] == "error") return event;
  }
}

// session.created read; the session set to 16 kHz PCM16 and, in vLLM's protocol, validated.
void set_up(WsClient& c, const Door& door) {
  c.read();  // session.created
  if (door.openai) {
    c.send({{"type", "session.update"},
            {"session", {{"type", "transcription"}, {"audio", {{"input", {{"format", {{"type", "audio/pcm"},
                                                                                      {"rate", 16000}}}}}}}}}});
    c.read();  // session.updated
  } else {
    c.validate();
  }
}

TEST(RealtimeIdle, ASilentSessionIsClosedAndItsSlotFreed) {
  ServerOptions options;
  options.model_id = "demo";
  options.idle_timeout_seconds = 1;
  SchedulerOptions engine;
  engine.max_jobs = 1;
  RunningServer s(options, engine);
  for (const Door& door : kDoors) {
    SCOPED_TRACE(door.target);
    ASSERT_TRUE(s.idle());
    WsClient c(s.port(), door.target);
    set_up(c, door);
    c.append(pcm16("lights").substr(0, 16000));  // 0.5 s: the session takes the one slot
    ASSERT_TRUE(s.jobs(1));
    // Pings for three idle timeouts: they do not keep the slot.
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < std::chrono::seconds(3)) {
      beast::error_code ec;
      c.ws().ping({}, ec);
      if (ec) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    const auto error = next_error(c);
    ASSERT_FALSE(error.is_null()) << "no error event before the close";
    const auto [code, message] = error_of(error);
    EXPECT_EQ(code, "idle_timeout") << error.dump();
    EXPECT_THAT(message, HasSubstr("--idle-timeout")) << error.dump();
    EXPECT_THAT(message, HasSubstr("slot")) << error.dump();
    beast::flat_buffer buffer;
    EXPECT_EQ(c.read_into(buffer), websocket::error::closed);
    EXPECT_EQ(c.ws().reason().code, websocket::close_code::policy_error);
    EXPECT_TRUE(s.idle());  // the slot is free for the next client
  }
  // The next session is served.
  WsClient next(s.port(), kDoors[0].target);
  set_up(next, kDoors[0]);
  next.append(pcm16("lights"));
  next.commit(true);
  EXPECT_EQ(next.collect().second["text"], sample_text("lights"));
}

TEST(RealtimeIdle, ASessionThatKeepsAppendingIsNotCut) {
  ServerOptions options;
  options.idle_timeout_seconds = 1;
  RunningServer s(options);
  for (const Door& door : kDoors) {
    SCOPED_TRACE(door.target);
    WsClient c(s.port(), door.target);
    set_up(c, door);
    // 2.7 s of speech in appends of 200 ms every 400 ms: over five idle timeouts in all,
    // never one without a message.
    const std::string lights = pcm16("lights");
    for (std::size_t at = 0; at < lights.size(); at += 6400) {
      c.append(lights.substr(at, 6400));
      std::this_thread::sleep_for(std::chrono::milliseconds(400));
    }
    std::string text;
    if (door.openai) {
      c.send({{"type", "input_audio_buffer.commit"}});
      for (;;) {
        const auto event = c.read();
        ASSERT_NE(event["type"], "error") << event.dump();
        if (event["type"] == "conversation.item.input_audio_transcription.completed") {
          text = event["transcript"];
          break;
        }
      }
    } else {
      c.commit(true);
      const auto [deltas, done] = c.collect();
      text = done.value("text", "");
    }
    EXPECT_EQ(text, sample_text("lights"));
  }
}

TEST(RealtimeFrames, BinaryFramesAreRefusedAsBinary) {
  RunningServer s(ServerOptions{});
  for (const Door& door : kDoors) {
    SCOPED_TRACE(door.target);
    WsClient c(s.port(), door.target);
    c.read();
    c.send_binary(R"({"type":"input_audio_buffer.commit"})");  // valid JSON, in the wrong kind of frame
    const auto event = c.read();
    ASSERT_EQ(event["type"], "error") << event.dump();
    const auto [code, message] = error_of(event);
    EXPECT_EQ(code, "invalid_event") << event.dump();
    EXPECT_THAT(message, HasSubstr("binary frames are not accepted")) << event.dump();
    EXPECT_THAT(message, HasSubstr("text frame")) << event.dump();
    // The session goes on.
    c.send({{"type", "no.such.event"}});
    EXPECT_EQ(error_of(c.read()).first, "unknown_event");
  }
}

}  // namespace
}  // namespace voxtral
