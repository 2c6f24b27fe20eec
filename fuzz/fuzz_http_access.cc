// Feeds arbitrary bytes, parsed as an HTTP request, to the server's access decisions: the
// route table, the API key check (header and percent-encoded query), the Host and Origin
// checks and the CORS headers, and /metrics' label escaping. No exception may escape and
// no sanitizer may report; the answers must also be consistent: a route's label is one of
// the table's, escaped labels hold no raw line feed or unescaped quote, and the constant-
// time comparison agrees with ==.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "server/auth.h"
#include "server/metrics.h"
#include "server/routes.h"

namespace {

namespace http = boost::beast::http;

void check(bool ok) {
  if (!ok) std::abort();
}

std::string_view view(boost::beast::string_view s) { return {s.data(), s.size()}; }

void exercise(const http::request<http::string_body>& request) {
  static const std::set<std::string_view> kLabels = {"/health",         "/metrics", "/v1/models", "/v1/audio/transcriptions",
                                                     "/v1/realtime",    "web",      "unmatched",  "/v1/models/{id}"};
  const std::string_view target = view(request.target());
  const voxtral::Route route = voxtral::match_route(target.substr(0, target.find('?')));
  check(kLabels.contains(route.label));
  (void)voxtral::route_allows(route, request.method());
  (void)voxtral::check_api_key(request, "k/ey+=");
  (void)voxtral::check_api_key(request, "");
  voxtral::ServerOptions options;
  const std::string_view host = view(request[http::field::host]);
  const std::string_view origin = view(request[http::field::origin]);
  check(voxtral::host_allowed(host, options) || !host.empty());
  (void)voxtral::origin_allowed(origin, host, options);
  options.api_key = "key";
  options.allowed_origins = {"https://app.example", "*"};
  options.allowed_hosts = {"voxtral.example"};
  check(voxtral::host_allowed(host, options));
  check(voxtral::origin_allowed(origin, host, options));
  http::fields fields;
  voxtral::set_cors_headers(fields, origin);
  voxtral::set_preflight_headers(fields, origin, route.allow, view(request[http::field::access_control_request_headers]));
  const std::string escaped = voxtral::prometheus_label_value(target);
  check(escaped.find('\n') == std::string::npos);
  for (std::size_t i = escaped.find('"'); i != std::string::npos; i = escaped.find('"', i + 1)) {
    std::size_t backslashes = 0;
    while (backslashes < i && escaped[i - 1 - backslashes] == '\\') ++backslashes;
    check(backslashes % 2 == 1);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Any split of the bytes compares as == does.
  const std::string_view a = bytes.substr(0, bytes.size() / 2), b = bytes.substr(bytes.size() / 2);
  check(voxtral::constant_time_equal(a, b) == (a == b));
  if (auto decoded = voxtral::percent_decode(bytes)) check(decoded->size() <= bytes.size());
  (void)voxtral::query_parameter(bytes, "api_key");

  http::request_parser<http::string_body> parser;
  parser.eager(true);
  parser.header_limit(64 * 1024);
  parser.body_limit(64 * 1024);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec && ec != http::error::need_more) return 0;
  if (!parser.is_header_done()) return 0;
  exercise(parser.get());
  return 0;
}
