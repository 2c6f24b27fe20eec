// The framing of the Wyoming protocol (Home Assistant's protocol for voice services; the
// format is the one the protocol's README describes): every event is
//   1. a header: one line of UTF-8 JSON ending in '\n', an object with `type` (string) and
//      optionally `data` (object), `data_length` and `payload_length` (integers >= 0); other
//      fields (`version`) are ignored;
//   2. then exactly `data_length` bytes of UTF-8 JSON, an object merged over the header's
//      `data` (its fields win);
//   3. then exactly `payload_length` bytes of binary payload (PCM audio for audio-chunk).
// Parsing lives here, apart from sockets and the engine, so the fuzzer
// (fuzz/fuzz_wyoming_event.cc) and tests drive it directly.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace voxtral {

struct WyomingEvent {
  std::string type;
  nlohmann::json data = nlohmann::json::object();  // always an object
  std::string payload;
};

// What a reader holds for one event at most; past a bound the stream is refused.
struct WyomingLimits {
  std::size_t max_header_bytes = 64u << 10;  // the header line, '\n' included
  std::size_t max_data_bytes = 1u << 20;
  std::size_t max_payload_bytes = 16u << 20;
};

// Why a stream cannot be read on: the framing is lost, so the connection ends.
struct WyomingFramingError {
  std::string message;  // for people; quotes client bytes only shortened (client_text)
  // header_too_long, invalid_header, data_too_long, invalid_data, payload_too_long
  std::string code;
};

// Frames events out of a byte stream arriving in pieces of any size. Not thread-safe.
class WyomingEventReader {
 public:
  explicit WyomingEventReader(WyomingLimits limits = {}) : limits_(limits) {}

  // Takes bytes up to the end of the next event at most (the rest is for later calls) and
  // returns how many it took. It takes nothing while a complete event waits for
  // take_event(), nor after an error.
  std::size_t consume(std::string_view bytes);
  bool has_event() const { return part_ == Part::Done; }
  WyomingEvent take_event();  // has_event() must be true
  const std::optional<WyomingFramingError>& error() const { return error_; }
  // Bytes of an unfinished event held (0 between events): a stream that ends here is cut.
  bool inside_event() const { return part_ != Part::Header || !line_.empty(); }

 private:
  enum class Part { Header, Data, Payload, Done, Failed };
  void fail(std::string message, std::string code);
  void parse_header();
  void merge_data();
  void after_data();

  WyomingLimits limits_;
  Part part_ = Part::Header;
  std::string line_;  // the header line so far, then the data section
  std::size_t data_length_ = 0, payload_length_ = 0;
  WyomingEvent event_;
  std::optional<WyomingFramingError> error_;
};

// One event as bytes: the header (type, the protocol version, data_length and
// payload_length when non-zero), the data object as the data section (none when empty),
// the payload. Never throws on client text in `data` (invalid UTF-8 becomes U+FFFD).
std::string wyoming_event_bytes(std::string_view type, const nlohmann::json& data = nlohmann::json::object(),
                                std::string_view payload = {});

// The protocol version written in every header: transcript streaming (transcript-start,
// -chunk, -stop) and supports_transcript_streaming came with Wyoming 1.7.0.
inline constexpr const char* kWyomingVersion = "1.7.0";

}  // namespace voxtral
