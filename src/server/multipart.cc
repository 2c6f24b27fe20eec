#include "server/multipart.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"
#include "server/client_text.h"

namespace voxtral {

namespace {

constexpr std::string_view kSource = "multipart body";
// OpenAI's form has a handful of fields; a body of a million empty parts is not a form.
constexpr std::size_t kMaxParts = 100;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The value of `key` in a header's parameters ("form-data; name=\"file\"; filename=x.wav").
std::string parameter(std::string_view header, std::string_view key) {
  std::size_t at = header.find(';');
  while (at != std::string_view::npos) {
    std::string_view rest = header.substr(at + 1);
    const std::size_t eq = rest.find('=');
    if (eq == std::string_view::npos) return "";
    const std::string name = lower(trim(rest.substr(0, eq)));
    rest = trim(rest.substr(eq + 1));
    std::string value;
    std::size_t consumed = 0;
    if (!rest.empty() && rest.front() == '"') {
      std::size_t i = 1;
      for (; i < rest.size() && rest[i] != '"'; ++i) {
        if (rest[i] == '\\' && i + 1 < rest.size()) ++i;
        value.push_back(rest[i]);
      }
      consumed = std::min(i + 1, rest.size());
    } else {
      consumed = std::min(rest.find(';'), rest.size());
      value = std::string(trim(rest.substr(0, consumed)));
    }
    if (name == key) return value;
    const std::size_t next = rest.substr(consumed).find(';');
    if (next == std::string_view::npos) return "";
    at = static_cast<std::size_t>(rest.data() - header.data()) + consumed + next;
  }
  return "";
}

}  // namespace

std::string multipart_boundary(std::string_view content_type) {
  if (!lower(trim(content_type)).starts_with("multipart/form-data")) {
    fail("request", cat("Content-Type must be multipart/form-data, not \"", client_text(content_type), "\""));
  }
  std::string boundary = parameter(content_type, "boundary");
  if (boundary.empty() || boundary.size() > 200) fail("request", "multipart/form-data without a valid boundary");
  return boundary;
}

std::vector<FormPart> parse_multipart(std::string_view body, std::string_view boundary) {
  const std::string delimiter = cat("--", boundary);
  std::size_t at = body.find(delimiter);
  if (at == std::string_view::npos) fail(kSource, "no part starts with the boundary");
  std::vector<FormPart> parts;
  for (;;) {
    at += delimiter.size();
    if (body.substr(at, 2) == "--") return parts;  // the closing delimiter
    if (body.substr(at, 2) != "\r\n") fail(kSource, "a boundary line does not end with CRLF");
    if (parts.size() == kMaxParts) fail(kSource, cat("more than ", kMaxParts, " parts"));
    at += 2;
    const std::size_t headers_end = body.find("\r\n\r\n", at);
    if (headers_end == std::string_view::npos) fail(kSource, "a part's headers do not end");
    FormPart part;
    bool disposition = false;
    for (std::string_view headers = body.substr(at, headers_end - at); !headers.empty();) {
      const std::size_t eol = std::min(headers.find("\r\n"), headers.size());
      const std::string_view line = headers.substr(0, eol);
      headers.remove_prefix(std::min(eol + 2, headers.size()));
      const std::size_t colon = line.find(':');
      if (colon == std::string_view::npos) fail(kSource, cat("malformed part header \"", client_text(line), "\""));
      const std::string name = lower(trim(line.substr(0, colon)));
      const std::string_view value = trim(line.substr(colon + 1));
      if (name == "content-disposition") {
        if (!lower(value).starts_with("form-data")) fail(kSource, "a part is not form-data");
        part.name = parameter(value, "name");
        part.filename = parameter(value, "filename");
        disposition = true;
      } else if (name == "content-type") {
        part.content_type = std::string(value);
      }
    }
    if (!disposition || part.name.empty()) fail(kSource, "a part has no Content-Disposition name");
    const std::size_t data_start = headers_end + 4;
    const std::size_t next = body.find(cat("\r\n", delimiter), data_start);
    if (next == std::string_view::npos) fail(kSource, cat("part \"", client_text(part.name), "\" is cut off (no closing boundary)"));
    part.data = body.substr(data_start, next - data_start);
    parts.push_back(std::move(part));
    at = next + 2;
  }
}

}  // namespace voxtral
