// JSON text for client-facing output. Client bytes (file names, form values, event fields)
// may be any bytes; nlohmann's default dump() throws type_error 316 on invalid UTF-8, which
// escaping a handler would end the process. Every server response and event is serialized
// here instead: invalid sequences become U+FFFD and this never throws.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace voxtral {

inline std::string json_text(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace voxtral
