// Client bytes in server messages. A request's text (a form value, a file name, a header)
// may be any bytes; it appears in an error message only where it helps the client find
// the problem, and then as short, valid UTF-8 without control characters.
#pragma once

#include <string>
#include <string_view>

#include "core/utf8.h"

namespace voxtral {

inline bool is_valid_utf8(std::string_view bytes) { return repair_utf8(bytes) == bytes; }

// `bytes` as valid UTF-8 (invalid sequences become U+FFFD), control characters as '?', cut
// to about `max_bytes` (at a character boundary, marked with "...").
inline std::string client_text(std::string_view bytes, std::size_t max_bytes = 64) {
  const bool cut = bytes.size() > max_bytes;
  std::string text = repair_utf8(bytes.substr(0, max_bytes + 3));
  if (cut) {
    std::size_t end = std::min(max_bytes, text.size());
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;  // not inside a character
    text.resize(end);
  }
  for (char& c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) c = '?';
  }
  return cut ? text + "..." : text;
}

}  // namespace voxtral
