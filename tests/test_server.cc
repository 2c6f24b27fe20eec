// voxtral-server over real sockets on loopback, with the demo model: every response format,
// server-sent events, the realtime WebSocket protocol, limits and errors, disconnects and
// slow clients. Expected words come from the samples' scripts (samples/*.json).
#include <bit>
#include <cstdint>
#include <fstream>
#include <utility>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/audio.h"
#include "runtime/transcriber.h"
#include "server/base64.h"
#include "server/multipart.h"
#include "server/server.h"
#include "server_test_client.h"
#include "transcript/segments.h"
#include "test_util.h"
#include "wav_builder.h"
#include "word_time_checks.h"

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;
using voxtral::testing::fixture;
using voxtral::testing::source_path;

std::string float_wav(const std::vector<float>& samples) {
  return testing::simple_wav(testing::fmt_body(testing::kFloat, 1, 16000, 32), testing::f32_bytes(samples));
}

#if VOXTRAL_HAVE_LIBAV
// Sun audio (.au: a 24-byte big-endian header, encoding 6 = 32-bit IEEE float), which libav reads.
std::string float_au(const std::vector<float>& samples) {
  std::string out = ".snd";
  auto u32 = [&](std::uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
  };
  u32(24);
  u32(static_cast<std::uint32_t>(4 * samples.size()));
  u32(6);
  u32(16000);
  u32(1);
  for (const float v : samples) u32(std::bit_cast<std::uint32_t>(v));
  return out;
}
#endif

const std::string kBoundary = "voxtral-test-boundary-7f3a";

Reply transcribe(unsigned short port, const std::vector<ClientPart>& parts, const std::string& authorization = "") {
  return request(port, http::verb::post, "/v1/audio/transcriptions", multipart_form(parts, kBoundary),
                 "multipart/form-data; boundary=" + kBoundary, authorization);
}

std::string trimmed(std::string s) {
  s.erase(0, std::min(s.find_first_not_of(' '), s.size()));
  return s;
}

ServerOptions test_options() {
  ServerOptions o;
  o.max_upload_bytes = 2u << 20;
  o.max_message_bytes = 256u << 10;
  o.max_audio_seconds = 40;
  o.idle_timeout_seconds = 2;
  return o;
}

TEST(Multipart, ParsesFieldsAndFilesAndRejectsBrokenBodies) {
  const auto body = multipart_form({{"model", "", "demo"}, {"file", "a b.wav", std::string("RI\0FF\r\n--x", 10)}}, "xyz");
  const auto parts = parse_multipart(body, multipart_boundary("multipart/form-data; boundary=\"xyz\""));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].name, "model");
  EXPECT_EQ(parts[0].data, "demo");
  EXPECT_EQ(parts[1].filename, "a b.wav");
  EXPECT_EQ(parts[1].data, std::string_view("RI\0FF\r\n--x", 10));
  EXPECT_THAT(testing::error_message([] { multipart_boundary("application/json"); }),
              HasSubstr("must be multipart/form-data"));
  EXPECT_THAT(testing::error_message([&] { parse_multipart(body.substr(0, body.size() - 13), "xyz"); }),
              HasSubstr("cut off"));
}

TEST(Base64, RoundTripsAndRejectsInvalidText) {
  for (const std::string& s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                              std::string("abcd"), std::string("\0\xff\x10", 3)}) {
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  }
  EXPECT_EQ(base64_encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(base64_decode("aGVsbG8"));    // length
  EXPECT_FALSE(base64_decode("aGV*bG8="));   // character
  EXPECT_FALSE(base64_decode("aG=sbG8="));   // padding inside
}

TEST(Server, HealthModelsMetricsAndUnknownPaths) {
  RunningServer s(test_options());
  auto health = request(s.port(), http::verb::get, "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(json::parse(health.body)["status"], "ok");
  auto models = json::parse(request(s.port(), http::verb::get, "/v1/models").body);
  EXPECT_EQ(models["data"][0]["id"], "demo");
  auto page = request(s.port(), http::verb::get, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, HasSubstr("text/html"));
  EXPECT_THAT(page.body, HasSubstr("Start microphone"));
  EXPECT_EQ(request(s.port(), http::verb::get, "/app.js").status, 200);
  EXPECT_EQ(request(s.port(), http::verb::get, "/audio-worklet.js").status, 200);
  EXPECT_EQ(request(s.port(), http::verb::get, "/nothing-here").status, 404);
  EXPECT_EQ(request(s.port(), http::verb::get, "/v1/audio/transcriptions").status, 405);
  EXPECT_EQ(request(s.port(), http::verb::get, "/v1/realtime").status, 426);
  const auto metrics = request(s.port(), http::verb::get, "/metrics");
  EXPECT_THAT(metrics.body, HasSubstr("voxtral_requests_total{endpoint=\"/health\",status=\"200\"} 1"));
  EXPECT_THAT(metrics.body, HasSubstr("voxtral_active_streams 0"));
}

TEST(Server, MetricsShowTheSchedulersStepsQueueAndCache) {
  RunningServer s(test_options());
  ASSERT_EQ(transcribe(s.port(), {sample_part("timer"), {"model", "", "demo"}}).status, 200);
  const auto body = request(s.port(), http::verb::get, "/metrics").body;
  auto value = [&](const std::string& series) {
    const auto at = body.find("\n" + series + " ");
    EXPECT_NE(at, std::string::npos) << series;
    return at == std::string::npos ? -1.0 : std::stod(body.substr(at + series.size() + 2));
  };
  const double steps = value("voxtral_decode_step_milliseconds_count");
  EXPECT_GT(steps, 10);  // timer.wav: a few seconds at one step per 80 ms
  // timer.wav's 68 positions after the prompt (106 in all), fewer steps with speculative
  // rows, and the rows those steps computed (a rejected guess costs a row).
  EXPECT_EQ(value("voxtral_decoded_positions_total"), 68);
  EXPECT_LT(steps, 68);
  EXPECT_GE(value("voxtral_decoder_step_rows_total"), 68);
  EXPECT_EQ(value("voxtral_batch_rows"), 1);  // one upload alone
  EXPECT_GT(value("voxtral_tick_milliseconds_count"), 0);
  EXPECT_EQ(value("voxtral_queue_delay_milliseconds_count"), steps);  // one stream a step
  EXPECT_GE(value("voxtral_queue_delay_max_milliseconds"), 0);
  EXPECT_EQ(value("voxtral_max_streams"), 8);  // the CPU backend's default streams
  EXPECT_EQ(value("voxtral_kv_cache_pages{state=\"used\"}"), 0);  // given back when the upload ended
  EXPECT_GT(value("voxtral_kv_cache_pages{state=\"total\"}"), 0);
}

TEST(Server, TranscribesInEveryResponseFormat) {
  RunningServer s(test_options());
  const auto json_reply = transcribe(s.port(), {sample_part("timer"), {"model", "", "demo"}});
  ASSERT_EQ(json_reply.status, 200) << json_reply.body;
  EXPECT_EQ(json::parse(json_reply.body)["text"], sample_text("timer"));

  const auto text = transcribe(s.port(), {sample_part("lights"), {"response_format", "", "text"}});
  EXPECT_EQ(text.body, sample_text("lights") + "\n");

  const auto srt = transcribe(s.port(), {sample_part("lights"), {"response_format", "", "srt"}});
  EXPECT_TRUE(srt.body.starts_with("1\n00:00:00,")) << srt.body;
  EXPECT_THAT(srt.body, HasSubstr(" --> 00:00:0"));
  EXPECT_THAT(srt.body, HasSubstr("\n" + sample_text("lights") + "\n"));

  const auto vtt = transcribe(s.port(), {sample_part("lights"), {"response_format", "", "vtt"}});
  EXPECT_TRUE(vtt.body.starts_with("WEBVTT\n\n00:00:00.")) << vtt.body;
  EXPECT_THAT(vtt.body, HasSubstr(sample_text("lights")));

  const auto verbose = transcribe(s.port(), {sample_part("commands"), {"response_format", "", "verbose_json"},
                                             {"timestamp_granularities[]", "", "word"},
                                             {"timestamp_granularities[]", "", "segment"}});
  const auto doc = json::parse(verbose.body);
  EXPECT_EQ(doc["text"], sample_text("commands"));
  EXPECT_NEAR(doc["duration"].get<double>(), 16.3, 0.1);
  EXPECT_EQ(doc["words"].size(), 24u);
  EXPECT_EQ(doc["words"][1]["word"], "the");
  EXPECT_FALSE(doc["segments"].empty());
  const auto segments_only = json::parse(
      transcribe(s.port(), {sample_part("numbers"), {"response_format", "", "verbose_json"}}).body);
  EXPECT_FALSE(segments_only.contains("words"));
  EXPECT_EQ(segments_only["segments"][0]["text"], "four one five two");
}

// verbose_json words and segments, SRT and WebVTT cues: times that match the speech (the
// samples' true word times), the same as the engine gives the CLI and the C API.
TEST(Server, WordAndSegmentTimesMatchTheSpeech) {
  RunningServer s(test_options());
  const auto reply = transcribe(s.port(), {sample_part("commands"), {"response_format", "", "verbose_json"},
                                           {"timestamp_granularities[]", "", "word"},
                                           {"timestamp_granularities[]", "", "segment"}});
  ASSERT_EQ(reply.status, 200) << reply.body;
  const auto doc = json::parse(reply.body);
  std::ifstream in(source_path("samples/commands.json"));
  const auto truth = testing::true_words(json::parse(in));
  const auto words = testing::json_words(doc["words"]);
  testing::expect_on_target(testing::time_errors(truth, words), "server verbose_json, samples/commands.wav");

  // The engine's own times for the same audio, rounded as JSON rounds them.
  const auto samples = load_audio_file(source_path("samples/commands.wav"), 16000);
  Segmenter segmenter;
  for (const auto& piece : voxtral::transcribe(demo_model(), samples).pieces) segmenter.add(piece);
  segmenter.finish();
  ASSERT_EQ(words.size(), segmenter.all_words().size());
  for (std::size_t i = 0; i < words.size(); ++i) {
    EXPECT_NEAR(words[i].start, segmenter.all_words()[i].start, 0.0005) << i;
    EXPECT_NEAR(words[i].end, segmenter.all_words()[i].end, 0.0005) << i;
  }

  std::vector<testing::Cue> segments;
  for (const auto& seg : doc["segments"]) {
    segments.push_back({seg["start"].get<double>(), seg["end"].get<double>(), seg["text"].get<std::string>()});
  }
  const double duration = doc["duration"].get<double>();
  testing::expect_cues_span_sentences(segments, testing::commands_sentences(), truth, duration, "verbose_json");
  for (const std::string format : {"srt", "vtt"}) {
    const auto cues = testing::parse_cues(
        transcribe(s.port(), {sample_part("commands"), {"response_format", "", format}}).body);
    testing::expect_cues_span_sentences(cues, testing::commands_sentences(), truth, duration, format);
    ASSERT_EQ(cues.size(), segments.size());
    for (std::size_t i = 0; i < cues.size(); ++i) {
      EXPECT_NEAR(cues[i].start, segments[i].start, 0.0011) << format;
      EXPECT_NEAR(cues[i].end, segments[i].end, 0.0011) << format;
    }
  }
}

TEST(Server, DecodesCompressedUploads) {
  RunningServer s(test_options());
  for (const std::string ext : {"flac", "ogg", "mp3", "m4a", "webm"}) {
    const auto reply = transcribe(s.port(), {{"file", "lights." + ext, slurp(fixture("server/lights." + ext))}});
#if VOXTRAL_HAVE_LIBAV
    EXPECT_EQ(reply.status, 200) << ext << ": " << reply.body;
    EXPECT_EQ(json::parse(reply.body)["text"], sample_text("lights")) << ext;
#else  // a build without libav says so
    EXPECT_EQ(reply.status, 400) << ext;
    EXPECT_THAT(reply.body, HasSubstr("built without libav")) << ext;
#endif
  }
}

TEST(Server, StreamsServerSentEvents) {
  RunningServer s(test_options());
  const auto reply = transcribe(s.port(), {sample_part("commands"), {"stream", "", "true"}});
  EXPECT_EQ(reply.status, 200);
  EXPECT_EQ(reply.content_type, "text/event-stream");
  std::string deltas;
  json done;
  int n_deltas = 0;
  std::istringstream lines(reply.body);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("data: ")) continue;
    const auto event = json::parse(line.substr(6));
    if (event["type"] == "transcript.text.delta") {
      deltas += event["delta"].get<std::string>();
      ++n_deltas;
    } else {
      done = event;
    }
  }
  EXPECT_GT(n_deltas, 2);
  EXPECT_EQ(deltas, sample_text("commands"));
  EXPECT_EQ(done["type"], "transcript.text.done");
  EXPECT_EQ(done["text"], sample_text("commands"));
}

TEST(Server, RejectsBadRequestsWithClearErrors) {
  auto options = test_options();
  options.strict_model_name = true;  // whisper-9 is refused (by default any name is accepted)
  RunningServer s(options);
  auto check = [&](const Reply& r, int status, const std::string& message, const std::string& param) {
    EXPECT_EQ(r.status, status) << r.body;
    const auto doc = json::parse(r.body);
    EXPECT_THAT(doc["error"]["message"].get<std::string>(), HasSubstr(message));
    if (!param.empty()) {
      EXPECT_EQ(doc["error"]["param"], param);
    }
  };
  check(transcribe(s.port(), {{"model", "", "demo"}}), 400, "no `file` part", "file");
  check(transcribe(s.port(), {sample_part("timer"), {"response_format", "", "xml"}}), 400, "response_format must be",
        "response_format");
  check(transcribe(s.port(), {sample_part("timer"), {"timestamp_granularities[]", "", "char"}}), 400,
        "timestamp_granularities[] must be", "timestamp_granularities");
  check(transcribe(s.port(), {sample_part("timer"), {"model", "", "whisper-9"}}), 404, "`whisper-9` does not exist",
        "model");
#if VOXTRAL_HAVE_LIBAV
  check(transcribe(s.port(), {{"file", "notes.txt", "these are not audio samples, just text"}}), 400,
        "notes.txt: not a readable audio file", "file");
#else
  check(transcribe(s.port(), {{"file", "notes.txt", "these are not audio samples, just text"}}), 400,
        "notes.txt: not a WAV file", "file");
#endif
  check(transcribe(s.port(), {{"file", "empty.wav", ""}}), 400, "empty.wav: the file is empty", "file");
  // int16 values stored as floats: refused as the other front ends refuse them (core/float_peak.h).
  check(transcribe(s.port(),
                   {{"file", "as-float.wav", float_wav({0.0f, 32767.0f, -5.0f})}}),
        400,
        "as-float.wav: 32-bit float WAV data: samples must be in [-1, 1] (float full scale), got a peak of 32767 at "
        "frame 1; if they are 16-bit PCM values, divide them by 32768",
        "file");
#if VOXTRAL_HAVE_LIBAV
  std::vector<float> au(1600, 0.0f);
  au[100] = -32767.0f;
  check(transcribe(s.port(), {{"file", "as-float.au", float_au(au)}}), 400,
        "as-float.au: pcm_f32be audio: samples must be in [-1, 1] (float full scale), got a peak of 32767 at frame 100",
        "file");
#endif
  check(request(s.port(), http::verb::post, "/v1/audio/transcriptions", "{}", "application/json"), 400,
        "must be multipart/form-data", "");
  check(transcribe(s.port(), {{"file", "big.wav", std::string(3u << 20, 'x')}}), 413, "larger than this server's limit",
        "file");
  const auto long_pcm = pcm16("commands") + pcm16("commands") + pcm16("commands") + pcm16("commands");
  auto header = [](std::uint32_t bytes) {
    std::string h = "RIFF";
    auto u32 = [&](std::uint32_t v) { for (int i = 0; i < 4; ++i) h.push_back(static_cast<char>((v >> (8 * i)) & 0xFF)); };
    auto u16 = [&](std::uint16_t v) { for (int i = 0; i < 2; ++i) h.push_back(static_cast<char>((v >> (8 * i)) & 0xFF)); };
    u32(36 + bytes);
    h += "WAVEfmt ";
    u32(16); u16(1); u16(1); u32(8000); u32(16000); u16(2); u16(16);
    h += "data";
    u32(bytes);
    return h;
  };
  // At 8 kHz the same bytes hold 130 s of audio: over the 40 s limit, under the upload limit.
  const std::string half = long_pcm.substr(0, 1u << 20);
  check(transcribe(s.port(), {{"file", "long.wav", header(static_cast<std::uint32_t>(half.size())) + half}}), 400,
        "longer than this server's limit of 40", "file");
  const auto metrics = request(s.port(), http::verb::get, "/metrics").body;
  EXPECT_THAT(metrics, HasSubstr("voxtral_errors_total{kind=\"bad_request\"} 5"));
  EXPECT_THAT(metrics, HasSubstr("voxtral_errors_total{kind=\"upload_too_large\"} 1"));
}

TEST(Server, AnswersExpectContinue) {
  RunningServer s(test_options());
  auto head = [](std::size_t length) {
    return "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: "
           "multipart/form-data; boundary=" + kBoundary + "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  };
  net::io_context io;
  // The go-ahead comes before the body, then the answer.
  const std::string body = multipart_form({sample_part("lights")}, kBoundary);
  tcp::socket socket(io);
  socket.connect({net::ip::make_address("127.0.0.1"), s.port()});
  net::write(socket, net::buffer(head(body.size())));
  beast::flat_buffer buffer;
  http::response<http::empty_body> go_ahead;
  http::read(socket, buffer, go_ahead);
  EXPECT_EQ(go_ahead.result_int(), 100u);
  net::write(socket, net::buffer(body));
  http::response<http::string_body> res;
  http::read(socket, buffer, res);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(json::parse(res.body())["text"], sample_text("lights"));
  // Too large: refused at once, without waiting for a body the client has not sent.
  tcp::socket big(io);
  big.connect({net::ip::make_address("127.0.0.1"), s.port()});
  net::write(big, net::buffer(head(3u << 20)));
  beast::flat_buffer big_buffer;
  http::response<http::string_body> refused;
  http::read(big, big_buffer, refused);
  EXPECT_EQ(refused.result_int(), 413u);
}

TEST(Server, ApiKeyGuardsTheApi) {
  auto options = test_options();
  options.api_key = "sesame";
  RunningServer s(options);
  EXPECT_EQ(transcribe(s.port(), {sample_part("timer")}).status, 401);
  EXPECT_EQ(transcribe(s.port(), {sample_part("timer")}, "Bearer wrong").status, 401);
  EXPECT_EQ(transcribe(s.port(), {sample_part("timer")}, "Bearer sesame").status, 200);
  EXPECT_EQ(request(s.port(), http::verb::get, "/v1/models").status, 401);
  EXPECT_EQ(request(s.port(), http::verb::get, "/health").status, 200);  // monitoring needs no key
  EXPECT_THROW(WsClient(s.port(), "/v1/realtime"), boost::system::system_error);
  WsClient ok(s.port(), "/v1/realtime?api_key=sesame");
  EXPECT_EQ(ok.read()["type"], "session.created");
}

TEST(Realtime, SpeaksVllmsProtocol) {
  RunningServer s(test_options());
  WsClient c(s.port());
  const auto created = c.read();
  EXPECT_EQ(created["type"], "session.created");
  EXPECT_TRUE(created["id"].get<std::string>().starts_with("sess-"));
  c.send({{"type", "session.update"}, {"model", "demo"}});
  c.send({{"type", "input_audio_buffer.commit"}});
  c.append_in_pieces(pcm16("commands"));
  c.send({{"type", "input_audio_buffer.commit"}, {"final", true}});
  auto [deltas, done] = c.collect();
  EXPECT_EQ(trimmed(deltas), sample_text("commands"));
  EXPECT_EQ(trimmed(done["text"]), sample_text("commands"));
  EXPECT_EQ(done["usage"]["prompt_tokens"], 39);
  EXPECT_GT(done["usage"]["completion_tokens"].get<int>(), 150);
  // A second utterance on the same connection, with audio sent before the commit.
  c.append_in_pieces(pcm16("timer"));
  c.send({{"type", "input_audio_buffer.commit"}});
  c.send({{"type", "input_audio_buffer.commit"}, {"final", true}});
  auto second = c.collect();
  EXPECT_EQ(trimmed(second.second["text"]), sample_text("timer"));
  c.ws().close(websocket::close_code::normal);
  EXPECT_TRUE(s.idle());
}

TEST(Realtime, ProtocolErrorsAreEventsAndTheSessionGoesOn) {
  auto options = test_options();
  options.strict_model_name = true;  // "other" is refused (by default any name is accepted)
  RunningServer s(options);
  WsClient c(s.port());
  c.read();
  auto expect_error = [&](const std::string& code) {
    const auto e = c.read();
    EXPECT_EQ(e["type"], "error");
    EXPECT_EQ(e["code"], code) << e.dump();
    EXPECT_FALSE(e["error"].get<std::string>().empty());
  };
  c.send({{"type", "input_audio_buffer.commit"}});
  expect_error("model_not_validated");
  c.send_text("{not json");
  expect_error("invalid_json");
  c.send({{"type", "session.update"}, {"model", 7}});
  expect_error("invalid_type");
  c.send({{"type", "session.update"}, {"model", "demo"}});
  c.send({{"type", "input_audio_buffer.append"}, {"audio", "!!!not base64!!!"}});
  expect_error("invalid_audio");
  c.send({{"type", "input_audio_buffer.append"}, {"audio", base64_encode("abc")}});  // odd byte count
  expect_error("invalid_audio");
  c.send({{"type", "input_audio_buffer.append"}});
  expect_error("missing_field");
  c.send({{"type", "response.create"}});
  expect_error("unknown_event");
  c.send(json::array({1, 2}));
  expect_error("invalid_event");
  // Still usable.
  c.send({{"type", "input_audio_buffer.commit"}});
  c.append_in_pieces(pcm16("lights"));
  c.send({{"type", "input_audio_buffer.commit"}, {"final", true}});
  EXPECT_EQ(trimmed(c.collect().second["text"]), sample_text("lights"));
}

TEST(Realtime, OversizedMessagesCloseTheConnection) {
  RunningServer s(test_options());
  WsClient c(s.port());
  c.read();
  try {
    c.send({{"type", "input_audio_buffer.append"}, {"audio", base64_encode(std::string(300u << 10, 'a'))}});
  } catch (const beast::system_error&) {
    // The server may close before the whole message is written.
  }
  EXPECT_EQ(c.read()["code"], "message_too_big");  // an error event, then the close
  beast::flat_buffer buffer;
  EXPECT_TRUE(c.read_into(buffer)) << "the connection stayed open";
  std::string metrics;
  for (int i = 0; i < 100; ++i) {  // the server counts it as it closes; the client may see the close first
    metrics = request(s.port(), http::verb::get, "/metrics").body;
    if (metrics.find("message_too_big") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_THAT(metrics, HasSubstr("voxtral_errors_total{kind=\"message_too_big\"} 1"));
}

TEST(Realtime, AudioLengthLimit) {
  RunningServer s(test_options());  // 40 s
  WsClient c(s.port());
  c.read();
  c.send({{"type", "session.update"}, {"model", "demo"}});
  const auto pcm = pcm16("commands");  // 16.3 s
  c.append_in_pieces(pcm);
  c.append_in_pieces(pcm);
  c.append_in_pieces(pcm.substr(0, 320000));  // 10 s more: past 40 s
  json e;
  do {
    e = c.read();
  } while (e["type"] != "error");
  EXPECT_EQ(e["code"], "audio_too_long");
}

TEST(Realtime, SessionLimitAnswersBusy) {
  SchedulerOptions engine;
  engine.max_jobs = 2;
  RunningServer s(test_options(), engine);
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<WsClient>(s.port()));
    clients.back()->read();
    clients.back()->send({{"type", "session.update"}, {"model", "demo"}});
    clients.back()->send({{"type", "input_audio_buffer.commit"}});
    // Connections are served concurrently: let each commit land before the next.
    for (int j = 0; j < 200 && i < 2 && s.engine.counters().active_jobs <= i; ++j) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  const auto e = clients[2]->read();
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["code"], "server_busy");
  // An upload is refused the same way while both run.
  EXPECT_EQ(transcribe(s.port(), {sample_part("timer")}).status, 503);
  clients[0]->ws().close(websocket::close_code::normal);
  clients.erase(clients.begin());
  for (int i = 0; i < 100 && s.engine.counters().active_jobs > 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(transcribe(s.port(), {sample_part("timer")}).status, 200);
}

TEST(Server, AbruptDisconnectsFreeTheirSessions) {
  RunningServer s(test_options());
  {
    WsClient c(s.port());
    c.read();
    c.send({{"type", "session.update"}, {"model", "demo"}});
    c.send({{"type", "input_audio_buffer.commit"}});
    c.append_in_pieces(pcm16("commands"));
    beast::error_code ignored;
    c.ws().next_layer().close(ignored);  // no close frame: the client just vanishes
  }
  {
    // An upload whose client leaves before the answer.
    net::io_context io;
    tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), s.port()});
    http::request<http::string_body> req{http::verb::post, "/v1/audio/transcriptions", 11};
    req.set(http::field::host, "localhost");
    req.set(http::field::content_type, "multipart/form-data; boundary=" + kBoundary);
    req.body() = multipart_form({sample_part("commands")}, kBoundary);
    req.prepare_payload();
    http::write(socket, req);
    socket.close();
  }
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.server.metrics().realtime_sessions(), 0);
  EXPECT_EQ(transcribe(s.port(), {sample_part("lights")}).status, 200);  // and the server is fine
}

TEST(Server, SlowClientsAreServedAndStalledOnesDropped) {
  RunningServer s(test_options());  // 2 s idle timeout
  const std::string body = multipart_form({sample_part("lights")}, kBoundary);
  net::io_context io;
  // A slow sender: the request trickles in over ~1 s.
  tcp::socket slow(io);
  slow.connect({net::ip::make_address("127.0.0.1"), s.port()});
  set_timeouts(slow, 30);
  const std::string head = "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=" +
                           kBoundary + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  net::write(slow, net::buffer(head));
  for (std::size_t at = 0; at < body.size(); at += body.size() / 10 + 1) {
    net::write(slow, net::buffer(body.substr(at, body.size() / 10 + 1)));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(slow, buffer, res);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(json::parse(res.body())["text"], sample_text("lights"));
  // A stalled sender: half a request, then nothing; the server hangs up after its timeout
  // while serving others.
  tcp::socket stalled(io);
  stalled.connect({net::ip::make_address("127.0.0.1"), s.port()});
  set_timeouts(stalled, 30);
  net::write(stalled, net::buffer(head + body.substr(0, body.size() / 2)));
  EXPECT_EQ(transcribe(s.port(), {sample_part("timer")}).status, 200);
  const auto start = std::chrono::steady_clock::now();
  char byte;
  boost::system::error_code ec;
  stalled.read_some(net::buffer(&byte, 1), ec);
  EXPECT_TRUE(ec == net::error::eof || ec == net::error::connection_reset) << ec.message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(Scheduler, ALongUploadDoesNotHoldBackALiveStream) {
  // One engine thread: a 65 s batch job and a 4.5 s live job arrive together; the live job
  // must finish long before the batch job, whose turns are bounded slices.
  Scheduler engine(demo_model(), SchedulerOptions{});
  std::mutex m;
  std::vector<std::string> order;
  auto done = [&](const std::string& name) {
    JobCallbacks cb;
    cb.on_done = [&, name](const StreamStats&) {
      std::lock_guard lock(m);
      order.push_back(name);
    };
    return cb;
  };
  StreamOptions options;
  options.continuous = true;
  auto batch = engine.start(JobKind::Batch, options, done("batch"));
  auto live = engine.start(JobKind::Live, options, done("live"));
  const auto commands = load_audio_file(source_path("samples/commands.wav"), 16000);
  std::vector<float> long_audio;
  for (int i = 0; i < 4; ++i) long_audio.insert(long_audio.end(), commands.begin(), commands.end());
  batch->append(long_audio);
  batch->finish();
  live->append(load_audio_file(source_path("samples/timer.wav"), 16000));
  live->finish();
  for (int i = 0; i < 600; ++i) {
    {
      std::lock_guard lock(m);
      if (order.size() == 2) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], "live");
  // A job's on_done runs before the engine drops the job at the end of its turn.
  for (int i = 0; i < 100 && engine.counters().active_jobs != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(engine.counters().active_jobs, 0);
}

}  // namespace
}  // namespace voxtral
