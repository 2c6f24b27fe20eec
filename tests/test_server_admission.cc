// Admission and endings: what a client is told when the server has no room for its work,
// how a refused or failed realtime session ends, and what /metrics counts for each; over
// loopback with the demo model. Expected words come from the samples' scripts.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "server_test_client.h"
#include "wide_window_model.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ServerMetrics, CompletedUploadsAreNotCountedAsDisconnects) {
  RunningServer s(ServerOptions{});
  // Each client reads its whole answer, then closes at once (as curl and most HTTP clients
  // do): the close may reach the server before it has noted the answer as written.
  for (int i = 0; i < 20; ++i) {
    const auto reply = upload(s.port(), "lights");
    ASSERT_EQ(reply.status, 200) << reply.body;
  }
  const auto metrics = request(s.port(), http::verb::get, "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("voxtral_requests_total{endpoint=\"/v1/audio/transcriptions\",status=\"200\"} 20\n"));
  EXPECT_THAT(metrics, Not(HasSubstr("client_disconnected"))) << metrics;
}

// The audio seconds /metrics reports taken in.
double audio_seconds_taken(unsigned short port) {
  const auto metrics = request(port, http::verb::get, "/metrics").body;
  const std::string key = "\nvoxtral_audio_seconds_total ";
  const auto at = metrics.find(key);
  return at == std::string::npos ? -1 : std::stod(metrics.substr(at + key.size()));
}

Reply upload_file(unsigned short port, const std::filesystem::path& wav) {
  const std::string boundary = "voxtral-admission-41c2";
  const std::string body = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.wav\"\r\n"
                           "Content-Type: audio/wav\r\n\r\n" + slurp(wav) + "\r\n--" + boundary + "--\r\n";
  return request(port, http::verb::post, "/v1/audio/transcriptions", body, "multipart/form-data; boundary=" + boundary);
}

TEST(Admission, AnUploadTheCacheHasNoRoomForIsRefusedBeforeAnyWork) {
  voxtral::testing::WideWindowDemo wide;
  auto model = Model::load(wide.model(), wide.options());
  // The rule needs a cache that holds one long file's pages but not two.
  ASSERT_LT(model->decoder().total_pages(), 2 * 14) << "(65 s: about 870 positions, 14 pages of 64)";
  LoopbackServer loopback(*model, RunningServer::named(ServerOptions{}));
  Scheduler& engine = loopback.engine;
  Server& server = loopback.server;
  Reply first;
  std::thread t([&] { first = upload_file(server.port(), wide.long_wav()); });
  // Once the first upload runs (it takes its pages at its start), a second one of its length
  // finds no room: 503 server_busy at once, with none of its audio taken.
  for (int i = 0; i < 500 && engine.counters().kv_pages_in_use < 14; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const Reply second = upload_file(server.port(), wide.long_wav());
  t.join();
  EXPECT_EQ(first.status, 200) << first.body;
  ASSERT_EQ(second.status, 503) << second.body;
  const auto error = json::parse(second.body)["error"];
  EXPECT_EQ(error["code"], "server_busy");
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("no room for this audio"));
  EXPECT_NEAR(audio_seconds_taken(server.port()), wide.long_seconds(), 0.01);
  // The pages came back: the same upload is served now.
  EXPECT_EQ(upload_file(server.port(), wide.long_wav()).status, 200);
  server.stop();
}

// The error event, then the close with `code`; every error event carries `param`.
void expect_error_then_close(WsClient& c, const std::string& error_code, websocket::close_code code) {
  const auto e = c.read_skipping_deltas();
  EXPECT_EQ(e["type"], "error") << e.dump();
  EXPECT_EQ(e["code"], error_code) << e.dump();
  EXPECT_TRUE(e.contains("param") && e["param"].is_null()) << e.dump();
  beast::flat_buffer buffer;
  const auto ec = c.read_into(buffer);
  EXPECT_EQ(ec, websocket::error::closed) << ec.message() << ": " << beast::buffers_to_string(buffer.data());
  EXPECT_EQ(c.ws().reason().code, code);
}

TEST(RealtimeEnd, ASessionRefusedAsBusyIsClosedNotResumedLater) {
  SchedulerOptions engine;
  engine.max_jobs = 1;
  RunningServer s(ServerOptions{}, engine);
  WsClient first(s.port());
  first.read();
  first.append(pcm16("lights"));
  ASSERT_TRUE(s.jobs(1));
  WsClient second(s.port());
  second.read();
  second.validate();
  second.append(pcm16("timer"));
  // The refusal comes before the slot frees: the server reads an append in pieces, so without
  // this wait the first session's close could overtake it and the append would be served.
  const auto refused = second.read_skipping_deltas();
  EXPECT_EQ(refused["type"], "error") << refused.dump();
  EXPECT_EQ(refused["code"], "server_busy") << refused.dump();
  // The slot frees before the refused session's next append: that append must not start a
  // transcription of the rest of its audio (its start is lost).
  first.ws().close(websocket::close_code::normal);
  ASSERT_TRUE(s.jobs(0));
  try {
    second.append(pcm16("numbers"));
    second.commit(true);
  } catch (const beast::system_error&) {
    // The server may have closed already.
  }
  beast::flat_buffer buffer;
  const auto ec = second.read_into(buffer);
  EXPECT_EQ(ec, websocket::error::closed) << ec.message() << ": " << beast::buffers_to_string(buffer.data());
  EXPECT_EQ(second.ws().reason().code, websocket::close_code::try_again_later);
  EXPECT_EQ(s.engine.counters().active_jobs, 0);
  // A new session is served.
  WsClient third(s.port());
  third.read();
  third.validate();
  third.append(pcm16("lights"));
  third.commit(true);
  EXPECT_EQ(third.collect().second["text"], sample_text("lights"));
}

TEST(RealtimeEnd, AFailedTranscriptionEndsTheSessionWithAnErrorThenTheClose) {
  ServerOptions options;
  options.delay_ms = 100;  // not a multiple of 80: the engine cannot start the stream (main() refuses it)
  RunningServer s(options);
  WsClient c(s.port());
  c.read();
  c.validate();
  c.append(pcm16("lights"));
  expect_error_then_close(c, "processing_error", websocket::close_code::internal_error);
  EXPECT_TRUE(s.jobs(0));
}

}  // namespace
}  // namespace voxtral
