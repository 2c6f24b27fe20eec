#include "server/auth.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <boost/asio/ip/address.hpp>

#include "core/error.h"

namespace voxtral {

namespace http = boost::beast::http;

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

boost::beast::string_view beast_view(std::string_view s) { return {s.data(), s.size()}; }

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// The host of a Host header value: "[::1]:8000" -> "::1", "Example.COM.:80" -> "example.com".
std::string host_name(std::string_view authority) {
  std::string_view host = authority;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') == std::string_view::npos ? host.size() : host.find(']') - 1);
  } else if (const auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (host.ends_with('.')) host.remove_suffix(1);  // "localhost." is "localhost"
  return lowercase(host);
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  boost::asio::ip::make_address(host, ec);
  return !ec;
}

// "HTTP://Example.com:8000/" -> "http://example.com:8000"; the scheme's default port is
// dropped ("https://a.example:443" -> "https://a.example"), as browsers send it.
std::string normalized_origin(std::string_view origin) {
  origin = trim(origin);
  while (origin.ends_with('/')) origin.remove_suffix(1);
  std::string out = lowercase(origin);
  if (out.starts_with("https://") && out.ends_with(":443")) out.resize(out.size() - 4);
  if (out.starts_with("http://") && out.ends_with(":80")) out.resize(out.size() - 3);
  return out;
}

}  // namespace

bool constant_time_equal(std::string_view expected, std::string_view given) {
  // Every byte of `given` is compared (against the expected bytes, cycled), whatever the
  // lengths; a length difference counts as a difference.
  volatile unsigned char difference = expected.size() == given.size() ? 0 : 1;
  if (expected.empty()) return given.empty();
  for (std::size_t i = 0; i < given.size(); ++i) {
    difference = static_cast<unsigned char>(difference | (static_cast<unsigned char>(expected[i % expected.size()]) ^
                                                          static_cast<unsigned char>(given[i])));
  }
  return difference == 0;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    const int hi = hex_digit(text[i + 1]), lo = hex_digit(text[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

std::string query_parameter(std::string_view target, std::string_view key) {
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    const std::size_t amp = std::min(query.find('&'), query.size());
    const std::string_view pair = query.substr(0, amp);
    query.remove_prefix(std::min(amp + 1, query.size()));
    const std::size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == key) return percent_decode(pair.substr(eq + 1)).value_or("");
  }
  return "";
}

KeyCheck check_api_key(const http::request<http::string_body>& request, const std::string& api_key) {
  if (api_key.empty()) return KeyCheck::Ok;
  bool presented = false;
  const auto found = request.find(http::field::authorization);
  if (found != request.end()) {
    presented = true;
    // RFC 9110 section 11.1: the scheme is case-insensitive; one or more spaces follow it.
    const std::string_view value = trim(std::string_view(found->value().data(), found->value().size()));
    const std::size_t space = std::min(value.find_first_of(" \t"), value.size());
    if (boost::beast::iequals(beast_view(value.substr(0, space)), "Bearer") &&
        constant_time_equal(api_key, trim(value.substr(space)))) {
      return KeyCheck::Ok;
    }
  }
  const std::string_view target(request.target().data(), request.target().size());
  const std::string from_query = query_parameter(target, "api_key");
  if (!from_query.empty()) {
    presented = true;
    if (constant_time_equal(api_key, from_query)) return KeyCheck::Ok;
  }
  return presented ? KeyCheck::Wrong : KeyCheck::Missing;
}

std::string read_api_key_file(const std::string& path) {
  constexpr std::size_t kLongest = 4096;
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) fail(path, cat("cannot read the API key file: ", ec.message()));
  // A FIFO or a device would block the start or never end; secrets managers write files.
  if (!std::filesystem::is_regular_file(status)) fail(path, "the API key file is not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot read the API key file");
  std::string key;
  std::getline(in, key);  // the first line; what follows it (a comment, a second key) is not read
  if (in.bad()) fail(path, "cannot read the API key file");
  if (key.size() > kLongest) fail(path, cat("the API key file's first line is longer than ", kLongest, " bytes"));
  if (!key.empty() && key.back() == '\r') key.pop_back();  // written on Windows
  if (key.empty()) fail(path, "the API key file's first line is empty");
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u == 0x7f) {
      fail(path, "the API key (the file's first line) must be visible characters, without spaces or tabs");
    }
  }
  return key;
}

bool host_allowed(std::string_view host_header, const ServerOptions& options) {
  if (!options.api_key.empty() || host_header.empty()) return true;
  const std::string host = host_name(host_header);
  if (is_ip_literal(host) || host == "localhost" || host.ends_with(".localhost")) return true;
  // LAN names (a single label such as "gpubox", or mDNS's "gpubox.local") are answered only
  // by the user's own network; a rebinding attack needs a public name the attacker controls.
  // Also the names reserved for private networks, which no public DNS answers: home.arpa
  // (RFC 8375), .internal (ICANN 2024), and the customary .lan and .localdomain.
  if (host.find('.') == std::string::npos || host.ends_with(".local") || host.ends_with(".home.arpa") ||
      host.ends_with(".internal") || host.ends_with(".lan") || host.ends_with(".localdomain")) {
    return true;
  }
  if (host == host_name(options.host)) return true;
  for (const auto& allowed : options.allowed_hosts) {
    if (allowed == "*" || host_name(allowed) == host) return true;
  }
  return false;
}

bool origin_allowed(std::string_view origin, std::string_view host_header, const ServerOptions& options,
                    std::string_view local_authority) {
  if (origin.empty()) return true;
  const std::string wanted = normalized_origin(origin);
  for (const auto& allowed : options.allowed_origins) {
    if (allowed == "*" || normalized_origin(allowed) == wanted) return true;
  }
  // The server's own origin: a page it served itself (any scheme, for a TLS proxy in front).
  const std::size_t scheme_end = wanted.find("://");
  if (scheme_end == std::string::npos) return false;
  const std::string authority = wanted.substr(scheme_end + 3);
  return (!host_header.empty() && authority == lowercase(trim(host_header))) ||
         (!local_authority.empty() && authority == lowercase(local_authority));
}

std::string check_allowed_origin(std::string_view origin) {
  if (origin == "*") return "";
  const std::string normal = normalized_origin(origin);
  const std::size_t scheme_end = normal.find("://");
  if (scheme_end == std::string::npos || (normal.substr(0, scheme_end) != "http" && normal.substr(0, scheme_end) != "https")) {
    return "an origin starts with http:// or https:// (as a browser sends it: https://app.example.com)";
  }
  const std::string authority = normal.substr(scheme_end + 3);
  if (authority.empty() || authority.find_first_of("/?#@ ") != std::string::npos) {
    return "an origin is scheme://host[:port], without a path (https://app.example.com)";
  }
  return "";
}

void set_cors_headers(http::fields& fields, std::string_view origin) {
  if (origin.empty()) return;
  fields.set(http::field::access_control_allow_origin, beast_view(origin));
  fields.set(http::field::vary, "Origin");
}

void set_preflight_headers(http::fields& fields, std::string_view origin, std::string_view allow,
                           std::string_view requested_headers) {
  fields.set(http::field::access_control_allow_origin, beast_view(origin));
  fields.set(http::field::access_control_allow_methods, beast_view(allow));
  // The headers the page asked for, if they are header names (OpenAI's browser SDK sends
  // several x-stainless-* headers besides Authorization and Content-Type).
  const bool names_only = std::all_of(requested_headers.begin(), requested_headers.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == ',' || c == ' ';
  });
  fields.set(http::field::access_control_allow_headers,
             beast_view(names_only && !requested_headers.empty() ? requested_headers : "Authorization, Content-Type"));
  fields.set(http::field::access_control_max_age, "600");
  fields.set(http::field::vary, "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
}

}  // namespace voxtral
