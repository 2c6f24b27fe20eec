// One HTTP connection: reads requests (with size, rate and memory limits), answers the small
// endpoints, hands transcriptions to transcription.cc and WebSocket upgrades to realtime.cc.
// All its methods run on the connection's strand; other threads use post().
//
// Requests are answered one at a time, in order: bytes that arrive while a request is
// processed (a pipelined request, a stray CRLF) wait in the buffer for their turn. Every
// completion handler and posted task runs inside an exception boundary: a failure ends that
// request with a JSON 500 (or closes the connection if the answer had begun), is logged to
// stderr and counted as metrics error "internal"; the server goes on.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
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
#include "server/upload_body.h"

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
  ~HttpSession();
  void run();

  // A complete response; the connection then reads the next request (or closes).
  void respond(http::status status, const std::string& content_type, std::string body);
  void respond_error(http::status status, const std::string& message, const std::string& type,
                     const std::string& param = "", const std::string& code = "");
  // Server-sent events: headers, then one "data: <json>" event per call, then the end.
  void begin_events();
  void send_event(const nlohmann::json& event);
  void end_events();
  // Calls `gone` once if the client closes or resets the connection while its request is
  // processed, or when the server's shutdown grace period ends (the request is then
  // answered 503). Bytes the client sends meanwhile are kept for the next request.
  void watch_for_disconnect(std::function<void()> on_gone);
  // The memory-budget hold of the current request's body (moves it out).
  MemoryBudget::Hold take_upload_hold() { return std::move(upload_hold_); }
  // Increases with every request on this connection: work for an earlier request compares
  // it before answering, so that it never answers a later one.
  std::uint64_t request_number() const { return request_number_; }
  // Bytes written but not yet taken by the client (a slow reader's backlog).
  std::size_t backlog() const { return backlog_; }
  // Runs `fn` on this connection's strand (from any thread), inside the exception boundary.
  void post(std::function<void()> fn) {
    net::post(stream_.get_executor(), [self = shared_from_this(), fn = std::move(fn)] {
      self->guarded("a posted task", fn);
    });
  }
  // Runs `fn`; an exception from it ends the current request (see the file comment).
  template <class F>
  void guarded(const char* where, F&& fn) noexcept {
    try {
      fn();
    } catch (const std::exception& e) {
      internal_error(where, e.what());
    } catch (...) {
      internal_error(where, "an unknown exception");
    }
  }
  ServerContext& context() { return context_; }

 private:
  using Clock = std::chrono::steady_clock;
  void read_request();
  void parse_buffered();
  bool on_header();  // false: the request was answered (refused) or waits for 100-continue
  void on_read(beast::error_code ec);
  Clock::time_point read_deadline();
  void route(http::request<http::string_body>&& request);
  // Refuses what route() must not serve (bad framing, foreign Host or Origin, unknown path,
  // method, API key) and answers CORS preflights; true when it answered.
  bool refused(const http::request<http::string_body>& request, const Route& route);
  std::string local_authority();  // "127.0.0.1:8000": where this connection arrived
  void write(std::string bytes);
  void write_next();
  void close();
  void drain();
  void watch();
  void on_watch(beast::error_code ec, std::size_t n);
  void request_finished();
  void release_body();
  void abort_for_shutdown();
  void internal_error(const char* where, const char* what) noexcept;
  std::size_t upload_limit() const;

  beast::tcp_stream stream_;
  ServerContext& context_;
  beast::flat_buffer buffer_;
  net::steady_timer pause_timer_;  // see watch()
  std::optional<http::request_parser<UploadBody>> parser_;
  // The metrics label of the request whose header parser_ holds ("unmatched" before one).
  std::string header_route_label() const;
  MemoryBudget::Hold upload_hold_;
  std::uint64_t request_number_ = 0;
  bool header_handled_ = false;
  Clock::time_point wait_deadline_;    // for the first byte of a request
  Clock::time_point header_deadline_;  // for the rest of its header
  Clock::time_point body_start_;
  std::uint64_t body_bytes_ = 0;
  bool counted_ = false;             // in context_.busy_requests
  Lifecycle::Id lifecycle_id_ = 0;   // registered for the shutdown abort (0: not)
  bool response_started_ = false;    // some bytes of the current response are queued
  bool events_ = false;              // the current response is an event stream
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
  bool reading_ = false;   // a request read is pending (one read at a time: Beast asserts it)
  bool watching_ = false;  // a disconnect-watch read is pending
  bool read_after_watch_ = false;  // read the next request when that read completes
  std::array<char, 4096> scratch_{};  // what drain() reads and drops
  std::function<void()> on_gone_;
};

}  // namespace voxtral
