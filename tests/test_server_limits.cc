// voxtral-server's HTTP connections under hostile and careless clients, on loopback with the
// demo model: bytes that are not UTF-8 anywhere in a request, bodies declared larger than
// the memory budget, pipelined requests and stray bytes during a transcription, slow
// uploads, decoded-audio limits, and graceful shutdown of the real binary on SIGTERM.
// Every request here once ended the whole process or lost its answer (issue 14).
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <thread>
#include <utility>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/http_session.h"
#include "server/memory_budget.h"
#include "server/server.h"
#include "server/upload_audio.h"
#include "server_test_client.h"
#include "test_util.h"

namespace voxtral {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using voxtral::testing::fixture;
using voxtral::testing::source_path;
using voxtral::testing::loopback::ClientPart;
using voxtral::testing::loopback::demo_model;
using voxtral::testing::loopback::exchange;
using voxtral::testing::loopback::multipart_form;
using voxtral::testing::loopback::RunningServer;
using voxtral::testing::loopback::sample_part;
using voxtral::testing::loopback::sample_text;
using voxtral::testing::loopback::slurp;

struct Reply {
  int status = 0;
  std::string connection;
  std::string body;
};

// The responses in `raw`, in order (a connection's whole output).
std::vector<Reply> parse_replies(std::string_view raw) {
  std::vector<Reply> replies;
  while (!raw.empty()) {
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(64u << 20);
    beast::error_code ec;
    const std::size_t used = parser.put(net::buffer(raw.data(), raw.size()), ec);
    if (ec || !parser.is_done()) break;
    raw.remove_prefix(used);
    const auto& res = parser.get();
    replies.push_back({static_cast<int>(res.result_int()), std::string(res[http::field::connection]), res.body()});
  }
  return replies;
}

Reply one_reply(unsigned short port, const std::string& bytes, int seconds = 30) {
  const auto replies = parse_replies(exchange(port, bytes, {.timeout_seconds = seconds}));
  if (replies.empty()) return {};
  return replies.front();
}

const std::string kBoundary = "hardening-boundary-51c2";

std::string form(const std::vector<ClientPart>& parts) { return multipart_form(parts, kBoundary); }

// An upload request; the server closes the connection after answering it unless
// `extra_headers` says otherwise.
std::string post(const std::string& body, const std::string& extra_headers = "Connection: close\r\n",
                 const std::string& content_type = "multipart/form-data; boundary=" + kBoundary) {
  return "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: localhost\r\nContent-Type: " + content_type +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra_headers + "\r\n" + body;
}

std::string get(const std::string& target, const std::string& extra_headers = "") {
  return "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n" + extra_headers + "\r\n";
}

std::string metrics_page(const RunningServer& s) {
  return one_reply(s.port(), get("/metrics", "Connection: close\r\n")).body;
}

bool healthy(const RunningServer& s) {
  return one_reply(s.port(), get("/health", "Connection: close\r\n")).status == 200;
}

ServerOptions small_limits() {
  ServerOptions o;
  o.max_upload_bytes = 2u << 20;
  o.max_audio_seconds = 40;
  o.idle_timeout_seconds = 2;
  o.memory_budget_bytes = 256u << 20;
  return o;
}

// A JSON error whose message is valid UTF-8 (the parse would throw otherwise).
json error_of(const Reply& r) {
  const auto doc = json::parse(r.body);
  EXPECT_TRUE(doc.contains("error")) << r.body;
  return doc["error"];
}

TEST(ServerHttp, BytesThatAreNotUtf8NeverStopTheServer) {
  for (const std::string key : {"", "sesame"}) {
    auto options = small_limits();
    options.api_key = key;
    RunningServer s(options);
    // A request line with a byte that is not UTF-8: no key is needed to reach it.
    const auto bad_path = one_reply(s.port(), get("/\xff", "Connection: close\r\n"));
    EXPECT_EQ(bad_path.status, 404) << key;
    EXPECT_NO_THROW(error_of(bad_path)) << bad_path.body;
    EXPECT_TRUE(healthy(s)) << key;
  }
  RunningServer s(small_limits());
  auto field = [&](const std::string& name, const std::vector<ClientPart>& more = {}) {
    std::vector<ClientPart> parts = {sample_part("timer"), {name, "", "x\xff\xfey"}};
    parts.insert(parts.end(), more.begin(), more.end());
    const auto r = one_reply(s.port(), post(form(parts), "Connection: close\r\n"));
    EXPECT_EQ(r.status, 400) << name << ": " << r.body;
    const auto error = error_of(r);
    EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("not valid UTF-8")) << name;
    EXPECT_EQ(error["param"], name == "timestamp_granularities[]" ? "timestamp_granularities" : name);
    EXPECT_TRUE(healthy(s)) << name;
  };
  field("model");
  field("response_format");
  field("stream");
  field("timestamp_granularities[]");
  field("language", {{"response_format", "", "verbose_json"}});
  field("prompt");

  // A file name that is not UTF-8 on an upload that fails to decode: named, repaired.
  const auto bad_name = one_reply(s.port(), post(form({{"file", "caf\xe9\x01.mp3", "not audio at all"}})));
  EXPECT_EQ(bad_name.status, 400) << bad_name.body;
  EXPECT_THAT(error_of(bad_name)["message"].get<std::string>(), HasSubstr("caf\xEF\xBF\xBD?.mp3: "));
  // A part name, a part header and a Content-Type that are not UTF-8.
  const auto bad_part_name = one_reply(s.port(), post(form({sample_part("timer"), {"n\xff", "", "v"}})));
  EXPECT_EQ(bad_part_name.status, 200) << bad_part_name.body;  // an unknown field is ignored
  std::string body = form({sample_part("timer")});
  body.insert(kBoundary.size() + 4, "X-Note\xff\xfe no colon\r\n");
  const auto bad_header = one_reply(s.port(), post(body));
  EXPECT_EQ(bad_header.status, 400);
  EXPECT_THAT(error_of(bad_header)["message"].get<std::string>(), HasSubstr("malformed part header"));
  const auto bad_type = one_reply(s.port(), post(form({sample_part("timer")}), "Connection: close\r\n", "text/\xff\xfe"));
  EXPECT_EQ(bad_type.status, 400);
  EXPECT_THAT(error_of(bad_type)["message"].get<std::string>(), HasSubstr("must be multipart/form-data"));
  const auto bad_file_type =
      one_reply(s.port(), post(form({{"file", "a\xff.wav", slurp(source_path("samples/timer.wav")), "audio/\xff"}})));
  EXPECT_EQ(bad_file_type.status, 200) << bad_file_type.body;
  // Other fields of the wrong type: named.
  const auto temperature = one_reply(s.port(), post(form({sample_part("timer"), {"temperature", "", "hot"}})));
  EXPECT_EQ(temperature.status, 400);
  EXPECT_EQ(error_of(temperature)["param"], "temperature");
  // The server is still up and nothing escaped a handler.
  EXPECT_TRUE(healthy(s));
  EXPECT_THAT(metrics_page(s), Not(HasSubstr("kind=\"internal\"")));
}

TEST(ServerHttp, AFailureInsideAHandlerEndsOnlyThatRequest) {
  // A connection of its own, on an I/O loop of the test's: a task on it throws.
  Scheduler engine(demo_model(), SchedulerOptions{});
  Metrics metrics;
  const ServerOptions options = small_limits();
  MemoryBudget memory;
  ServerContext context{engine, metrics, options};
  context.memory = &memory;
  net::io_context io;
  tcp::acceptor acceptor(io, {net::ip::make_address("127.0.0.1"), 0});
  auto connect = [&] {
    auto client = std::make_unique<tcp::socket>(io);
    client->connect(acceptor.local_endpoint());
    timeval tv{30, 0};
    ::setsockopt(client->native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto session = std::make_shared<HttpSession>(acceptor.accept(), context);
    session->run();
    return std::make_pair(std::move(client), session);
  };
  auto [client, session] = connect();
  session->post([] { throw std::runtime_error("a fault injected by the test"); });
  std::thread loop([&] { io.run(); });
  auto read_all = [](tcp::socket& socket) {
    std::string out;
    char chunk[4096];
    beast::error_code ec;
    while (!ec) out.append(chunk, socket.read_some(net::buffer(chunk), ec));
    return out;
  };
  const auto failed = parse_replies(read_all(*client));
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].status, 500);
  EXPECT_THAT(error_of(failed[0])["message"].get<std::string>(), HasSubstr("internal server error"));
  EXPECT_THAT(metrics.prometheus({}), HasSubstr("voxtral_errors_total{kind=\"internal\"} 1"));
  // The loop goes on: the next connection is served.
  auto [next, next_session] = connect();
  net::write(*next, net::buffer(get("/health", "Connection: close\r\n")));
  const auto health = parse_replies(read_all(*next));
  ASSERT_EQ(health.size(), 1u);
  EXPECT_EQ(health[0].status, 200);
  io.stop();
  loop.join();
}

TEST(ServerHttp, JsonOfNamesThatAreNotUtf8IsServed) {
  // A model name that is not UTF-8 (a directory name on disk can be any bytes) reaches the
  // JSON of /health and /v1/models.
  ServerOptions odd = small_limits();
  odd.model_id = "demo\xff";
  odd.port = 0;
  Scheduler engine(demo_model(), SchedulerOptions{});
  Server server(engine, odd);
  server.start();
  for (const std::string path : {"/health", "/v1/models"}) {
    const auto r = one_reply(server.port(), get(path, "Connection: close\r\n"));
    EXPECT_EQ(r.status, 200) << path << ": " << r.body;
    EXPECT_THAT(r.body, HasSubstr("demo\xEF\xBF\xBD")) << path;
  }
}

TEST(ServerHttp, DeclaredBodiesAreNotReservedAndTheBudgetAnswers503) {
  auto options = small_limits();
  options.max_upload_bytes = 200u << 20;
  options.memory_budget_bytes = 64u << 20;
  RunningServer s(options);
  // 26 connections, each declaring 100 MiB: nothing is allocated for them, and those past
  // the budget are refused at once (the client has sent no body yet).
  const std::string head = "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
                           "boundary=" + kBoundary + "\r\nContent-Length: " + std::to_string(100u << 20) + "\r\n\r\n";
  std::vector<std::future<Reply>> replies;
  for (int i = 0; i < 26; ++i) {
    replies.push_back(std::async(std::launch::async, [&] {
      const auto all = parse_replies(exchange(s.port(), head));
      return all.empty() ? Reply{} : all.front();
    }));
  }
  for (auto& r : replies) {
    const auto reply = r.get();
    EXPECT_EQ(reply.status, 503) << reply.body;
    EXPECT_THAT(reply.body, HasSubstr("memory budget"));
  }
  // Over the upload limit: 413, whatever the budget.
  const std::string huge = "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                           std::to_string(1ull << 40) + "\r\n\r\n";
  EXPECT_EQ(one_reply(s.port(), huge).status, 413);
  // A chunked body (no declared size) grows as it arrives and is cut at the budget.
  std::string chunked = "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                        "Content-Type: multipart/form-data; boundary=" + kBoundary + "\r\n\r\n";
  const std::string piece(1u << 20, 'a');
  char size_line[32];
  std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
  for (int i = 0; i < 80; ++i) chunked += size_line + piece + "\r\n";
  chunked += "0\r\n\r\n";
  const auto cut = one_reply(s.port(), chunked);
  EXPECT_EQ(cut.status, 503) << cut.body;
  // The budget is whole again, and the server serves.
  const auto fine = one_reply(s.port(), post(form({sample_part("timer")}), "Connection: close\r\n"));
  EXPECT_EQ(fine.status, 200) << fine.body;
  EXPECT_EQ(json::parse(fine.body)["text"], sample_text("timer"));
  EXPECT_THAT(metrics_page(s), HasSubstr("voxtral_errors_total{kind=\"memory_budget\"} 27"));
}

TEST(ServerHttp, TheDefaultMemoryBudgetFollowsTheMachine) {
  const double physical = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
  EXPECT_GT(default_memory_budget_bytes(), 0u);
  EXPECT_LE(static_cast<double>(default_memory_budget_bytes()), physical / 2 + 1);
  // Under an address-space limit (ulimit -v) below the physical memory: half of that limit.
  const std::size_t limit = std::min<std::size_t>(static_cast<std::size_t>(physical / 2), std::size_t{3} << 30);
  const pid_t child = ::fork();
  if (child == 0) {
    const rlimit as{limit, limit};
    ::setrlimit(RLIMIT_AS, &as);
    ::_exit(default_memory_budget_bytes() == limit / 2 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(ServerHttp, DecodedAudioIsTakenFromTheBudget) {
  // The body fits in the budget; with it, its decoded audio (a float per 16-bit sample) does not.
  const std::string request = post(form({sample_part("timer")}));
  auto options = small_limits();
  options.memory_budget_bytes = request.size() * 3 / 2;
  RunningServer s(options);
  const auto r = one_reply(s.port(), request);
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_THAT(r.body, HasSubstr("timer.wav: the decoded audio does not fit in the server's memory budget"));
  EXPECT_TRUE(healthy(s));
}

TEST(ServerHttp, PipelinedRequestsAreAnsweredInOrder) {
  RunningServer s(small_limits());
  // An upload, a stray CRLF, then a second request, all before the first answer.
  const std::string upload = post(form({sample_part("lights")}), "");
  const std::string raw = exchange(s.port(), upload + "\r\n" + get("/health") + post(form({sample_part("timer")}), "") +
                                                get("/health", "Connection: close\r\n"));
  const auto replies = parse_replies(raw);
  ASSERT_EQ(replies.size(), 4u) << raw;
  EXPECT_EQ(replies[0].status, 200);
  EXPECT_EQ(json::parse(replies[0].body)["text"], sample_text("lights"));
  EXPECT_EQ(replies[1].status, 200);
  EXPECT_EQ(json::parse(replies[1].body)["status"], "ok");
  EXPECT_EQ(json::parse(replies[2].body)["text"], sample_text("timer"));
  EXPECT_EQ(replies[3].status, 200);
  // A stray CRLF while the upload is transcribed, the client then waits: it gets its answer.
  {
    net::io_context io;
    tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), s.port()});
    net::write(socket, net::buffer(post(form({sample_part("commands")}))));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    net::write(socket, net::buffer(std::string("\r\n")));
    beast::flat_buffer buffer;
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    EXPECT_EQ(res.result_int(), 200u);
    EXPECT_EQ(json::parse(res.body())["text"], sample_text("commands"));
  }
  // Extra bytes while the upload is transcribed, then the client leaves: the job is
  // cancelled, its slot freed.
  {
    net::io_context io;
    tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), s.port()});
    net::write(socket, net::buffer(post(form({sample_part("commands")}))));
    for (int i = 0; i < 1500 && s.engine.counters().active_jobs == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    net::write(socket, net::buffer(std::string("\r\nGET /health HTTP/1.1\r\n")));
    socket.close();
  }
  EXPECT_TRUE(s.idle());
  const std::string metrics = metrics_page(s);
  EXPECT_THAT(metrics, HasSubstr("voxtral_errors_total{kind=\"client_disconnected\"}"));
  // Three uploads were answered; the fourth was cancelled, not answered into the void.
  EXPECT_THAT(metrics, HasSubstr("voxtral_requests_total{endpoint=\"/v1/audio/transcriptions\",status=\"200\"} 3\n"));
}

TEST(ServerHttp, SlowSteadyUploadsAreServedAndTricklesCut) {
  auto options = small_limits();  // idle timeout 2 s: the old fixed cut of the whole request
  options.min_upload_bytes_per_second = 16 << 10;
  RunningServer s(options);
  const std::string request = post(form({sample_part("lights")}));  // ~88 KB: ~4 s at 22 KiB/s
  net::io_context io;
  tcp::socket slow(io);
  slow.connect({net::ip::make_address("127.0.0.1"), s.port()});
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t at = 0; at < request.size(); at += 2200) {
    net::write(slow, net::buffer(request.substr(at, 2200)));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(slow, buffer, res);
  EXPECT_EQ(res.result_int(), 200u);
  EXPECT_EQ(json::parse(res.body())["text"], sample_text("lights"));
  // A trickle under the minimum rate (but never silent for the idle timeout) is cut.
  tcp::socket trickle(io);
  trickle.connect({net::ip::make_address("127.0.0.1"), s.port()});
  const auto trickle_start = std::chrono::steady_clock::now();
  beast::error_code ec;
  for (std::size_t at = 0; at < request.size() && !ec; at += 500) {
    net::write(trickle, net::buffer(request.substr(at, 500)), ec);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (std::chrono::steady_clock::now() - trickle_start > std::chrono::seconds(20)) break;
  }
  EXPECT_TRUE(ec) << "the server never cut a 2.5 KB/s upload";
  EXPECT_LT(std::chrono::steady_clock::now() - trickle_start, std::chrono::seconds(10));
  // A header that never ends is cut by the header timeout, though bytes keep coming.
  options.header_timeout_seconds = 1;
  RunningServer h(options);
  tcp::socket headers(io);
  headers.connect({net::ip::make_address("127.0.0.1"), h.port()});
  const auto header_start = std::chrono::steady_clock::now();
  ec = {};
  net::write(headers, net::buffer(std::string("GET / HTTP/1.1\r\n")), ec);
  for (int i = 0; i < 100 && !ec; ++i) {
    net::write(headers, net::buffer(std::string("X-A: b\r\n")), ec);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(ec);
  EXPECT_LT(std::chrono::steady_clock::now() - header_start, std::chrono::seconds(5));
}

TEST(ServerHttp, TheLimitMessagesStateTheRealLimits) {
  auto options = small_limits();
  options.max_upload_bytes = 1u << 19;  // --max-upload-mb 0.5
  RunningServer s(options);
  const auto r = one_reply(s.port(), post(form({{"file", "big.wav", std::string(700u << 10, 'x')}})));
  EXPECT_EQ(r.status, 413);
  EXPECT_THAT(error_of(r)["message"].get<std::string>(), HasSubstr("limit of 0.5 MiB"));
}

TEST(ServerHttp, DecodedAudioIsBoundedWhileDecoding) {
  // Opus at 48 kHz: the limit is passed inside the stream and the decode stops there.
  const std::string ogg = slurp(fixture("server/lights.ogg"));
#if VOXTRAL_HAVE_LIBAV
  EXPECT_THAT(testing::error_message([&] { decode_upload(ogg, "lights.ogg", 16000, 1.0); }),
              HasSubstr("lights.ogg: the audio is longer than this server's limit of 1 s"));
  // The decoded samples are taken from the budget as they grow: a budget smaller than the
  // audio refuses it (the server answers 503), one large enough holds exactly the samples.
  MemoryBudget small(64u << 10);
  MemoryBudget::Hold small_hold(&small);
  EXPECT_THROW(decode_upload(ogg, "lights.ogg", 16000, 0, &small_hold), UploadOverBudget);
  MemoryBudget large(64u << 20);
  MemoryBudget::Hold hold(&large);
  const auto samples = decode_upload(ogg, "lights.ogg", 16000, 0, &hold);
  EXPECT_GE(hold.bytes(), samples.size() * sizeof(float));
  EXPECT_LE(hold.bytes(), samples.capacity() * sizeof(float));
  EXPECT_EQ(large.used(), hold.bytes());
#endif
  // WAV: bounded piece by piece too.
  const std::string timer = slurp(source_path("samples/timer.wav"));
  EXPECT_THAT(testing::error_message([&] { decode_upload(timer, "timer.wav", 16000, 0.5); }),
              HasSubstr("timer.wav: the audio is longer than this server's limit of 0.5 s"));
  auto options = small_limits();
  options.max_audio_seconds = 0.5;
  RunningServer s(options);
  const auto r = one_reply(s.port(), post(form({{"file", "timer.wav", timer}})));
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("timer.wav: the audio is longer than this server's limit of 0.5 s"));
#if VOXTRAL_HAVE_LIBAV
  options.max_audio_seconds = 1;
  RunningServer s_ogg(options);
  const auto r_ogg = one_reply(s_ogg.port(), post(form({{"file", "lights.ogg", ogg}})));
  EXPECT_EQ(r_ogg.status, 400);
  EXPECT_THAT(r_ogg.body, HasSubstr("limit of 1 s"));
#endif
}

// --- the real binary, stopped by a signal ---

struct ServerProcess {
  explicit ServerProcess(const std::vector<std::string>& extra) {
    int out[2];
    EXPECT_EQ(::pipe(out), 0);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(out[1], 2);
      ::close(out[0]);
      std::vector<std::string> args = {VOXTRAL_SERVER, "-d", source_path("models/demo").string(), "--port", "0",
                                       "--backend", "cpu"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    log = ::fdopen(out[0], "r");
    char line[512];
    while (std::fgets(line, sizeof line, log) != nullptr) {
      const std::string text = line;
      const auto at = text.find("listening on http://127.0.0.1:");
      if (at != std::string::npos) {
        port = static_cast<unsigned short>(std::stoi(text.substr(at + 30)));
        break;
      }
    }
  }
  ~ServerProcess() {
    if (pid > 0 && !reaped) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (log != nullptr) std::fclose(log);
  }
  // The exit status, waiting up to `seconds`; -1 if it did not exit.
  int wait_exit(int seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        reaped = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }
  // Waits (up to 60 s: the sanitizer build on a busy machine is slow) until a transcription runs.
  bool busy() {
    for (int i = 0; i < 3000; ++i) {
      const auto body = one_reply(port, get("/metrics", "Connection: close\r\n")).body;
      if (body.find("voxtral_active_streams 1") != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  pid_t pid = -1;
  bool reaped = false;
  FILE* log = nullptr;
  unsigned short port = 0;
};

std::string long_upload() {
  // commands.wav four times: 65 s of audio, a second or more of work for the demo model.
  const std::string one = slurp(source_path("samples/commands.wav"));
  const std::string pcm = one.substr(44);
  std::string wav = one.substr(0, 44);
  for (int i = 0; i < 4; ++i) wav += pcm;
  auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) wav[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  put32(4, static_cast<std::uint32_t>(wav.size() - 8));
  put32(40, static_cast<std::uint32_t>(pcm.size() * 4));
  return post(form({{"file", "long.wav", wav}}));
}

TEST(ServerHttp, SigtermLetsRunningUploadsFinishThenExits) {
  ASSERT_EQ(slurp(source_path("samples/commands.wav")).substr(36, 4), "data");
  ServerProcess p({"--shutdown-timeout", "60"});
  ASSERT_NE(p.port, 0);
  // A keep-alive connection, idle when the signal comes.
  net::io_context io;
  tcp::socket idle(io);
  idle.connect({net::ip::make_address("127.0.0.1"), p.port});
  net::write(idle, net::buffer(get("/health")));
  beast::flat_buffer idle_buffer;
  http::response<http::string_body> first;
  http::read(idle, idle_buffer, first);
  EXPECT_EQ(first.result_int(), 200u);
  auto upload = std::async(std::launch::async, [&] { return one_reply(p.port, long_upload(), 300); });
  ASSERT_TRUE(p.busy());
  // An upload whose body is on the way when the signal comes.
  const std::string transit_request = post(form({sample_part("lights")}));
  tcp::socket transit(io);
  transit.connect({net::ip::make_address("127.0.0.1"), p.port});
  net::write(transit, net::buffer(transit_request.substr(0, transit_request.size() / 2)));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ::kill(p.pid, SIGTERM);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  net::write(transit, net::buffer(transit_request.substr(transit_request.size() / 2)));
  beast::flat_buffer transit_buffer;
  http::response<http::string_body> transit_reply;
  http::read(transit, transit_buffer, transit_reply);
  EXPECT_EQ(transit_reply.result_int(), 200u) << transit_reply.body();
  EXPECT_EQ(json::parse(transit_reply.body())["text"], sample_text("lights"));
  // A new request on the open connection: 503 and Connection: close.
  net::write(idle, net::buffer(get("/health")));
  http::response<http::string_body> refused;
  http::read(idle, idle_buffer, refused);
  EXPECT_EQ(refused.result_int(), 503u);
  EXPECT_FALSE(refused.keep_alive());
  // New connections are not accepted.
  tcp::socket late(io);
  beast::error_code ec;
  late.connect({net::ip::make_address("127.0.0.1"), p.port}, ec);
  EXPECT_EQ(ec, net::error::connection_refused);
  // The running upload completes.
  const auto reply = upload.get();
  EXPECT_EQ(reply.status, 200) << reply.body;
  EXPECT_THAT(json::parse(reply.body)["text"].get<std::string>(), HasSubstr(sample_text("commands")));
  EXPECT_EQ(p.wait_exit(20), 0);
}

TEST(ServerHttp, SigtermPastTheGracePeriodAnswers503) {
  ServerProcess p({"--shutdown-timeout", "0.2"});
  ASSERT_NE(p.port, 0);
  auto upload = std::async(std::launch::async, [&] { return one_reply(p.port, long_upload(), 300); });
  ASSERT_TRUE(p.busy());
  ::kill(p.pid, SIGTERM);
  const auto reply = upload.get();
  EXPECT_EQ(reply.status, 503) << reply.body;
  EXPECT_THAT(reply.body, HasSubstr("shut down"));
  EXPECT_EQ(p.wait_exit(20), 0);
}

}  // namespace
}  // namespace voxtral
