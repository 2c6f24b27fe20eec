// The one exception type of the engine. Every message names its source (a file, "stdin",
// a tensor) and says what is wrong, so that the CLI can print it as is.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace voxtral {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws Error("<source>: <problem>").
[[noreturn]] void fail(std::string_view source, std::string_view problem);

// Concatenates its arguments (strings, chars and numbers) into one string.
template <typename... Parts>
std::string cat(const Parts&... parts);

}  // namespace voxtral

#include "core/error_inl.h"
