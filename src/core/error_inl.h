#pragma once

#include <concepts>
#include <sstream>

namespace voxtral {

template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream out;
  auto put = [&out](const auto& part) {
    using T = std::decay_t<decltype(part)>;
    if constexpr (std::same_as<T, signed char> || std::same_as<T, unsigned char>) {
      out << static_cast<int>(part);
    } else {
      out << part;
    }
  };
  (put(parts), ...);
  return out.str();
}

}  // namespace voxtral
