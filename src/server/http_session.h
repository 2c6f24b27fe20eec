// One HTTP connection: reads requests (with size and time limits), answers the small
// endpoints, hands transcriptions to transcription.cc and WebSocket upgrades to realtime.cc.
// All its methods run on the connection's strand; other threads use post().
#pragma once

#include <array>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>  // before Asio: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "server/routes.h"
#include "server/server.h"

namespace voxtral {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

// {"error": {"message", "type", "param", "code"}}, as OpenAI's API answers: `type` is one of
// OpenAI's (invalid_request_error, server_error), `code` a machine-readable detail
// (invalid_api_key, model_not_found) or "" for null.
std::string error_body(const std::string& message, const std::string& type, const std::string& param = "",
                       const std::string& code = "");

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, ServerContext& context);
  void run();

  // A complete response; the connection then reads the next request (or closes).
  void respond(http::status status, const std::string& content_type, std::string body);
  void respond_error(http::status status, const std::string& message, const std::string& type,
                     const std::string& param = "", const std::string& code = "");
  // Server-sent events: headers, then one "data: <json>" event per call, then the end.
  void begin_events();
  void send_event(const nlohmann::json& event);
  void end_events();
  // Calls `gone` once if the client closes the connection while its request is processed.
  void watch_for_disconnect(std::function<void()> on_gone);
  // Bytes written but not yet taken by the client (a slow reader's backlog).
  std::size_t backlog() const { return backlog_; }
  // Runs `fn` on this connection's strand (from any thread).
  void post(std::function<void()> fn) { net::post(stream_.get_executor(), std::move(fn)); }
  ServerContext& context() { return context_; }

 private:
  void read_request();
  void on_read(beast::error_code ec);
  void route(http::request<http::string_body>&& request);
  // Refuses what route() must not serve (bad framing, foreign Host or Origin, unknown path,
  // method, API key) and answers CORS preflights; true when it answered.
  bool refused(const http::request<http::string_body>& request, const Route& route);
  std::string local_authority();  // "127.0.0.1:8000": where this connection arrived
  void write(std::string bytes);
  void write_next();
  void close();
  void drain();

  beast::tcp_stream stream_;
  ServerContext& context_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  std::string endpoint_ = "unmatched";  // for the metrics: a label from the route table
  bool head_ = false;     // the current request is HEAD: its response has no body
  bool raw_events_ = false;  // server-sent events to an HTTP/1.0 client: unchunked, until close
  http::fields extra_headers_;  // Allow, CORS: added to the current request's response
  std::deque<std::string> out_;
  std::size_t backlog_ = 0;
  bool writing_ = false;
  bool response_done_ = false;  // the last bytes of the current response are queued
  bool closed_ = false;
  bool watching_ = false;  // a disconnect-watch read is pending
  bool read_after_watch_ = false;  // read the next request when that read completes
  std::array<char, 4096> scratch_{};  // what drain() reads and drops
  std::function<void()> on_gone_;
};

}  // namespace voxtral
