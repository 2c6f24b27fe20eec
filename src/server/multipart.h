// multipart/form-data bodies (RFC 7578), as OpenAI's transcription API receives them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace voxtral {

struct FormPart {
  std::string name;          // Content-Disposition name
  std::string filename;      // Content-Disposition filename ("" for plain fields)
  std::string content_type;  // the part's Content-Type ("" if none)
  std::string_view data;     // a view into the body
};

// The boundary parameter of a Content-Type header; throws voxtral::Error when the header is
// not multipart/form-data or has no boundary.
std::string multipart_boundary(std::string_view content_type);

// Splits a body into its parts; throws voxtral::Error on a malformed body.
std::vector<FormPart> parse_multipart(std::string_view body, std::string_view boundary);

}  // namespace voxtral
