// voxtral-server's HTTP surface over real sockets on loopback (issue 14, sections 4 and 5):
// HEAD, request framing (Transfer-Encoding smuggling, server-sent events to HTTP/1.0), the
// route table (404, 405 with Allow, /v1/models/{id}), the API key (scheme case, percent-
// encoded query, constant-time compare, --api-key-file), Host and Origin checks with CORS,
// /metrics labels, model names as OpenAI and vLLM clients send them, and verbose_json's
// segment fields. Expected values are stated here or come from the samples' scripts.
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <thread>
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/auth.h"
#include "server/metrics.h"
#include "server/server.h"
#include "transcript/formats.h"
#include "server_test_client.h"
#include "test_util.h"

extern char** environ;

namespace voxtral {
namespace {

using namespace voxtral::testing::loopback;
using ::testing::HasSubstr;
using ::testing::Not;
using voxtral::testing::source_path;

ServerOptions http_options() {
  ServerOptions o;
  o.port = 0;
  o.model_id = "demo";
  o.max_upload_bytes = 2u << 20;
  o.max_audio_seconds = 40;
  o.idle_timeout_seconds = 2;
  return o;
}

int count_of(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

const std::string kBoundary = "voxtral-http-test-boundary";

// A form of `fields` and samples/<sample>.wav as the file.
std::string form(const std::vector<std::pair<std::string, std::string>>& fields, const std::string& sample) {
  std::vector<ClientPart> parts;
  for (const auto& [name, value] : fields) parts.push_back({name, "", value});
  parts.push_back(sample_part(sample));
  return multipart_form(parts, kBoundary);
}

http::response<http::string_body> transcribe(unsigned short port, const std::vector<std::pair<std::string, std::string>>& fields,
                                             const std::string& sample = "numbers", Fields headers = {}) {
  headers.emplace_back(http::field::content_type, "multipart/form-data; boundary=" + kBoundary);
  return call(port, http::verb::post, "/v1/audio/transcriptions", headers, form(fields, sample));
}

json error_of(const http::response<http::string_body>& reply) { return json::parse(reply.body())["error"]; }

// A WebSocket handshake with the given Host and Origin; throws when the server refuses it.
void open_realtime(unsigned short port, const std::string& host, const std::string& origin,
                   const std::string& target = "/v1/realtime") {
  net::io_context io;
  websocket::stream<tcp::socket> ws(io);
  ws.next_layer().connect({net::ip::make_address("127.0.0.1"), port});
  set_timeouts(ws.next_layer(), 10);
  ws.set_option(websocket::stream_base::decorator([origin](websocket::request_type& req) {
    if (!origin.empty()) req.set(http::field::origin, origin);
  }));
  ws.handshake(host, target);
  beast::flat_buffer buffer;
  ws.read(buffer);
  EXPECT_EQ(json::parse(beast::buffers_to_string(buffer.data()))["type"], "session.created");
  ws.close(websocket::close_code::normal);
}

TEST(ServerHttp, HeadSendsHeadersOnly) {
  RunningServer s(http_options());
  // HEAD then GET on one keep-alive connection: the GET's response must follow the HEAD's
  // headers directly (a body after a HEAD response is read as the next response's start).
  const std::string reply = exchange(
      s.port(), "HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /health HTTP/1.1\r\nHost: localhost\r\n"
                "Connection: close\r\n\r\n");
  const std::size_t first_end = reply.find("\r\n\r\n");
  ASSERT_NE(first_end, std::string::npos) << reply;
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 200")) << reply;
  EXPECT_TRUE(reply.substr(first_end + 4).starts_with("HTTP/1.1 200")) << reply;
  EXPECT_EQ(count_of(reply, "\"status\":\"ok\""), 1) << reply;
  // The HEAD response announces the length GET's body has.
  const auto head = call(s.port(), http::verb::head, "/");
  EXPECT_EQ(head.result_int(), 200u);
  EXPECT_GT(std::stoul(std::string(head[http::field::content_length])), 100u);
  EXPECT_TRUE(head.body().empty());
  const auto missing = call(s.port(), http::verb::head, "/nothing-here");
  EXPECT_EQ(missing.result_int(), 404u);
}

TEST(ServerHttp, TransferEncodingNotEndingInChunkedIsRefusedAndCloses) {
  RunningServer s(http_options());
  for (const std::string te : {"gzip", "chunked, gzip", "identity"}) {
    // Today's failure: the "body" was parsed as a second request (request smuggling).
    const std::string reply = exchange(s.port(), "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: localhost\r\n"
                                                 "Transfer-Encoding: " + te + "\r\n\r\n"
                                                 "GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 400")) << te << ": " << reply;
    EXPECT_EQ(count_of(reply, "HTTP/1.1 "), 1) << te << ": " << reply;
    EXPECT_THAT(reply, HasSubstr("Transfer-Encoding")) << te;
    EXPECT_THAT(reply, Not(HasSubstr("\"object\":\"list\""))) << te;
  }
  // Both framings at once: refused, the connection closed (RFC 9112 section 6.3).
  const std::string both = exchange(s.port(), "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: localhost\r\n"
                                              "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                                              "GET /v1/models HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_TRUE(both.starts_with("HTTP/1.1 400")) << both;
  EXPECT_EQ(count_of(both, "HTTP/1.1 "), 1) << both;
  // Chunked (last) is fine.
  const std::string chunked = exchange(s.port(), "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                                                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  EXPECT_TRUE(chunked.starts_with("HTTP/1.1 200")) << chunked;
}

TEST(ServerHttp, EventsToAnHttp10ClientAreNotChunked) {
  RunningServer s(http_options());
  const std::string body = form({{"stream", "true"}}, "lights");
  const std::string reply = exchange(s.port(), "POST /v1/audio/transcriptions HTTP/1.0\r\nHost: localhost\r\n"
                                               "Content-Type: multipart/form-data; boundary=" + kBoundary +
                                                   "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  const std::size_t header_end = reply.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos) << reply;
  const std::string header = reply.substr(0, header_end);
  EXPECT_THAT(header, HasSubstr("text/event-stream"));
  EXPECT_THAT(header, Not(HasSubstr("chunked")));
  const std::string events = reply.substr(header_end + 4);
  EXPECT_TRUE(events.starts_with("data: {")) << events;
  EXPECT_THAT(events, HasSubstr("\"type\":\"transcript.text.done\""));
  EXPECT_THAT(events, HasSubstr(sample_text("lights")));
  EXPECT_THAT(events, Not(HasSubstr("\r\n0\r\n")));
}

TEST(ServerHttp, UnknownPathsAre404AndWrongMethods405WithAllow) {
  RunningServer s(http_options());
  for (const auto method : {http::verb::get, http::verb::post, http::verb::put, http::verb::delete_, http::verb::patch,
                            http::verb::options}) {
    const auto reply = call(s.port(), method, "/nothing-here");
    EXPECT_EQ(reply.result_int(), 404u) << http::to_string(method);
    EXPECT_EQ(error_of(reply)["type"], "invalid_request_error");
    EXPECT_EQ(call(s.port(), method, "/v1/nothing").result_int(), 404u) << http::to_string(method);
  }
  const auto get_upload = call(s.port(), http::verb::get, "/v1/audio/transcriptions");
  EXPECT_EQ(get_upload.result_int(), 405u);
  EXPECT_EQ(get_upload[http::field::allow], "POST, OPTIONS");
  const auto post_health = call(s.port(), http::verb::post, "/health");
  EXPECT_EQ(post_health.result_int(), 405u);
  EXPECT_EQ(post_health[http::field::allow], "GET, HEAD, OPTIONS");
  const auto delete_models = call(s.port(), http::verb::delete_, "/v1/models");
  EXPECT_EQ(delete_models.result_int(), 405u);
  EXPECT_THAT(std::string(delete_models[http::field::allow]), HasSubstr("GET"));
  const auto options = call(s.port(), http::verb::options, "/v1/audio/transcriptions");
  EXPECT_EQ(options.result_int(), 204u);
  EXPECT_EQ(options[http::field::allow], "POST, OPTIONS");
  EXPECT_EQ(options.count(http::field::content_length), 0u);  // a 204 has none
}

TEST(ServerHttp, ModelsAreListedAndRetrievedByName) {
  auto options = http_options();
  options.served_model_names = {"mistralai/Voxtral-Mini-4B-Realtime-2602", "whisper-1"};
  RunningServer s(options);
  const auto list = json::parse(call(s.port(), http::verb::get, "/v1/models").body());
  ASSERT_EQ(list["data"].size(), 3u);
  EXPECT_EQ(list["data"][0]["id"], "demo");
  EXPECT_EQ(list["data"][1]["id"], "mistralai/Voxtral-Mini-4B-Realtime-2602");
  EXPECT_EQ(list["data"][2]["object"], "model");
  for (const std::string target : {"/v1/models/demo", "/v1/models/whisper-1",
                                   "/v1/models/mistralai/Voxtral-Mini-4B-Realtime-2602",
                                   "/v1/models/mistralai%2FVoxtral-Mini-4B-Realtime-2602"}) {
    const auto reply = call(s.port(), http::verb::get, target);
    ASSERT_EQ(reply.result_int(), 200u) << target << ": " << reply.body();
    const auto model = json::parse(reply.body());
    EXPECT_EQ(model["object"], "model");
    EXPECT_TRUE(target.ends_with(model["id"].get<std::string>()) || model["id"] == "mistralai/Voxtral-Mini-4B-Realtime-2602");
  }
  const auto unknown = call(s.port(), http::verb::get, "/v1/models/gpt-4o-transcribe");
  EXPECT_EQ(unknown.result_int(), 404u);
  EXPECT_EQ(error_of(unknown)["type"], "invalid_request_error");
  EXPECT_EQ(error_of(unknown)["code"], "model_not_found");
  EXPECT_EQ(error_of(unknown)["param"], "model");
}

TEST(ServerHttp, AnyModelNameIsAcceptedByDefault) {
  RunningServer s(http_options());
  for (const std::string model : {"whisper-1", "gpt-4o-transcribe", "mistralai/Voxtral-Mini-4B-Realtime-2602", "demo"}) {
    const auto reply = transcribe(s.port(), {{"model", model}});
    ASSERT_EQ(reply.result_int(), 200u) << model << ": " << reply.body();
    EXPECT_EQ(json::parse(reply.body())["text"], sample_text("numbers")) << model;
  }
}

TEST(ServerHttp, StrictModelNamesAcceptOnlyTheServedOnes) {
  auto options = http_options();
  options.served_model_names = {"whisper-1"};
  options.strict_model_name = true;
  RunningServer s(options);
  EXPECT_EQ(transcribe(s.port(), {{"model", "whisper-1"}}).result_int(), 200u);
  EXPECT_EQ(transcribe(s.port(), {{"model", "demo"}}).result_int(), 200u);
  EXPECT_EQ(transcribe(s.port(), {}).result_int(), 200u);  // no model named: the server's
  const auto refused = transcribe(s.port(), {{"model", "gpt-4o-transcribe"}});
  EXPECT_EQ(refused.result_int(), 404u);
  EXPECT_EQ(error_of(refused)["type"], "invalid_request_error");
  EXPECT_EQ(error_of(refused)["code"], "model_not_found");
  EXPECT_EQ(error_of(refused)["param"], "model");
  EXPECT_THAT(error_of(refused)["message"].get<std::string>(), HasSubstr("gpt-4o-transcribe"));
}

TEST(ServerHttp, RealtimeAcceptsClientModelNames) {
  auto run_update = [](unsigned short port, const std::string& model) {
    net::io_context io;
    websocket::stream<tcp::socket> ws(io);
    ws.next_layer().connect({net::ip::make_address("127.0.0.1"), port});
    timeval tv{20, 0};
    ::setsockopt(ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ws.handshake("localhost", "/v1/realtime");
    beast::flat_buffer buffer;
    ws.read(buffer);  // session.created
    buffer.consume(buffer.size());
    ws.write(net::buffer(json{{"type", "session.update"}, {"model", model}}.dump()));
    // A commit with no audio: an error if the model was refused, else nothing until the
    // final commit ends the (empty) utterance.
    ws.write(net::buffer(json{{"type", "input_audio_buffer.commit"}}.dump()));
    ws.write(net::buffer(json{{"type", "input_audio_buffer.commit"}, {"final", true}}.dump()));
    ws.read(buffer);
    return json::parse(beast::buffers_to_string(buffer.data()));
  };
  RunningServer lenient(http_options());
  for (const std::string model : {"whisper-1", "gpt-4o-transcribe", "mistralai/Voxtral-Mini-4B-Realtime-2602"}) {
    const auto event = run_update(lenient.port(), model);
    EXPECT_NE(event["type"], "error") << model << ": " << event.dump();
  }
  auto options = http_options();
  options.strict_model_name = true;
  RunningServer strict(options);
  const auto event = run_update(strict.port(), "whisper-1");
  EXPECT_EQ(event["type"], "error");
  EXPECT_EQ(event["code"], "model_not_found");
}

TEST(Auth, ConstantTimeEqualIsExact) {
  EXPECT_TRUE(constant_time_equal("sesame", "sesame"));
  EXPECT_FALSE(constant_time_equal("sesame", "sesamE"));
  EXPECT_FALSE(constant_time_equal("sesame", "sesam"));
  EXPECT_FALSE(constant_time_equal("sesame", "sesame!"));
  EXPECT_FALSE(constant_time_equal("sesame", "sesamesesame"));  // the key cycled is not the key
  EXPECT_FALSE(constant_time_equal("sesame", ""));
  EXPECT_FALSE(constant_time_equal("", "x"));
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
}

TEST(Auth, ConstantTimeEqualDoesNotStopAtTheFirstDifference) {
  // A comparison that stops at the first differing byte answers a guess that is wrong in
  // its first byte thousands of times faster than one wrong in its last byte, for a 1 MiB
  // key; this one reads every byte either way. The fastest of many runs is compared.
  const std::string key(1u << 20, 'k');
  std::string early = key, late = key;
  early.front() = 'x';
  late.back() = 'x';
  auto fastest = [&](const std::string& guess) {
    double best = 1e9;
    for (int i = 0; i < 15; ++i) {
      const auto t = std::chrono::steady_clock::now();
      const bool same = constant_time_equal(key, guess);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
      EXPECT_FALSE(same);
    }
    return best;
  };
  const double wrong_first = fastest(early), wrong_last = fastest(late);
  EXPECT_GT(wrong_first, wrong_last / 10) << "first byte wrong: " << wrong_first << " s, last: " << wrong_last << " s";
}

TEST(Auth, PercentDecoding) {
  EXPECT_EQ(percent_decode("a%2Fb%2Bc%3Dd"), "a/b+c=d");
  EXPECT_EQ(percent_decode("a+b"), "a+b");  // '+' is a plus (encodeURIComponent writes %2B and %20)
  EXPECT_EQ(percent_decode("%e2%82%AC"), "\xe2\x82\xac");
  EXPECT_FALSE(percent_decode("abc%2"));
  EXPECT_FALSE(percent_decode("abc%zz"));
  EXPECT_FALSE(percent_decode("%"));
  EXPECT_EQ(query_parameter("/v1/realtime?x=1&api_key=k%2F1%3D&y=2", "api_key"), "k/1=");
  EXPECT_EQ(query_parameter("/v1/realtime?api_keys=1", "api_key"), "");
}

TEST(Auth, ApiKeyFileIsReadWithoutItsLineEnd) {
  testing::TempDir dir;
  EXPECT_EQ(read_api_key_file(dir.write("unix", "s3cr3t/+=\n").string()), "s3cr3t/+=");
  EXPECT_EQ(read_api_key_file(dir.write("dos", "s3cr3t\r\n").string()), "s3cr3t");
  EXPECT_EQ(read_api_key_file(dir.write("bare", "s3cr3t").string()), "s3cr3t");
  const std::string empty = dir.write("empty", "\n").string();
  EXPECT_THAT(testing::error_message([&] { read_api_key_file(empty); }), HasSubstr(empty + ": the API key file's first line is empty"));
  EXPECT_EQ(read_api_key_file(dir.write("two", "one\ntwo\n").string()), "one");  // the first line is the key
  const std::string missing = (dir.path() / "missing").string();
  EXPECT_THAT(testing::error_message([&] { read_api_key_file(missing); }), HasSubstr(missing + ": cannot read"));
  const std::string huge = dir.write("huge", std::string(100000, 'k')).string();
  EXPECT_THAT(testing::error_message([&] { read_api_key_file(huge); }), HasSubstr(huge + ": the API key file's first line is longer"));
}

// Runs voxtral-server with `args`; returns its pid (stderr to `log`).
pid_t spawn_server(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all{VOXTRAL_SERVER};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

unsigned short free_port() {
  net::io_context io;
  tcp::acceptor acceptor(io, {net::ip::make_address("127.0.0.1"), 0});
  return acceptor.local_endpoint().port();
}

TEST(ServerProcess, ApiKeyFileKeepsTheKeyOutOfTheCommandLine) {
  testing::TempDir dir;
  const std::string key = "k/ey+with=signs";
  const std::string key_file = dir.write("key", key + "\n").string();
  const std::string log = (dir.path() / "log").string();
  const unsigned short port = free_port();
  const pid_t pid = spawn_server({"-d", source_path("models/demo").string(), "--port", std::to_string(port),
                                  "--api-key-file", key_file, "-t", "1"},
                                 log);
  struct Stop {  // the server ends with the test, whichever way the test ends
    explicit Stop(pid_t p) : pid(p) {}
    Stop(const Stop&) = delete;
    Stop& operator=(const Stop&) = delete;
    ~Stop() {
      kill(pid, SIGTERM);
      int status = 0;
      waitpid(pid, &status, 0);
    }
    pid_t pid;
  };
  std::optional<Stop> stop;
  stop.emplace(pid);
  bool up = false;
  for (int i = 0; i < 300 && !up; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    try {
      up = call(port, http::verb::get, "/health").result_int() == 200;
    } catch (const std::exception&) {
    }
  }
  ASSERT_TRUE(up) << slurp(log);
  EXPECT_THAT(slurp("/proc/" + std::to_string(pid) + "/cmdline"), Not(HasSubstr(key)));
  EXPECT_EQ(call(port, http::verb::get, "/v1/models").result_int(), 401u);
  EXPECT_EQ(call(port, http::verb::get, "/v1/models", {{http::field::authorization, "Bearer " + key}}).result_int(), 200u);
  EXPECT_EQ(call(port, http::verb::get, "/v1/models?api_key=k%2Fey%2Bwith%3Dsigns").result_int(), 200u);
  stop.reset();

  // A file that cannot be read is named, before the model is loaded.
  const std::string missing = (dir.path() / "no-such-key").string();
  const pid_t failing = spawn_server({"-d", source_path("models/demo").string(), "--api-key-file", missing}, log);
  int status = 0;
  waitpid(failing, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status;
  EXPECT_THAT(slurp(log), HasSubstr(missing + ": cannot read the API key file"));
}

TEST(ServerHttp, ApiKeySchemeIsCaseInsensitiveAndErrorsAreOpenAIs) {
  auto options = http_options();
  options.api_key = "sesame";
  RunningServer s(options);
  for (const std::string header : {"Bearer sesame", "bearer sesame", "BEARER sesame", "Bearer   sesame", "bearer\tsesame"}) {
    EXPECT_EQ(call(s.port(), http::verb::get, "/v1/models", {{http::field::authorization, header}}).result_int(), 200u)
        << header;
  }
  const auto missing = call(s.port(), http::verb::get, "/v1/models");
  EXPECT_EQ(missing.result_int(), 401u);
  EXPECT_EQ(error_of(missing)["type"], "invalid_request_error");
  EXPECT_TRUE(error_of(missing)["code"].is_null());
  for (const std::string header : {"Bearer wrong", "Basic sesame", "Bearer sesame2", "sesame"}) {
    const auto wrong = call(s.port(), http::verb::get, "/v1/models", {{http::field::authorization, header}});
    EXPECT_EQ(wrong.result_int(), 401u) << header;
    EXPECT_EQ(error_of(wrong)["type"], "invalid_request_error") << header;
    EXPECT_EQ(error_of(wrong)["code"], "invalid_api_key") << header;
  }
}

TEST(ServerHttp, PercentEncodedKeysOpenTheRealtimeSocket) {
  auto options = http_options();
  options.api_key = "a/b+c=d";  // the web page sends encodeURIComponent(key)
  RunningServer s(options);
  open_realtime(s.port(), "localhost", "", "/v1/realtime?api_key=a%2Fb%2Bc%3Dd");
  EXPECT_THROW(open_realtime(s.port(), "localhost", "", "/v1/realtime?api_key=a%2Fb%2Bc"), boost::system::system_error);
  EXPECT_EQ(call(s.port(), http::verb::get, "/v1/models?api_key=a%2Fb%2Bc%3Dd").result_int(), 200u);
  // The page does encode it.
  EXPECT_THAT(slurp(source_path("web/app.js")), HasSubstr("api_key=${encodeURIComponent(apiKey())}"));
}

TEST(ServerHttp, ForeignOriginsAreRefusedAndOwnAndAllowedOnesServed) {
  RunningServer s(http_options());
  const std::string own = "http://" + s.authority();
  open_realtime(s.port(), s.authority(), own);  // the server's own page
  open_realtime(s.port(), s.authority(), "");   // not a browser
  open_realtime(s.port(), "localhost:" + std::to_string(s.port()), own);  // the listen address is its own too
  EXPECT_THROW(open_realtime(s.port(), s.authority(), "http://evil.example"), boost::system::system_error);
  EXPECT_THROW(open_realtime(s.port(), s.authority(), "http://127.0.0.1:1"), boost::system::system_error);
  // A form posted by another site's page (no preflight for multipart/form-data).
  const auto posted = transcribe(s.port(), {}, "numbers", {{http::field::origin, "http://evil.example"}});
  EXPECT_EQ(posted.result_int(), 403u);
  EXPECT_EQ(error_of(posted)["type"], "invalid_request_error");
  EXPECT_EQ(call(s.port(), http::verb::get, "/v1/models", {{http::field::origin, "null"}}).result_int(), 403u);

  auto options = http_options();
  options.allowed_origins = {"https://app.example"};
  RunningServer listed(options);
  open_realtime(listed.port(), listed.authority(), "https://app.example");
  EXPECT_THROW(open_realtime(listed.port(), listed.authority(), "https://other.example"), boost::system::system_error);
  const auto models = call(listed.port(), http::verb::get, "/v1/models", {{http::field::origin, "https://app.example"}});
  EXPECT_EQ(models.result_int(), 200u);
  EXPECT_EQ(models[http::field::access_control_allow_origin], "https://app.example");
  EXPECT_THAT(std::string(models[http::field::vary]), HasSubstr("Origin"));

  options.allowed_origins = {"*"};
  RunningServer any(options);
  open_realtime(any.port(), any.authority(), "http://evil.example");
}

TEST(ServerHttp, CorsPreflightIsAnsweredForAllowedOrigins) {
  auto options = http_options();
  options.api_key = "sesame";  // a preflight carries no key
  options.allowed_origins = {"https://app.example"};
  RunningServer s(options);
  const Fields preflight{{http::field::origin, "https://app.example"},
                         {http::field::access_control_request_method, "POST"},
                         {http::field::access_control_request_headers, "authorization, content-type, x-stainless-os"}};
  const auto ok = call(s.port(), http::verb::options, "/v1/audio/transcriptions", preflight);
  EXPECT_EQ(ok.result_int(), 204u) << ok.body();
  EXPECT_EQ(ok[http::field::access_control_allow_origin], "https://app.example");
  EXPECT_THAT(std::string(ok[http::field::access_control_allow_methods]), HasSubstr("POST"));
  EXPECT_THAT(std::string(ok[http::field::access_control_allow_headers]), HasSubstr("authorization"));
  EXPECT_THAT(std::string(ok[http::field::access_control_allow_headers]), HasSubstr("x-stainless-os"));
  EXPECT_THAT(std::string(ok[http::field::vary]), HasSubstr("Origin"));
  Fields foreign = preflight;
  foreign[0].second = "https://evil.example";
  const auto refused = call(s.port(), http::verb::options, "/v1/audio/transcriptions", foreign);
  EXPECT_EQ(refused.result_int(), 403u);
  EXPECT_EQ(refused[http::field::access_control_allow_origin], "");
  // The request itself then carries the CORS header.
  const auto upload = transcribe(s.port(), {}, "numbers",
                                 {{http::field::origin, "https://app.example"}, {http::field::authorization, "Bearer sesame"}});
  EXPECT_EQ(upload.result_int(), 200u);
  EXPECT_EQ(upload[http::field::access_control_allow_origin], "https://app.example");
}

TEST(ServerHttp, ForeignHostIsRefusedWithoutAnApiKey) {
  auto options = http_options();
  options.allowed_hosts = {"voxtral.example.org"};
  RunningServer s(options);
  const std::string port = std::to_string(s.port());
  // DNS rebinding: a page on evil.example (re-pointed at 127.0.0.1) is same-origin to itself.
  for (const std::string& host : std::vector<std::string>{"evil.example:" + port, "evil.example", "localhost.evil.example:" + port}) {
    EXPECT_EQ(call(s.port(), http::verb::get, "/v1/models", {}, "", host).result_int(), 403u) << host;
    EXPECT_EQ(call(s.port(), http::verb::get, "/", {}, "", host).result_int(), 403u) << host;
    EXPECT_THROW(open_realtime(s.port(), host, "http://" + host), boost::system::system_error) << host;
  }
  EXPECT_EQ(call(s.port(), http::verb::get, "/health", {}, "", "evil.example").result_int(), 200u);  // probes
  // Names of this machine, and any IP address (a server on 0.0.0.0 is reached by its IP).
  for (const std::string& host : std::vector<std::string>{"localhost:" + port, "LOCALHOST", "127.0.0.1:" + port, "[::1]:" + port,
                                 "192.168.1.20:" + port, "10.0.0.5", "[fe80::1]:" + port, "voxtral.example.org:" + port,
                                 "app.localhost:" + port, "gpubox:" + port, "gpubox.local:" + port}) {
    EXPECT_EQ(call(s.port(), http::verb::get, "/v1/models", {}, "", host).result_int(), 200u) << host;
  }
  open_realtime(s.port(), "192.168.1.20:" + port, "http://192.168.1.20:" + port);

  options.api_key = "sesame";  // the key is the guard: any Host
  RunningServer keyed(options);
  EXPECT_EQ(call(keyed.port(), http::verb::get, "/v1/models", {{http::field::authorization, "Bearer sesame"}}, "",
                 "voxtral.example.com")
                .result_int(),
            200u);
}

TEST(ServerHttp, MetricsLabelsComeFromTheRouteTable) {
  RunningServer s(http_options());
  // 1000 different unknown paths on one connection, and a path with a quote and a backslash.
  std::string requests;
  for (int i = 0; i < 1000; ++i) requests += "GET /random-" + std::to_string(i * 7919) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  requests += "GET /a\"b\\c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  const std::string replies = exchange(s.port(), requests);
  EXPECT_EQ(count_of(replies, "HTTP/1.1 404"), 1001);
  call(s.port(), http::verb::get, "/v1/models/demo");
  const std::string page = call(s.port(), http::verb::get, "/metrics").body();
  const std::regex series(R"re(^voxtral_requests_total\{endpoint="((?:[^"\\\n]|\\["\\n])*)",status="(\d+)"\} (\d+)$)re");
  std::set<std::string> endpoints;
  int lines = 0;
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (!line.starts_with("voxtral_requests_total")) continue;
    ++lines;
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, series)) << line;
    endpoints.insert(m[1]);
  }
  EXPECT_LT(lines, 10) << page;
  EXPECT_TRUE(endpoints.contains("unmatched")) << page;
  EXPECT_TRUE(endpoints.contains("/v1/models/{id}")) << page;
  EXPECT_THAT(page, HasSubstr("voxtral_requests_total{endpoint=\"unmatched\",status=\"404\"} 1001"));
  EXPECT_THAT(page, Not(HasSubstr("random-")));
  EXPECT_LT(page.size(), 8192u);
}

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(prometheus_label_value("plain/path_{id}"), "plain/path_{id}");
  EXPECT_EQ(prometheus_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  Metrics metrics;
  metrics.error("quote\"kind");
  EXPECT_THAT(metrics.prometheus({}), HasSubstr("voxtral_errors_total{kind=\"quote\\\"kind\"} 1"));
}

TEST(Formats, CompressionRatioIsWhispers) {
  // len(text) / len(zlib.compress(text)), as computed by Python's zlib for these strings.
  EXPECT_NEAR(compression_ratio("four one five two"), 17.0 / 25, 1e-9);
  EXPECT_NEAR(compression_ratio("Set a timer for ten minutes."), 28.0 / 36, 1e-9);
  EXPECT_NEAR(compression_ratio("the the the the the the the the the the the the the the the the the the the the"),
              79.0 / 15, 1e-9);
  EXPECT_EQ(compression_ratio(""), 0.0);
}

TEST(ServerHttp, VerboseJsonSegmentsCarryOpenAIsFields) {
  RunningServer s(http_options());
  const auto reply = transcribe(s.port(), {{"response_format", "verbose_json"}, {"language", "fr"}}, "commands");
  ASSERT_EQ(reply.result_int(), 200u) << reply.body();
  const auto doc = json::parse(reply.body());
  EXPECT_EQ(doc["language"], "auto");  // the model takes no language: the request's is not echoed
  ASSERT_FALSE(doc["segments"].empty());
  std::string joined;
  for (std::size_t i = 0; i < doc["segments"].size(); ++i) {
    const auto& seg = doc["segments"][i];
    for (const char* field : {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
                              "compression_ratio", "no_speech_prob"}) {
      EXPECT_TRUE(seg.contains(field)) << field << " in " << seg.dump();
    }
    EXPECT_EQ(seg["id"], i);
    EXPECT_EQ(seg["seek"], std::llround(seg["start"].get<double>() * 100));
    EXPECT_EQ(seg["temperature"], 0.0);
    EXPECT_EQ(seg["no_speech_prob"], 0.0);
    // Real token ids: the tokenizer turns them back into the segment's text.
    const auto ids = seg["tokens"].get<std::vector<int>>();
    ASSERT_FALSE(ids.empty());
    std::string decoded = demo_model().tokenizer().decode(ids);
    decoded.erase(0, std::min(decoded.find_first_not_of(' '), decoded.size()));
    EXPECT_EQ(decoded, seg["text"]);
    // A mean log probability: at most 0, and not the constant for "unknown" on real speech.
    const double logprob = seg["avg_logprob"];
    EXPECT_LT(logprob, 0.0);
    EXPECT_GT(logprob, -3.0);
    EXPECT_NEAR(seg["compression_ratio"].get<double>(), compression_ratio(seg["text"].get<std::string>()), 1e-9);
    joined += (joined.empty() ? "" : " ") + seg["text"].get<std::string>();
  }
  EXPECT_EQ(joined, sample_text("commands"));
}

}  // namespace
}  // namespace voxtral

namespace voxtral {
namespace {

// Found by trying the server as a new user would (issue 14 review).
TEST(ServerHttp, AnHttp11RequestHasExactlyOneHost) {
  RunningServer s(http_options());
  const std::string two = exchange(s.port(), "GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n");
  EXPECT_THAT(two, HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(two, HasSubstr("more than one Host"));
  EXPECT_THAT(exchange(s.port(), "GET /health HTTP/1.1\r\n\r\n"), HasSubstr("HTTP/1.1 400"));
  EXPECT_THAT(exchange(s.port(), "GET /health HTTP/1.0\r\n\r\n"), HasSubstr(" 200 "));  // HTTP/1.0 has no Host
}

TEST(ServerHttp, AnAbsoluteFormTargetIsServedAndItsAuthorityIsTheHost) {
  RunningServer s(http_options());
  EXPECT_THAT(exchange(s.port(), "GET http://localhost:1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
              HasSubstr(" 200 "));
  EXPECT_THAT(exchange(s.port(), "GET HTTP://127.0.0.1/v1/models?x=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
              HasSubstr("\"object\":\"list\""));
  // Its authority is what the Host check sees (no API key here: a foreign name is refused).
  EXPECT_THAT(exchange(s.port(), "GET http://evil.example/v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
              HasSubstr(" 403 "));
}

TEST(ServerHttp, UpgradeRequiredSaysWhichProtocol) {
  RunningServer s(http_options());
  const auto reply = call(s.port(), http::verb::get, "/v1/realtime");
  EXPECT_EQ(reply.result_int(), 426);
  EXPECT_EQ(reply[http::field::upgrade], "websocket");
}

TEST(ServerHttp, RefusedUploadsAreCountedUnderTheirRoute) {
  ServerOptions options = http_options();
  options.max_upload_bytes = 64u << 10;  // commands.wav is ~500 KiB
  RunningServer s(options);
  EXPECT_EQ(transcribe(s.port(), {}, "commands").result_int(), 413);
  const std::string metrics = call(s.port(), http::verb::get, "/metrics").body();
  EXPECT_THAT(metrics, HasSubstr("endpoint=\"/v1/audio/transcriptions\",status=\"413\""));
  EXPECT_THAT(metrics, Not(HasSubstr("endpoint=\"upload\"")));
}

TEST(ServerHttp, AFormWithTwoFilesIsRefused) {
  RunningServer s(http_options());
  std::string body = form({}, "timer");
  body.insert(0, "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" +
                     slurp(source_path("samples/numbers.wav")) + "\r\n");
  const auto reply = call(s.port(), http::verb::post, "/v1/audio/transcriptions",
                          {{http::field::content_type, "multipart/form-data; boundary=" + kBoundary}}, body);
  EXPECT_EQ(reply.result_int(), 400);
  EXPECT_EQ(error_of(reply)["param"], "file");
  EXPECT_THAT(error_of(reply)["message"].get<std::string>(), HasSubstr("more than one"));
}

TEST(Auth, TheKeyIsTheFilesFirstLineWhateverItsLineEnd) {
  testing::TempDir dir;
  EXPECT_EQ(read_api_key_file(dir.write("crlf", "k1\r\n").string()), "k1");
  EXPECT_EQ(read_api_key_file(dir.write("two", "k1\nsecond line\n").string()), "k1");
  EXPECT_EQ(read_api_key_file(dir.write("bare", "k1").string()), "k1");
  EXPECT_THROW(read_api_key_file(dir.write("blank", "\nk1\n").string()), Error);
  const std::string fifo = (dir.path() / "fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  try {  // refused without waiting for a writer
    read_api_key_file(fifo);
    ADD_FAILURE() << "a FIFO was read as a key file";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("not a regular file"));
  }
}

TEST(Auth, PrivateNetworkNamesAndDefaultPorts) {
  ServerOptions o;
  for (const char* host : {"x.home.arpa:8000", "box.lan", "gpu.internal:8000", "h.localdomain"}) {
    EXPECT_TRUE(host_allowed(host, o)) << host;
  }
  EXPECT_FALSE(host_allowed("attacker.example.com:8000", o));
  o.allowed_origins = {"https://b.example.com:443"};
  EXPECT_TRUE(origin_allowed("https://b.example.com", "localhost:8000", o));
  EXPECT_EQ(check_allowed_origin("https://b.example.com:8443"), "");
  EXPECT_EQ(check_allowed_origin("*"), "");
  EXPECT_NE(check_allowed_origin("b.example.com"), "");
  EXPECT_NE(check_allowed_origin("https://b.example.com/app"), "");
  EXPECT_NE(check_allowed_origin("ftp://b.example.com"), "");
}

// Each option value that could never work, or would silently serve everyone, stops the
// start with exit 2 (a bad command line) before the model is loaded (that would be exit 3).
TEST(ServerProcess, OptionsThatCannotWorkAreRefusedAtStart) {
  testing::TempDir dir;
  const std::string key_file = dir.write("key", "k1\n").string();
  const std::string server = std::string(VOXTRAL_SERVER) + " -d /nonexistent-model --port 0";
  const std::vector<std::string> cases = {
      server + " --api-key ''",
      "VOXTRAL_API_KEY= " + server,
      server + " --api-key k2 --api-key-file " + key_file,
      server + " --served-model-name ''",
      server + " --allowed-origin evil.example.com",
      server + " --max-upload-mb nan",
      server + " --max-audio-seconds inf",
      server + " --shutdown-timeout nan",
  };
  for (const auto& command : cases) {
    const int status = std::system((command + " > /dev/null 2>&1").c_str());
    ASSERT_TRUE(WIFEXITED(status)) << command;
    EXPECT_EQ(WEXITSTATUS(status), 2) << command;
  }
  // The environment's key and a key file: the file is the key (not a usage error).
  const int status = std::system(("VOXTRAL_API_KEY=k2 " + server + " --api-key-file " + key_file + " > /dev/null 2>&1").c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);  // it got as far as loading the (missing) model
}

}  // namespace
}  // namespace voxtral
