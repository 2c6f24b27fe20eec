#include "core/error.h"

namespace voxtral {

void fail(std::string_view source, std::string_view problem) {
  std::string message;
  message.reserve(source.size() + 2 + problem.size());
  message.append(source).append(": ").append(problem);
  throw Error(message);
}

}  // namespace voxtral
