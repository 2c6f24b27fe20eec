#include "server/http_session.h"

#include <chrono>
#include <sstream>

#include <boost/beast/websocket.hpp>

#include "server/realtime.h"
#include "server/transcription.h"
#include "server/web_assets.h"

namespace voxtral {

namespace {
constexpr std::size_t kHeaderLimit = 64 * 1024;
constexpr std::size_t kMultipartOverhead = 64 * 1024;  // form fields and part headers beside the file

std::string query_parameter(std::string_view target, std::string_view key) {
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const std::size_t amp = std::min(query.find('&'), query.size());
    const std::string_view pair = query.substr(0, amp);
    query.remove_prefix(std::min(amp + 1, query.size()));
    const std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == key) return std::string(pair.substr(eq + 1));
  }
  return "";
}
}  // namespace

std::string error_body(const std::string& message, const std::string& type, const std::string& param) {
  nlohmann::json error = {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) error["param"] = param;
  return nlohmann::json{{"error", error}}.dump();
}

bool authorized(const http::request<http::string_body>& request, const std::string& api_key) {
  if (api_key.empty()) return true;
  const auto header = request[http::field::authorization];
  if (header == "Bearer " + api_key) return true;
  // Browsers cannot set headers on a WebSocket: the web page passes the key in the query.
  return query_parameter(std::string_view(request.target().data(), request.target().size()), "api_key") == api_key;
}

HttpSession::HttpSession(tcp::socket socket, ServerContext& context)
    : stream_(std::move(socket)), context_(context) {}

void HttpSession::run() {
  net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
}

void HttpSession::read_request() {
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(context_.options.max_upload_bytes + kMultipartOverhead);
  response_done_ = false;
  on_gone_ = nullptr;
  stream_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(context_.options.idle_timeout_seconds)));
  // The header first: a client that sent "Expect: 100-continue" (curl does, for large
  // uploads) waits for our go-ahead before it sends the body.
  http::async_read_header(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec) return self->on_read(ec);
    const auto& header = self->parser_->get();
    const bool expects_continue = beast::iequals(header[http::field::expect], "100-continue");
    const auto length = self->parser_->content_length();
    if (length && *length > self->context_.options.max_upload_bytes + kMultipartOverhead) {
      return self->on_read(http::error::body_limit);  // refuse before the body is sent
    }
    auto read_body = [self] {
      http::async_read(self->stream_, self->buffer_, *self->parser_,
                       [self](beast::error_code body_ec, std::size_t) { self->on_read(body_ec); });
    };
    if (!expects_continue || self->parser_->is_done()) return read_body();
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    net::async_write(self->stream_, net::buffer(kContinue), [self, read_body](beast::error_code write_ec, std::size_t) {
      if (write_ec) return self->close();
      read_body();
    });
  });
}

void HttpSession::on_read(beast::error_code ec) {
  if (ec == http::error::body_limit) {
    keep_alive_ = false;
    endpoint_ = "upload";
    context_.metrics.error("upload_too_large");
    respond_error(http::status::payload_too_large,
                  "the request body is larger than this server's limit of " +
                      std::to_string(context_.options.max_upload_bytes >> 20) + " MiB",
                  "invalid_request_error", "file");
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
        ec != net::error::eof) {
      keep_alive_ = false;
      respond_error(http::status::bad_request, "malformed HTTP request: " + ec.message(), "invalid_request_error");
      return;
    }
    close();
    return;
  }
  route(parser_->release());
}

void HttpSession::route(http::request<http::string_body>&& request) {
  keep_alive_ = request.keep_alive();
  version_ = request.version();
  const std::string target(request.target());
  const std::string path = target.substr(0, target.find('?'));
  endpoint_ = path;
  const bool is_api = path.starts_with("/v1/");
  if (is_api && !authorized(request, context_.options.api_key)) {
    context_.metrics.error("unauthorized");
    respond_error(http::status::unauthorized, "missing or wrong API key (Authorization: Bearer <key>)",
                  "authentication_error");
    return;
  }
  if (path == "/v1/realtime") {
    if (!beast::websocket::is_upgrade(request)) {
      respond_error(http::status::upgrade_required, "/v1/realtime is a WebSocket endpoint", "invalid_request_error");
      return;
    }
    stream_.expires_never();
    start_realtime(std::move(stream_), context_, std::move(request));
    return;
  }
  if (path == "/v1/audio/transcriptions") {
    if (request.method() != http::verb::post) {
      respond_error(http::status::method_not_allowed, "use POST with multipart/form-data", "invalid_request_error");
      return;
    }
    stream_.expires_never();  // the transcription may take a while; the client may wait
    handle_transcription(shared_from_this(), std::move(request));
    return;
  }
  if (request.method() != http::verb::get && request.method() != http::verb::head) {
    respond_error(http::status::method_not_allowed, "only GET is served at " + path, "invalid_request_error");
    return;
  }
  if (path == "/health") {
    respond(http::status::ok, "application/json",
            nlohmann::json{{"status", "ok"}, {"model", context_.options.model_id},
                           {"backend", context_.engine.model().backend().name()}}
                .dump());
  } else if (path == "/v1/models") {
    nlohmann::json model = {{"id", context_.options.model_id}, {"object", "model"}, {"created", 0},
                            {"owned_by", "voxtral"}};
    respond(http::status::ok, "application/json",
            nlohmann::json{{"object", "list"}, {"data", nlohmann::json::array({model})}}.dump());
  } else if (path == "/metrics") {
    respond(http::status::ok, "text/plain; version=0.0.4",
            context_.metrics.prometheus(context_.engine.counters()));
  } else if (const WebAsset* asset = find_web_asset(path)) {
    respond(http::status::ok, std::string(asset->content_type), std::string(asset->data));
  } else {
    respond_error(http::status::not_found, "no such endpoint: " + path, "invalid_request_error");
  }
}

void HttpSession::respond(http::status status, const std::string& content_type, std::string body) {
  if (closed_) return;
  context_.metrics.request(endpoint_, static_cast<int>(status));
  http::response<http::string_body> response{status, version_};
  response.set(http::field::server, "voxtral-server");
  response.set(http::field::content_type, content_type);
  response.keep_alive(keep_alive_);
  response.body() = std::move(body);
  response.prepare_payload();
  std::ostringstream bytes;
  bytes << response;
  response_done_ = true;
  write(bytes.str());
}

void HttpSession::respond_error(http::status status, const std::string& message, const std::string& type,
                                const std::string& param) {
  respond(status, "application/json", error_body(message, type, param));
}

void HttpSession::begin_events() {
  context_.metrics.request(endpoint_, 200);
  http::response<http::empty_body> response{http::status::ok, version_};
  response.set(http::field::server, "voxtral-server");
  response.set(http::field::content_type, "text/event-stream");
  response.set(http::field::cache_control, "no-cache");
  response.keep_alive(keep_alive_);
  response.chunked(true);
  std::ostringstream bytes;
  bytes << response.base();
  write(bytes.str());
}

void HttpSession::send_event(const nlohmann::json& event) {
  const std::string data = "data: " + event.dump() + "\n\n";
  std::ostringstream chunk;
  chunk << std::hex << data.size() << "\r\n" << data << "\r\n";
  write(chunk.str());
}

void HttpSession::end_events() {
  response_done_ = true;
  write("0\r\n\r\n");
}

void HttpSession::watch_for_disconnect(std::function<void()> on_gone) {
  on_gone_ = std::move(on_gone);
  // A read that ends in EOF or an error means the client left. Bytes that do arrive (a
  // pipelined request) stay in the buffer for the next request.
  watching_ = true;
  stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](beast::error_code ec, std::size_t n) {
    self->watching_ = false;
    self->buffer_.commit(n);
    if (self->closed_) {  // close() left the draining to this read
      if (!ec) self->drain();
      else self->stream_.close();
      return;
    }
    if (std::exchange(self->read_after_watch_, false)) {  // the response is out: next request
      self->read_request();
      return;
    }
    if (ec == net::error::operation_aborted || !self->on_gone_) return;
    if (ec) {
      auto gone = std::move(self->on_gone_);
      self->on_gone_ = nullptr;
      gone();
      self->close();
    }
  });
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
    if (keep_alive_) {
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
  stream_.expires_after(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(context_.options.idle_timeout_seconds)));
  net::async_write(stream_, net::buffer(out_.front()),
                   [self = shared_from_this()](beast::error_code ec, std::size_t) {
                     self->backlog_ -= self->out_.front().size();
                     self->out_.pop_front();
                     if (self->closed_) {
                       self->writing_ = false;
                       return;
                     }
                     if (ec) {
                       if (self->on_gone_) {
                         auto gone = std::move(self->on_gone_);
                         self->on_gone_ = nullptr;
                         gone();
                       }
                       self->close();
                       return;
                     }
                     self->write_next();
                   });
}

void HttpSession::close() {
  if (closed_) return;
  closed_ = true;
  // Unsent output is dropped, except a buffer an in-flight write still reads.
  out_.erase(out_.begin() + (writing_ && !out_.empty() ? 1 : 0), out_.end());
  // Half-close, then read and drop what the client still sends (e.g. the rest of an upload
  // refused as too large) until it closes too: closing with unread input would reset the
  // connection and could destroy the error response before the client reads it.
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(std::chrono::seconds(5));
  if (!watching_) drain();  // else the pending watch read continues into drain()
}

void HttpSession::drain() {
  stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
    if (ec) {
      self->stream_.close();
      return;
    }
    self->drain();
  });
}

}  // namespace voxtral
