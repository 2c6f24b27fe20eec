#include "core/utf8.h"

namespace voxtral {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Number of continuation bytes a lead byte announces, or -1 if it cannot start a sequence.
int continuation_count(unsigned char lead) {
  if (lead < 0x80) return 0;
  if (lead >= 0xC2 && lead <= 0xDF) return 1;
  if (lead >= 0xE0 && lead <= 0xEF) return 2;
  if (lead >= 0xF0 && lead <= 0xF4) return 3;
  return -1;
}

// The valid range of the byte after `lead`; later continuation bytes are always 80..BF.
// These narrower ranges exclude overlong forms, surrogates and code points past U+10FFFF.
bool valid_second(unsigned char lead, unsigned char byte) {
  switch (lead) {
    case 0xE0: return byte >= 0xA0 && byte <= 0xBF;
    case 0xED: return byte >= 0x80 && byte <= 0x9F;
    case 0xF0: return byte >= 0x90 && byte <= 0xBF;
    case 0xF4: return byte >= 0x80 && byte <= 0x8F;
    default: return byte >= 0x80 && byte <= 0xBF;
  }
}

}  // namespace

std::string Utf8Repair::push(std::string_view bytes) {
  std::string input = std::move(pending_);
  pending_.clear();
  input.append(bytes);

  std::string out;
  out.reserve(input.size());
  std::size_t i = 0;
  while (i < input.size()) {
    const auto lead = static_cast<unsigned char>(input[i]);
    const int needed = continuation_count(lead);
    if (needed == 0) {
      out.push_back(static_cast<char>(lead));
      ++i;
      continue;
    }
    if (needed < 0) {
      out.append(kReplacement);
      ++i;
      continue;
    }
    // Accept continuation bytes while they fit; the longest valid prefix is the
    // "maximal subpart" that one U+FFFD replaces when the sequence breaks off.
    std::size_t j = i + 1;
    int have = 0;
    while (have < needed && j < input.size()) {
      const auto byte = static_cast<unsigned char>(input[j]);
      const bool ok = have == 0 ? valid_second(lead, byte) : (byte >= 0x80 && byte <= 0xBF);
      if (!ok) break;
      ++have;
      ++j;
    }
    if (have == needed) {
      out.append(input, i, j - i);
    } else if (j == input.size()) {
      pending_.assign(input, i, j - i);  // may still complete with the next push
    } else {
      out.append(kReplacement);
    }
    i = j;
  }
  return out;
}

std::string Utf8Repair::finish() {
  if (pending_.empty()) return {};
  pending_.clear();
  return std::string(kReplacement);
}

std::string repair_utf8(std::string_view bytes) {
  Utf8Repair repair;
  std::string out = repair.push(bytes);
  out += repair.finish();
  return out;
}

}  // namespace voxtral
