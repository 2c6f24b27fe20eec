// Standard base64 (RFC 4648, with padding), for the realtime protocol's audio payloads.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace voxtral {

// nullopt when `text` is not valid base64 (bad characters, bad length or padding).
std::optional<std::string> base64_decode(std::string_view text);
std::string base64_encode(std::string_view bytes);

}  // namespace voxtral
