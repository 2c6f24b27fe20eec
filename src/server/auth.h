// Who may use the server: the API key (Authorization header or ?api_key=), the Host header
// (DNS rebinding) and the Origin header (web pages on other sites), and the CORS headers
// that let allowed pages call the API from a browser.
//
// Why Host and Origin: a page on any site the user visits can make the browser send
// requests to 127.0.0.1:8000 (a form POST needs no CORS preflight; a WebSocket is never
// subject to CORS), and a page on a name the attacker re-points at 127.0.0.1 ("DNS
// rebinding") is even same-origin to the browser. Browsers always send the real Origin and
// the Host of the URL, so the server refuses a foreign Origin (see origin_allowed) and,
// when no API key guards it, a Host that is not a name of this machine (see host_allowed).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http.hpp>

#include "server/server.h"

namespace voxtral {

// Compares a secret in time that depends only on `given`'s length (never on where the
// first difference is), so response times do not reveal the key byte by byte.
bool constant_time_equal(std::string_view expected, std::string_view given);

// RFC 3986 percent-decoding ('+' stays '+': the web page encodes with
// encodeURIComponent, which writes a '+' as %2B). nullopt on a malformed % escape.
std::optional<std::string> percent_decode(std::string_view text);

// The percent-decoded value of `key` in the target's query ("" when absent or malformed).
std::string query_parameter(std::string_view target, std::string_view key);

enum class KeyCheck { Ok, Missing, Wrong };

// Whether the request carries the server's API key: "Authorization: <scheme> <key>" with
// the scheme "Bearer" in any letter case, or ?api_key=<percent-encoded key> (browsers
// cannot set headers on a WebSocket). Always Ok when `api_key` is empty.
KeyCheck check_api_key(const boost::beast::http::request<boost::beast::http::string_body>& request,
                       const std::string& api_key);

// The first line of the file at `path`, without its line ending (LF or CRLF), for
// --api-key-file. Throws voxtral::Error naming the file when it is not a regular file (a
// FIFO would block the start), cannot be read, or its first line holds no key.
std::string read_api_key_file(const std::string& path);

// Whether the Host header names this server. Any Host is fine when an API key is set (the
// key is the guard). Without one: an IP literal (v4 or [v6]), "localhost" and names under
// .localhost, LAN names (one label without a dot, or under .local), the --host address, and
// --allowed-host names ("*": any); a request without Host (HTTP/1.0) is fine too.
bool host_allowed(std::string_view host_header, const ServerOptions& options);

// Whether a request with this Origin header may be served: no Origin (not a browser, or a
// same-origin GET), the server's own origin (the Origin's host:port equals the Host header,
// or `local_authority`, the address and port the connection arrived at: "127.0.0.1:8000",
// "[::1]:8000"), or one listed by --allowed-origin ("*": any).
bool origin_allowed(std::string_view origin, std::string_view host_header, const ServerOptions& options,
                    std::string_view local_authority = "");

// Why an --allowed-origin value could never match a browser's Origin header ("" if it can):
// it must be "*" or scheme://host[:port] with http or https and no path.
std::string check_allowed_origin(std::string_view origin);

// "Access-Control-Allow-Origin" and "Vary: Origin" for a response to an allowed Origin
// (nothing when `origin` is empty).
void set_cors_headers(boost::beast::http::fields& fields, std::string_view origin);

// The headers of an answer to a CORS preflight (OPTIONS with Origin and
// Access-Control-Request-Method) for an allowed origin and a route accepting `allow`.
void set_preflight_headers(boost::beast::http::fields& fields, std::string_view origin, std::string_view allow,
                           std::string_view requested_headers);

}  // namespace voxtral
