// The client half of vLLM's realtime protocol (/v1/realtime): each WebSocket message is one
// JSON event. Parsing, type checks and dispatch live here, apart from the socket and the
// engine, so the fuzzer (fuzz/fuzz_realtime_event.cc) and tests drive them directly.
//
// Client events and their fields (any other field is ignored):
//   session.update            model: string or null (optional); language, prompt: string or
//                             null (optional; checked, not used: the model takes neither);
//                             additions of ours, absent from vLLM's protocol (its audio is
//                             16 kHz, without turn detection):
//                             sample_rate: integer Hz of the appends that follow, 8000 to
//                               192000 (default 16000; resampled to 16 kHz);
//                             turn_detection: OpenAI's {type: "server_vad", threshold,
//                               prefix_padding_ms, silence_duration_ms} or null (off, the
//                               default): each turn the server detects ends an utterance
//   input_audio_buffer.append audio: string, required; base64 (RFC 4648) of 16-bit
//                             little-endian PCM, mono, at the session's sample rate
//   input_audio_buffer.commit final: boolean (optional, default false)
// A field of another type (`final: 1`, `"true"`, `null`) is an error naming the field.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/voice_activity.h"
#include "server/event_fields.h"

namespace voxtral {

struct VllmSessionUpdate {
  std::optional<std::string> model;
  std::optional<int> sample_rate;  // within kMinSessionRate..kMaxSessionRate (server/pcm.h)
  bool turn_detection_given = false;
  std::optional<TurnDetectionOptions> turn_detection;  // given as null: off
};

class RealtimeEventSink {
 public:
  virtual ~RealtimeEventSink() = default;
  virtual void on_session_update(const VllmSessionUpdate& update) = 0;
  // Samples in [-1, 1), mono, at the session's rate; never empty.
  virtual void on_append(std::vector<float> samples) = 0;
  virtual void on_commit(bool final) = 0;
  virtual void on_error(const RealtimeError& error) = 0;
};

// Parses one client message and calls exactly one method of `sink`. Throws only what the
// sink throws (or std::bad_alloc).
void dispatch_realtime_event(std::string_view message, RealtimeEventSink& sink);

}  // namespace voxtral
