// libFuzzer target for voxtral-server's HTTP request handling: the request line, headers,
// bodies (Content-Length, chunked, Expect), routing, the multipart form and its fields.
// Each input is one client's bytes, sent to a real Server (the tiny fixture model, small
// limits and memory budget) over loopback; the client then half-closes and reads until the
// server closes. A sanitizer report, a hang, an answer that is not HTTP, or an exception
// that reached the server's exception boundary (metrics kind "internal") is a bug. The body
// of any input that parses as a request also goes through the form check directly, which
// is deterministic and fast. Seeds: fuzz/seeds/fuzz_http_request/.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "model/model.h"
#include "server/server.h"
#include "server/transcription.h"
#include "server_harness.h"

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using voxtral::testing::loopback::LoopbackServer;

struct Fixture {
  std::unique_ptr<voxtral::Model> model;
  std::unique_ptr<LoopbackServer> running;
};

Fixture& fixture() {
  static Fixture* f = [] {
    auto* made = new Fixture;
    voxtral::ModelOptions model_options{"cpu"};
    model_options.threads = 1;
    made->model = voxtral::Model::load(VOXTRAL_FUZZ_MODEL, model_options);
    voxtral::ServerOptions options;
    options.model_id = "tiny";
    options.max_upload_bytes = 256u << 10;
    options.memory_budget_bytes = 4u << 20;
    options.max_audio_seconds = 5;
    options.idle_timeout_seconds = 2;
    options.header_timeout_seconds = 2;
    options.io_threads = 1;
    made->running = std::make_unique<LoopbackServer>(*made->model, options);
    return made;
  }();
  return *f;
}

// The form check alone, on the body of whatever parses as a request.
void check_form_directly(const std::string& bytes) {
  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.body_limit(1u << 20);
  beast::error_code ec;
  parser.put(net::buffer(bytes), ec);
  if (ec || !parser.is_header_done()) return;
  if (!parser.is_done()) {
    parser.put_eof(ec);
    if (ec) return;
  }
  auto request = parser.release();
  const std::string content_type(request[http::field::content_type]);
  static const voxtral::ServerOptions strict = [] {
    voxtral::ServerOptions o;
    o.model_id = "tiny";
    o.served_model_names = {"whisper-1"};
    o.strict_model_name = true;  // the refusal path quotes client text
    return o;
  }();
  voxtral::check_transcription_form(std::move(request.body()), content_type, strict);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Fixture& f = fixture();
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  check_form_directly(bytes);
  const auto exchanged = voxtral::testing::loopback::exchange_bytes(f.running->port(), bytes,
                                                                    {.half_close = true, .timeout_seconds = 10});
  if (!exchanged.closed_by_server()) {
    std::fprintf(stderr, "fuzz_http_request: the server did not close the connection: %s\n",
                 exchanged.ended_by.message().c_str());
    std::abort();
  }
  const std::string& answer = exchanged.reply;
  if (!answer.empty() && !answer.starts_with("HTTP/1.")) {
    std::fprintf(stderr, "fuzz_http_request: an answer that is not HTTP\n");
    std::abort();
  }
  // At a line start: a request's path appears in the page too (as a label value).
  if (f.running->server.metrics().prometheus({}).find("\nvoxtral_errors_total{kind=\"internal\"}") != std::string::npos) {
    std::fprintf(stderr, "fuzz_http_request: an exception reached the server's boundary (see the log above)\n");
    std::abort();
  }
  return 0;
}
