// The server's route table: which paths exist, which methods each accepts, and the label
// each has in /metrics. Labels come from this table only, never from the request's path,
// so the number of metric series is bounded whatever clients send.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/verb.hpp>

namespace voxtral {

enum class Endpoint { Health, Models, Model, Metrics, Transcriptions, Realtime, WebPage, Unknown };

struct Route {
  Endpoint endpoint = Endpoint::Unknown;
  std::string_view label;  // for /metrics: "/v1/models/{id}", "web", "unmatched", ...
  std::string_view allow;  // the Allow header: "GET, HEAD, OPTIONS"
  bool needs_key = false;  // under /v1/: needs the API key when one is set
  std::string model;       // Endpoint::Model: the {id}, percent-decoded (it may hold '/')
};

// The route for `path` (the target without its query). Unknown paths get Endpoint::Unknown
// and the label "unmatched".
Route match_route(std::string_view path);

// Whether `route` serves `method` (OPTIONS is answered for every known route).
bool route_allows(const Route& route, boost::beast::http::verb method);

}  // namespace voxtral
