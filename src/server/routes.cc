#include "server/routes.h"

#include "server/auth.h"
#include "server/web_assets.h"

namespace voxtral {

namespace {
constexpr std::string_view kGet = "GET, HEAD, OPTIONS";
constexpr std::string_view kPost = "POST, OPTIONS";
constexpr std::string_view kWebSocket = "GET, OPTIONS";
constexpr std::string_view kModelPrefix = "/v1/models/";
}  // namespace

Route match_route(std::string_view path) {
  if (path == "/health") return {Endpoint::Health, "/health", kGet, false, {}};
  if (path == "/metrics") return {Endpoint::Metrics, "/metrics", kGet, false, {}};
  if (path == "/v1/models") return {Endpoint::Models, "/v1/models", kGet, true, {}};
  if (path == "/v1/audio/transcriptions") return {Endpoint::Transcriptions, "/v1/audio/transcriptions", kPost, true, {}};
  if (path == "/v1/realtime") return {Endpoint::Realtime, "/v1/realtime", kWebSocket, true, {}};
  if (path.starts_with(kModelPrefix) && path.size() > kModelPrefix.size()) {
    // Model names may hold '/' ("mistralai/Voxtral-Mini-4B-Realtime-2602"): the rest of the
    // path is the name, as clients send it unencoded or encoded.
    if (auto id = percent_decode(path.substr(kModelPrefix.size()))) {
      return {Endpoint::Model, "/v1/models/{id}", kGet, true, std::move(*id)};
    }
  }
  if (find_web_asset(path) != nullptr) return {Endpoint::WebPage, "web", kGet, false, {}};
  return {Endpoint::Unknown, "unmatched", {}, path.starts_with("/v1/"), {}};
}

bool route_allows(const Route& route, boost::beast::http::verb method) {
  using boost::beast::http::verb;
  switch (route.endpoint) {
    case Endpoint::Unknown:
      return false;
    case Endpoint::Transcriptions:
      return method == verb::post || method == verb::options;
    case Endpoint::Realtime:
      return method == verb::get || method == verb::options;
    default:
      return method == verb::get || method == verb::head || method == verb::options;
  }
}

}  // namespace voxtral
