#include "server/wyoming.h"

#include "core/error.h"
#include "server/http_session.h"
#include "server/wyoming_session.h"

#ifndef VOXTRAL_VERSION
#define VOXTRAL_VERSION "0"
#endif

namespace voxtral {

namespace {

// The languages of Voxtral Realtime (Mistral's model card: 13 languages), as the ISO 639-1
// codes Home Assistant matches its pipeline's language against.
const char* const kLanguages[] = {"ar", "de", "en", "es", "fr", "hi", "it", "ja", "ko", "nl", "pt", "ru", "zh"};

}  // namespace

nlohmann::json wyoming_info(const ServerContext& context) {
  const nlohmann::json mistral = {{"name", "Mistral AI"}, {"url", "https://mistral.ai"}};
  nlohmann::json model = {{"name", context.options.model_id},
                          {"description", "Voxtral Realtime (" + context.options.model_id + ")"},
                          {"attribution", mistral},
                          {"installed", true},
                          {"version", nullptr},
                          {"languages", kLanguages}};
  nlohmann::json program = {{"name", "voxtral"},
                            {"description", "Voxtral Realtime speech to text (voxtral-server)"},
                            {"attribution", mistral},
                            {"installed", true},
                            {"version", VOXTRAL_VERSION},
                            {"models", {model}},
                            {"supports_transcript_streaming", true},
                            // The client decides when a command ends (Home Assistant's VAD).
                            {"requires_external_vad", true}};
  return {{"asr", {program}}};
}

struct WyomingListener::Impl {
  Impl(net::io_context& io_context, ServerContext& server) : io(io_context), context(server), acceptor(net::make_strand(io_context)) {}

  void accept() {
    acceptor.async_accept(net::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
      if (!acceptor.is_open()) return;
      if (!ec) start_wyoming_session(std::move(socket), context);
      accept();
    });
  }

  net::io_context& io;
  ServerContext& context;
  tcp::acceptor acceptor;
  unsigned short port = 0;
};

WyomingListener::WyomingListener(net::io_context& io, ServerContext& context)
    : impl_(std::make_unique<Impl>(io, context)) {}

WyomingListener::~WyomingListener() = default;

void WyomingListener::start(const std::string& host, unsigned short port) {
  auto& s = *impl_;
  const std::string where = cat("--wyoming ", host, ":", port);
  beast::error_code ec;
  const auto address = net::ip::make_address(host, ec);
  if (ec) fail(where, cat("not an IP address: ", ec.message()));
  const tcp::endpoint endpoint(address, port);
  s.acceptor.open(endpoint.protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) fail(where, cat("cannot listen: ", ec.message()));
  s.port = s.acceptor.local_endpoint().port();
  s.accept();
}

void WyomingListener::close() {
  net::post(impl_->acceptor.get_executor(), [&s = *impl_] {
    beast::error_code ignored;
    s.acceptor.close(ignored);
  });
}

unsigned short WyomingListener::port() const { return impl_->port; }

}  // namespace voxtral
