#include "server/http_session.h"

#include <poll.h>

#include <chrono>
#include <cstdio>
#include <sstream>

#include <boost/beast/websocket.hpp>

#include "server/auth.h"
#include "server/json_text.h"
#include "server/realtime.h"
#include "server/transcription.h"
#include "server/web_assets.h"

namespace voxtral {

namespace {
constexpr std::size_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kMultipartOverhead = 64 * 1024;  // form fields and part headers beside the file
// Bytes a client may send ahead while its request is processed (pipelined requests); more
// wait in the socket until their turn (TCP flow control).
constexpr std::size_t kPipelineLimit = 64 * 1024;
constexpr std::size_t kReadSize = 64 * 1024;

// "0.5 MiB", "100 MiB", "12 KiB", "300 bytes": a limit as the user would write it.
std::string format_bytes(std::size_t bytes) {
  auto number = [](double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", v);
    std::string s = text;
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
    return s;
  };
  if (bytes >= (100u << 10)) return number(static_cast<double>(bytes) / (1u << 20)) + " MiB";
  if (bytes >= 1024) return number(static_cast<double>(bytes) / 1024) + " KiB";
  return std::to_string(bytes) + " bytes";
}

std::string_view view(beast::string_view s) { return {s.data(), s.size()}; }

// One entry of /v1/models, in OpenAI's shape.
nlohmann::json model_object(const std::string& name) {
  return {{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "voxtral"}};
}

}  // namespace

std::string error_body(const std::string& message, const std::string& type, const std::string& param,
                       const std::string& code) {
  nlohmann::json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) error["param"] = param;
  if (!code.empty()) error["code"] = code;
  return json_text(nlohmann::json{{"error", error}});
}

HttpSession::HttpSession(tcp::socket socket, ServerContext& context)
    : stream_(std::move(socket)),
      context_(context),
      buffer_(kHeaderLimit + kPipelineLimit + kReadSize),
      pause_timer_(stream_.get_executor()) {}

HttpSession::~HttpSession() { request_finished(); }

void HttpSession::run() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
    self->guarded("the first read", [&] { self->read_request(); });
  });
}

std::size_t HttpSession::upload_limit() const { return context_.options.max_upload_bytes + kMultipartOverhead; }

void HttpSession::read_request() {
  request_finished();
  ++request_number_;
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(upload_limit());
  parser_->get().body().hold = MemoryBudget::Hold(context_.memory);
  upload_hold_.reset();
  header_handled_ = false;
  response_done_ = response_started_ = events_ = false;
  on_gone_ = nullptr;
  body_bytes_ = 0;
  wait_deadline_ = Clock::now() + clock_seconds(context_.options.idle_timeout_seconds);
  header_deadline_ = {};
  parse_buffered();
}

// Feeds the buffered bytes to the parser, then reads more until the request is complete.
// One raw read at a time, so that each phase has its own deadline (see read_deadline()).
void HttpSession::parse_buffered() {
  while (!parser_->is_done()) {
    if (!parser_->got_some()) {  // RFC 9112 2.2: empty lines before a request line are ignored
      const auto* bytes = static_cast<const char*>(buffer_.data().data());
      std::size_t skip = 0;
      while (skip < buffer_.size() && (bytes[skip] == '\r' || bytes[skip] == '\n')) ++skip;
      buffer_.consume(skip);
    }
    if (buffer_.size() == 0) break;
    beast::error_code ec;
    const std::size_t used = parser_->put(buffer_.data(), ec);
    buffer_.consume(used);
    if (ec == http::error::need_more) break;
    if (ec) return on_read(ec);
    if (parser_->is_header_done() && !header_handled_) {
      header_handled_ = true;
      if (!on_header()) return;
      continue;
    }
    if (used == 0) break;
  }
  if (parser_->is_done()) return on_read({});
  if (!header_handled_ && header_deadline_ == Clock::time_point{} && (buffer_.size() > 0 || parser_->got_some())) {
    header_deadline_ = Clock::now() + clock_seconds(context_.options.header_timeout_seconds);
  }
  const std::size_t room = buffer_.max_size() - buffer_.size();
  if (room == 0) return on_read(http::error::header_limit);  // cannot happen: the parser bounds the header
  stream_.expires_at(read_deadline());
  reading_ = true;
  stream_.async_read_some(buffer_.prepare(std::min(room, kReadSize)),
                          [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                            self->guarded("a read", [&] {
                              self->reading_ = false;
                              self->buffer_.commit(n);
                              if (self->closed_) {  // close() left the draining to this read
                                if (!ec) self->drain();
                                else self->stream_.close();
                                return;
                              }
                              if (self->header_handled_) self->body_bytes_ += n;
                              if (ec) return self->on_read(ec);
                              self->parse_buffered();
                            });
                          });
}

// Before a request: the idle timeout. Its header: the header timeout from its first byte.
// Its body: no silence longer than the idle timeout, and on average at least the minimum
// upload rate after a grace of one idle timeout (a trickle cannot hold a connection, a
// large upload over a slow link is not cut at a fixed time).
HttpSession::Clock::time_point HttpSession::read_deadline() {
  const auto& o = context_.options;
  if (!header_handled_) return header_deadline_ == Clock::time_point{} ? wait_deadline_ : header_deadline_;
  const auto silence = Clock::now() + clock_seconds(o.idle_timeout_seconds);
  if (o.min_upload_bytes_per_second <= 0) return silence;
  const double allowed = o.idle_timeout_seconds + static_cast<double>(body_bytes_) / o.min_upload_bytes_per_second;
  return std::min(silence, body_start_ + clock_seconds(allowed));
}

bool HttpSession::on_header() {
  auto& message = parser_->get();
  version_ = message.version();
  const auto length = parser_->content_length();
  if (length && *length > upload_limit()) {
    on_read(http::error::body_limit);  // refuse before the body is sent
    return false;
  }
  // Admission by the declared size: it is taken from the budget (nothing is allocated; the
  // body grows as bytes arrive), so an accepted upload cannot fail half-way for memory.
  if (length && *length > 0 && !message.body().hold.grow(static_cast<std::size_t>(*length))) {
    on_read(boost::system::errc::make_error_code(boost::system::errc::not_enough_memory));
    return false;
  }
  if (context_.lifecycle != nullptr && context_.lifecycle->draining()) {  // refused before its body is sent
    release_body();
    keep_alive_ = false;
    endpoint_ = "shutdown";
    context_.metrics.error("shutting_down");
    respond_error(http::status::service_unavailable, "the server is shutting down", "server_error");
    return false;
  }
  // From here the request is in flight: a graceful shutdown waits for it (its body may
  // still be on the way) and serves it.
  ++context_.busy_requests;
  counted_ = true;
  body_start_ = Clock::now();
  body_bytes_ = buffer_.size();
  parser_->eager(true);
  // A client that sent "Expect: 100-continue" (curl does, for large uploads) waits for our
  // go-ahead before it sends the body.
  if (parser_->is_done() || !beast::iequals(message[http::field::expect], "100-continue")) return true;
  static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  stream_.expires_after(clock_seconds(context_.options.idle_timeout_seconds));
  net::async_write(stream_, net::buffer(kContinue), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->guarded("a write", [&] {
      if (ec) return self->close();
      self->parse_buffered();
    });
  });
  return false;
}

void HttpSession::on_read(beast::error_code ec) {
  if (ec) release_body();
  if (ec == http::error::body_limit) {
    keep_alive_ = false;
    endpoint_ = header_route_label();
    context_.metrics.error("upload_too_large");
    respond_error(http::status::payload_too_large,
                  "the request body is larger than this server's limit of " +
                      format_bytes(context_.options.max_upload_bytes) + " per file",
                  "invalid_request_error", "file");
    return;
  }
  if (ec == boost::system::errc::not_enough_memory) {
    keep_alive_ = false;
    endpoint_ = header_route_label();
    context_.metrics.error("memory_budget");
    respond_error(http::status::service_unavailable,
                  "the server holds as much upload data as its memory budget allows; try again shortly",
                  "server_error");
    return;
  }
  if (ec == http::error::header_limit) {
    keep_alive_ = false;
    respond_error(http::status::request_header_fields_too_large, "the request headers are too large",
                  "invalid_request_error");
    return;
  }
  if (ec) {  // end of stream, timeout, reset, malformed request line
    if (ec != http::error::end_of_stream && ec != beast::error::timeout && ec != net::error::connection_reset &&
        ec != net::error::eof && ec != net::error::operation_aborted) {
      keep_alive_ = false;
      respond_error(http::status::bad_request, "malformed HTTP request: " + ec.message(), "invalid_request_error");
      return;
    }
    close();
    return;
  }
  auto message = parser_->release();
  upload_hold_ = std::move(message.body().hold);
  http::request<http::string_body> request(std::move(message.base()), std::move(message.body().data));
  route(std::move(request));
}

std::string HttpSession::header_route_label() const {
  // The target is stored with the request line, before the header is done (a body over the
  // limit is refused while the header is finished).
  if (!parser_) return "unmatched";
  const auto target = parser_->get().target();
  const std::string_view path(target.data(), std::min(target.size(), std::string_view(target.data(), target.size()).find('?')));
  return std::string(match_route(path).label);
}

bool HttpSession::refused(const http::request<http::string_body>& request, const Route& route) {
  const ServerOptions& options = context_.options;
  // RFC 9112 section 3.2: an HTTP/1.1 request has exactly one Host; none, or two (which
  // could name different servers to a proxy and to us), is a 400.
  const auto hosts = std::distance(request.equal_range(http::field::host).first,
                                   request.equal_range(http::field::host).second);
  if (hosts > 1 || (hosts == 0 && request.version() >= 11)) {
    keep_alive_ = false;
    context_.metrics.error("bad_request");
    respond_error(http::status::bad_request,
                  hosts > 1 ? "the request has more than one Host header" : "an HTTP/1.1 request needs a Host header",
                  "invalid_request_error");
    return true;
  }
  // RFC 9112 section 6.3: a request whose Transfer-Encoding does not end in chunked has no
  // knowable length. Reading on would take its body for the next request (smuggling).
  if (request.find(http::field::transfer_encoding) != request.end() && !request.chunked()) {
    keep_alive_ = false;
    context_.metrics.error("bad_request");
    respond_error(http::status::bad_request, "Transfer-Encoding must end in chunked", "invalid_request_error");
    return true;
  }
  const std::string_view host = view(request[http::field::host]);
  if (route.endpoint != Endpoint::Health && !host_allowed(host, options)) {
    context_.metrics.error("host_refused");
    respond_error(http::status::forbidden,
                  "the Host header does not name this server: without an API key it serves IP addresses, "
                  "localhost, LAN names and --allowed-host names only (a guard against DNS rebinding); start it with "
                  "--allowed-host NAME or --api-key",
                  "invalid_request_error");
    return true;
  }
  const std::string_view target(request.target().data(), request.target().size());
  if (route.endpoint == Endpoint::Unknown) {
    const std::string path(target.substr(0, std::min<std::size_t>(target.find('?'), 256)));
    respond_error(http::status::not_found,
                  "Invalid URL (" + std::string(request.method_string()) + " " + path + ")",
                  "invalid_request_error");
    return true;
  }
  const std::string_view origin = view(request[http::field::origin]);
  const bool origin_ok = origin_allowed(origin, host, options, local_authority());
  if (request.method() == http::verb::options && !origin.empty() &&
      request.find(http::field::access_control_request_method) != request.end()) {  // CORS preflight
    if (!origin_ok) {
      context_.metrics.error("origin_refused");
      respond_error(http::status::forbidden, "this origin may not use the server (see --allowed-origin)",
                    "invalid_request_error");
      return true;
    }
    set_preflight_headers(extra_headers_, origin, route.allow,
                          view(request[http::field::access_control_request_headers]));
    respond(http::status::no_content, "", "");
    return true;
  }
  if (!origin_ok) {
    context_.metrics.error("origin_refused");
    respond_error(http::status::forbidden,
                  "this origin may not use the server: start it with --allowed-origin ORIGIN to allow a web "
                  "page served elsewhere",
                  "invalid_request_error");
    return true;
  }
  set_cors_headers(extra_headers_, origin);
  if (!route_allows(route, request.method())) {
    extra_headers_.set(http::field::allow, beast::string_view(route.allow.data(), route.allow.size()));
    respond_error(http::status::method_not_allowed,
                  std::string(request.method_string()) + " is not served at " + std::string(route.label) +
                      "; use " + std::string(route.allow),
                  "invalid_request_error");
    return true;
  }
  if (request.method() == http::verb::options) {
    extra_headers_.set(http::field::allow, beast::string_view(route.allow.data(), route.allow.size()));
    respond(http::status::no_content, "", "");
    return true;
  }
  if (route.needs_key) {
    const KeyCheck key = check_api_key(request, options.api_key);
    if (key != KeyCheck::Ok) {
      context_.metrics.error("unauthorized");
      extra_headers_.set(http::field::www_authenticate, "Bearer");
      if (key == KeyCheck::Missing) {
        respond_error(http::status::unauthorized,
                      "You didn't provide an API key: send it as \"Authorization: Bearer <key>\"",
                      "invalid_request_error");
      } else {
        respond_error(http::status::unauthorized, "Incorrect API key provided", "invalid_request_error", "",
                      "invalid_api_key");
      }
      return true;
    }
  }
  return false;
}

std::string HttpSession::local_authority() {
  beast::error_code ec;
  const tcp::endpoint local = stream_.socket().local_endpoint(ec);
  if (ec) return "";
  const std::string address = local.address().to_string();
  return (local.address().is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(local.port());
}

// RFC 9112 section 3.2.2: a server must accept a target in absolute form
// ("GET http://host:8000/path"), whose authority takes the place of the Host header.
static void to_origin_form(http::request<http::string_body>& request) {
  const std::string_view target(request.target().data(), request.target().size());
  for (const std::string_view scheme : {std::string_view("http://"), std::string_view("https://")}) {
    if (target.size() < scheme.size() ||
        !beast::iequals(beast::string_view(target.data(), scheme.size()), beast::string_view(scheme.data(), scheme.size()))) {
      continue;
    }
    const std::string_view rest = target.substr(scheme.size());
    const std::size_t path_start = std::min(rest.find_first_of("/?"), rest.size());
    const std::string authority(rest.substr(0, path_start));
    std::string path(rest.substr(path_start));
    if (path.empty() || path.front() == '?') path.insert(0, "/");
    request.set(http::field::host, authority);
    request.target(path);
    return;
  }
}

void HttpSession::route(http::request<http::string_body>&& request) {
  to_origin_form(request);
  keep_alive_ = request.keep_alive();
  version_ = request.version();
  head_ = request.method() == http::verb::head;
  extra_headers_.clear();
  const std::string_view target(request.target().data(), request.target().size());
  const Route route = match_route(target.substr(0, target.find('?')));
  endpoint_ = std::string(route.label);
  if (refused(request, route)) return;
  const ServerOptions& options = context_.options;
  switch (route.endpoint) {
    case Endpoint::Realtime:
      if (!beast::websocket::is_upgrade(request)) {
        extra_headers_.set(http::field::upgrade, "websocket");  // RFC 9110 section 15.5.22
        extra_headers_.set(http::field::connection, "Upgrade");
        respond_error(http::status::upgrade_required, "/v1/realtime is a WebSocket endpoint", "invalid_request_error");
        return;
      }
      stream_.expires_never();
      start_realtime(std::move(stream_), context_, std::move(request));
      return;
    case Endpoint::Transcriptions:
      stream_.expires_never();  // the transcription may take a while; the client may wait
      handle_transcription(shared_from_this(), std::move(request));
      return;
    case Endpoint::Health:
      respond(http::status::ok, "application/json",
              json_text({{"status", "ok"}, {"model", options.model_id},
                         {"backend", context_.engine.model().backend().name()}}));
      return;
    case Endpoint::Models: {
      nlohmann::json data = nlohmann::json::array();
      for (const auto& name : options.listed_models()) data.push_back(model_object(name));
      respond(http::status::ok, "application/json", json_text({{"object", "list"}, {"data", data}}));
      return;
    }
    case Endpoint::Model: {
      const auto names = options.listed_models();
      if (std::find(names.begin(), names.end(), route.model) == names.end()) {
        respond_error(http::status::not_found, "The model `" + route.model + "` does not exist", "invalid_request_error",
                      "model", "model_not_found");
        return;
      }
      respond(http::status::ok, "application/json", json_text(model_object(route.model)));
      return;
    }
    case Endpoint::Metrics:
      respond(http::status::ok, "text/plain; version=0.0.4", context_.metrics.prometheus(context_.engine.counters()));
      return;
    case Endpoint::WebPage:
      if (const WebAsset* asset = find_web_asset(target.substr(0, target.find('?')))) {
        respond(http::status::ok, std::string(asset->content_type), std::string(asset->data));
        return;
      }
      break;
    case Endpoint::Unknown:
      break;
  }
  respond_error(http::status::not_found, "no such endpoint", "invalid_request_error");
}

void HttpSession::respond(http::status status, const std::string& content_type, std::string body) {
  if (closed_ || response_done_) return;  // e.g. the shutdown abort answered first
  if (context_.lifecycle != nullptr && context_.lifecycle->draining()) keep_alive_ = false;
  context_.metrics.request(endpoint_, static_cast<int>(status));
  http::response<http::string_body> response{status, version_};
  response.set(http::field::server, "voxtral-server");
  response.set(http::field::content_type, content_type);
  for (const auto& field : extra_headers_) response.set(field.name_string(), field.value());
  extra_headers_.clear();
  response.keep_alive(keep_alive_);
  response.body() = std::move(body);
  if (status == http::status::no_content) {
    response.erase(http::field::content_type);  // RFC 9110 section 8.6: no Content-Length either
  } else {
    response.prepare_payload();
  }
  std::ostringstream bytes;
  if (std::exchange(head_, false)) {
    bytes << response.base();  // HEAD: the headers GET would send (Content-Length too), no body
  } else {
    bytes << response;
  }
  response_started_ = response_done_ = true;
  write(bytes.str());
}

void HttpSession::respond_error(http::status status, const std::string& message, const std::string& type,
                                const std::string& param, const std::string& code) {
  respond(status, "application/json", error_body(message, type, param, code));
}

void HttpSession::begin_events() {
  if (closed_ || response_started_) return;
  if (context_.lifecycle != nullptr && context_.lifecycle->draining()) keep_alive_ = false;
  context_.metrics.request(endpoint_, 200);
  http::response<http::empty_body> response{http::status::ok, version_};
  response.set(http::field::server, "voxtral-server");
  response.set(http::field::content_type, "text/event-stream");
  response.set(http::field::cache_control, "no-cache");
  for (const auto& field : extra_headers_) response.set(field.name_string(), field.value());
  extra_headers_.clear();
  // HTTP/1.0 has no chunked encoding: the events run until the connection closes.
  raw_events_ = version_ < 11;
  if (raw_events_) keep_alive_ = false;
  response.keep_alive(keep_alive_);
  response.chunked(!raw_events_);
  std::ostringstream bytes;
  bytes << response.base();
  response_started_ = events_ = true;
  write(bytes.str());
}

void HttpSession::send_event(const nlohmann::json& event) {
  if (!events_ || response_done_) return;
  std::string data = "data: " + json_text(event) + "\n\n";
  if (raw_events_) return write(std::move(data));
  std::ostringstream chunk;
  chunk << std::hex << data.size() << "\r\n" << data << "\r\n";
  write(chunk.str());
}

void HttpSession::end_events() {
  if (!events_ || response_done_) return;
  response_done_ = true;
  write(raw_events_ ? "" : "0\r\n\r\n");  // HTTP/1.0: the close that follows ends the events
}

void HttpSession::watch_for_disconnect(std::function<void()> on_gone) {
  on_gone_ = std::move(on_gone);
  if (lifecycle_id_ == 0 && context_.lifecycle != nullptr) {
    std::weak_ptr<HttpSession> weak = shared_from_this();
    lifecycle_id_ = context_.lifecycle->on_abort([weak] {
      if (auto self = weak.lock()) self->post([self] { self->abort_for_shutdown(); });
    });
  }
  if (!watching_) watch();
}

// A read while the request is processed: EOF or a reset means the client left (its work
// is cancelled); bytes that arrive (a pipelined request, a stray CRLF) stay in the buffer
// for the next request, and the watch goes on. Once kPipelineLimit bytes wait, reading
// pauses (the client's further bytes wait in the socket) and a timer asks the kernel
// whether the client hung up; the timer also keeps this connection alive meanwhile.
void HttpSession::watch() {
  if (closed_) return;
  if (buffer_.size() >= kPipelineLimit) {
    pause_timer_.expires_after(std::chrono::milliseconds(250));
    pause_timer_.async_wait([self = shared_from_this(), number = request_number_](beast::error_code ec) {
      self->guarded("a timer", [&] {
        if (ec || self->closed_ || self->response_done_ || self->request_number_ != number) return;
        pollfd fd{self->stream_.socket().native_handle(), POLLRDHUP, 0};
        if (::poll(&fd, 1, 0) == 1 && (fd.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
          return self->on_watch(net::error::eof, 0);
        }
        self->watch();
      });
    });
    return;
  }
  watching_ = true;
  stream_.expires_never();
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
    self->guarded("a read", [&] { self->on_watch(ec, n); });
  });
}

void HttpSession::on_watch(beast::error_code ec, std::size_t n) {
  watching_ = false;
  buffer_.commit(n);
  if (closed_) {  // close() left the draining to this read
    if (!ec) drain();
    else stream_.close();
    return;
  }
  if (std::exchange(read_after_watch_, false)) {  // the response is out: next request
    read_request();
    return;
  }
  if (ec == net::error::operation_aborted) return;
  if (ec && response_done_) {
    // The whole answer is queued: a client that read it and closed at once is no disconnect,
    // though its close can overtake the note that the last write completed (another I/O
    // thread). The write finishes the request (a failed write still counts the client gone).
    return;
  }
  if (ec) {
    if (auto gone = std::exchange(on_gone_, nullptr)) {
      context_.metrics.error("client_disconnected");
      gone();
    }
    close();
    return;
  }
  watch();
}

void HttpSession::abort_for_shutdown() {
  lifecycle_id_ = 0;  // abort_all() dropped the registration
  auto gone = std::exchange(on_gone_, nullptr);
  if (closed_ || response_done_ || !gone) return;
  context_.metrics.error("shutdown_abort");
  gone();
  keep_alive_ = false;
  if (events_) {
    send_event({{"type", "error"},
                {"error", {{"message", "the server shut down before this transcription finished"},
                           {"type", "server_error"}}}});
    end_events();
  } else {
    respond_error(http::status::service_unavailable, "the server shut down before this transcription finished",
                  "server_error");
  }
}

// A refused or abandoned request's bytes go back to the memory budget at once.
void HttpSession::release_body() {
  upload_hold_.reset();
  if (!parser_) return;
  auto& body = parser_->get().body();
  body.data = std::string();
  body.hold.reset();
}

void HttpSession::request_finished() {
  if (counted_) {
    counted_ = false;
    --context_.busy_requests;
  }
  if (lifecycle_id_ != 0) {
    context_.lifecycle->forget(lifecycle_id_);
    lifecycle_id_ = 0;
  }
}

void HttpSession::internal_error(const char* where, const char* what) noexcept {
  try {
    std::fprintf(stderr, "voxtral-server: internal error in %s: %s\n", where, what);
    context_.metrics.error("internal");
    if (auto gone = std::exchange(on_gone_, nullptr)) gone();
    if (closed_) return;
    if (!response_started_) {
      keep_alive_ = false;
      respond_error(http::status::internal_server_error,
                    "internal server error while handling this request (the server logged it)", "server_error");
    } else {
      close();
    }
  } catch (...) {
    beast::error_code ignored;
    stream_.socket().close(ignored);
  }
}

void HttpSession::write(std::string bytes) {
  if (closed_) return;
  backlog_ += bytes.size();
  out_.push_back(std::move(bytes));
  if (!writing_) write_next();
}

void HttpSession::write_next() {
  if (out_.empty()) {
    writing_ = false;
    if (!response_done_) return;
    on_gone_ = nullptr;
    request_finished();
    pause_timer_.cancel();
    if (keep_alive_ && !reading_) {  // (a read still pending here belongs to a request that failed)
      if (watching_) {
        // One read at a time: the next request is read once the cancelled watch completes.
        read_after_watch_ = true;
        beast::error_code ignored;
        stream_.socket().cancel(ignored);
      } else {
        read_request();
      }
    } else {
      close();
    }
    return;
  }
  writing_ = true;
  // A client that stops reading cannot hold the connection forever.
  stream_.expires_after(clock_seconds(context_.options.idle_timeout_seconds));
  net::async_write(stream_, net::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->guarded("a write", [&] {
      self->backlog_ -= self->out_.front().size();
      self->out_.pop_front();
      if (self->closed_) {
        self->writing_ = false;
        return;
      }
      if (ec) {
        if (auto gone = std::exchange(self->on_gone_, nullptr)) {
          self->context_.metrics.error("client_disconnected");
          gone();
        }
        self->close();
        return;
      }
      self->write_next();
    });
  });
}

void HttpSession::close() {
  if (closed_) return;
  closed_ = true;
  request_finished();
  release_body();
  pause_timer_.cancel();
  // Unsent output is dropped, except a buffer an in-flight write still reads.
  out_.erase(out_.begin() + (writing_ && !out_.empty() ? 1 : 0), out_.end());
  // Half-close, then read and drop what the client still sends (e.g. the rest of an upload
  // refused as too large) until it closes too: closing with unread input would reset the
  // connection and could destroy the error response before the client reads it.
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(std::chrono::seconds(5));
  if (!watching_ && !reading_) drain();  // else the pending read continues into drain()
}

void HttpSession::drain() {
  stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    self->guarded("a read", [&] {
      if (ec) {
        self->stream_.close();
        return;
      }
      self->drain();
    });
  });
}

}  // namespace voxtral
