// The client half of the realtime protocol (vLLM's /v1/realtime): each WebSocket message is
// one JSON event. Parsing, type checks and dispatch live here, apart from the socket and the
// engine, so the fuzzer (fuzz/fuzz_realtime_event.cc) and tests drive them directly.
//
// Client events and their fields (any other field is ignored):
//   session.update            model: string or null (optional); language, prompt: string or
//                             null (optional; checked, not used: the model takes neither)
//   input_audio_buffer.append audio: string, required; base64 (RFC 4648) of 16-bit
//                             little-endian PCM, mono, 16 kHz
//   input_audio_buffer.commit final: boolean (optional, default false)
// A field of another type (`final: 1`, `"true"`, `null`) is an error naming the field.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace voxtral {

// What the server answers a refused client event with: an `error` event.
struct RealtimeError {
  std::string message;  // for people; quotes client text only where it helps, shortened
  std::string code;     // for programs: invalid_json, invalid_event, unknown_event, invalid_type, invalid_audio
  std::string param;    // the offending field, when there is one
};

class RealtimeEventSink {
 public:
  virtual ~RealtimeEventSink() = default;
  virtual void on_session_update(const std::optional<std::string>& model) = 0;
  // Samples in [-1, 1), 16 kHz mono; never empty.
  virtual void on_append(std::vector<float> samples) = 0;
  virtual void on_commit(bool final) = 0;
  virtual void on_error(const RealtimeError& error) = 0;
};

// Parses one client message and calls exactly one method of `sink`. Throws only what the
// sink throws (or std::bad_alloc).
void dispatch_realtime_event(std::string_view message, RealtimeEventSink& sink);

// Client text for an error message: at most `max_bytes` bytes, "..." when cut (may split a
// UTF-8 sequence: serialize with json_text()).
std::string shortened(std::string_view text, std::size_t max_bytes = 64);

}  // namespace voxtral
