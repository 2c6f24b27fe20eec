// Incremental UTF-8 repair. Token byte strings may split a character; text shown to a user
// must never contain a broken sequence. Invalid bytes become U+FFFD following the Unicode
// "maximal subpart" practice, which is also what Python's bytes.decode("utf-8", "replace")
// does, so our text equals the reference text byte for byte.
#pragma once

#include <string>
#include <string_view>

namespace voxtral {

class Utf8Repair {
 public:
  // Returns the longest prefix of (held bytes + bytes) that is complete, with invalid
  // sequences replaced; an incomplete but still valid trailing sequence is held back.
  std::string push(std::string_view bytes);
  // Flushes a held incomplete sequence as U+FFFD. The object can be reused afterwards.
  std::string finish();
  bool holding() const { return !pending_.empty(); }

 private:
  std::string pending_;
};

// One-shot: the whole byte string repaired.
std::string repair_utf8(std::string_view bytes);

}  // namespace voxtral
