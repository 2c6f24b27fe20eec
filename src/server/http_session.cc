#include "server/http_session.h"

#include <chrono>
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

bool HttpSession::refused(const http::request<http::string_body>& request, const Route& route) {
  const ServerOptions& options = context_.options;
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

void HttpSession::route(http::request<http::string_body>&& request) {
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
  if (closed_) return;
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
  response_done_ = true;
  write(bytes.str());
}

void HttpSession::respond_error(http::status status, const std::string& message, const std::string& type,
                                const std::string& param, const std::string& code) {
  respond(status, "application/json", error_body(message, type, param, code));
}

void HttpSession::begin_events() {
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
  write(bytes.str());
}

void HttpSession::send_event(const nlohmann::json& event) {
  std::string data = "data: " + json_text(event) + "\n\n";
  if (raw_events_) return write(std::move(data));
  std::ostringstream chunk;
  chunk << std::hex << data.size() << "\r\n" << data << "\r\n";
  write(chunk.str());
}

void HttpSession::end_events() {
  response_done_ = true;
  write(raw_events_ ? "" : "0\r\n\r\n");  // HTTP/1.0: the close that follows ends the events
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
