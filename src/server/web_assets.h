// The web page's files (web/), compiled into the server by cmake/embed_web.cmake.
#pragma once

#include <string_view>

namespace voxtral {

struct WebAsset {
  std::string_view path;  // "/index.html"
  std::string_view content_type;
  std::string_view data;
};

// The file served at `path` ("/" is /index.html), or nullptr.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace voxtral
