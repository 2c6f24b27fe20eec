// A Server running on a free loopback port, and the raw clients that talk to it: shared by
// the server tests (through server_test_client.h) and the HTTP fuzzer, which links neither
// GoogleTest nor the test helpers, so nothing here may use them. Every client gives up
// after a timeout: a broken server fails the test (or the fuzzer) instead of hanging it.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "model/model.h"
#include "runtime/scheduler.h"
#include "server/server.h"

namespace voxtral::testing::loopback {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// A scheduler over `model` and a started server on it, listening on a free port (the port
// of `options` is ignored). Both stop with the object.
struct LoopbackServer {
  LoopbackServer(Model& model, ServerOptions options, SchedulerOptions scheduler_options = {})
      : engine(model, scheduler_options), server(engine, on_free_port(std::move(options))) {
    server.start();
  }
  static ServerOptions on_free_port(ServerOptions o) {
    o.port = 0;
    return o;
  }
  unsigned short port() const { return server.port(); }
  std::string authority() const { return "127.0.0.1:" + std::to_string(port()); }
  // Waits (up to 30 s: a loaded CI machine once took over 10 s to see a closed session's
  // job end) until `active` transcriptions run on the engine; false if they never do.
  bool jobs(int active) {
    for (int i = 0; i < 600; ++i) {
      if (engine.counters().active_jobs == active) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  bool idle() { return jobs(0); }

  Scheduler engine;
  Server server;
};

// Blocking reads and writes on `socket` give up after `seconds`.
inline void set_timeouts(tcp::socket& socket, int seconds) {
  timeval tv{seconds, 0};
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

struct ExchangeOptions {
  // Half-close after writing. Off by default: the server takes EOF as the client leaving and
  // cancels its work, so a client waiting for an answer keeps its side open.
  bool half_close = false;
  int timeout_seconds = 30;  // per read and per write
};

// What the server sent on one connection, and the error that ended the reading.
struct Exchanged {
  std::string reply;
  beast::error_code ended_by;
  // The server closed the connection (rather than a timeout or another failure ending it).
  bool closed_by_server() const { return ended_by == net::error::eof || ended_by == net::error::connection_reset; }
};

// Connects, sends `bytes` as they are (a failed write is not an error: the server may answer
// and close before reading them all) and reads until the connection ends.
inline Exchanged exchange_bytes(unsigned short port, const std::string& bytes, const ExchangeOptions& how = {}) {
  net::io_context io;
  tcp::socket socket(io);
  socket.connect({net::ip::make_address("127.0.0.1"), port});
  set_timeouts(socket, how.timeout_seconds);
  beast::error_code ec;
  net::write(socket, net::buffer(bytes), ec);
  if (how.half_close) socket.shutdown(tcp::socket::shutdown_send, ec);
  Exchanged out;
  std::array<char, 65536> chunk{};
  for (;;) {
    const std::size_t n = socket.read_some(net::buffer(chunk), out.ended_by);
    out.reply.append(chunk.data(), n);
    if (out.ended_by) break;
  }
  return out;
}

// Everything the server sent on the connection.
inline std::string exchange(unsigned short port, const std::string& bytes, const ExchangeOptions& how = {}) {
  return exchange_bytes(port, bytes, how).reply;
}

using Fields = std::vector<std::pair<http::field, std::string>>;

// One HTTP/1.1 request with `fields` as headers; the response (of up to 64 MiB), or throws
// beast::system_error when none comes within 60 s. The answer is read even when the write
// fails, since the server may refuse a request (413) before reading its whole body.
inline http::response<http::string_body> call(unsigned short port, http::verb method, const std::string& target,
                                              const Fields& fields = {}, std::string body = "",
                                              const std::string& host = "localhost") {
  net::io_context io;
  beast::tcp_stream stream(io);
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, host);
  for (const auto& [name, value] : fields) req.set(name, value);
  req.body() = std::move(body);
  req.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.skip(method == http::verb::head);
  parser.body_limit(64u << 20);
  beast::error_code result;
  stream.expires_after(std::chrono::seconds(60));
  http::async_write(stream, req, [&](beast::error_code, std::size_t) {
    http::async_read(stream, buffer, parser, [&](beast::error_code read_ec, std::size_t) { result = read_ec; });
  });
  io.run();
  if (result) throw beast::system_error(result);
  return parser.release();
}

struct Reply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// call() with the optional Content-Type and Authorization headers, reduced to a Reply.
inline Reply request(unsigned short port, http::verb method, const std::string& target, std::string body = "",
                     const std::string& content_type = "", const std::string& authorization = "") {
  Fields fields;
  if (!content_type.empty()) fields.emplace_back(http::field::content_type, content_type);
  if (!authorization.empty()) fields.emplace_back(http::field::authorization, authorization);
  const auto res = call(port, method, target, fields, std::move(body));
  return {static_cast<int>(res.result_int()), std::string(res[http::field::content_type]), res.body()};
}

// One part of a multipart/form-data body a client sends; a part with a filename is a file.
struct ClientPart {
  std::string name, filename, data, content_type = "application/octet-stream";
};

// A multipart/form-data body of `parts` (RFC 7578) separated by `boundary`.
inline std::string multipart_form(const std::vector<ClientPart>& parts, const std::string& boundary) {
  std::string body;
  for (const auto& p : parts) {
    body += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + p.name + "\"";
    if (!p.filename.empty()) body += "; filename=\"" + p.filename + "\"\r\nContent-Type: " + p.content_type;
    body += "\r\n\r\n" + p.data + "\r\n";
  }
  return body + "--" + boundary + "--\r\n";
}

}  // namespace voxtral::testing::loopback
