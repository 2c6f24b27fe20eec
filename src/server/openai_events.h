// The client half of OpenAI's realtime transcription sessions: each WebSocket message is one
// JSON event, parsed and type-checked here apart from the socket and the engine (fuzzed by
// fuzz/fuzz_openai_event.cc). Both of OpenAI's shapes are read:
//   session.update              {session: {type: "transcription", audio: {input: {format,
//                               transcription, turn_detection, noise_reduction}}}} (GA)
//   transcription_session.update {session: {input_audio_format, input_audio_transcription,
//                               turn_detection, input_audio_noise_reduction}} (beta)
// either event taking either shape's fields. Formats: "pcm16" (24 kHz), "g711_ulaw",
// "g711_alaw" (8 kHz), or {type: "audio/pcm", rate}, {type: "audio/pcmu"}, {type:
// "audio/pcma"}; OpenAI's PCM is 24 kHz only, a rate of 8000 to 192000 Hz is honoured here.
// transcription: {model, language, prompt} (strings or null; language and prompt are checked,
// not used: the model takes neither). turn_detection: server_vad or null.
//   input_audio_buffer.append   audio: base64 (required)
//   input_audio_buffer.commit, input_audio_buffer.clear
// Every event may carry event_id (a string), which an error about it quotes back. Fields of
// the wrong type are errors naming their path ("session.audio.input.format.rate").
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "runtime/voice_activity.h"
#include "server/event_fields.h"
#include "server/pcm.h"

namespace voxtral {

// OpenAI's "pcm16": 24 kHz mono PCM16, also what a session that names no format gets.
inline constexpr InputAudioFormat kOpenAiDefaultFormat{PcmEncoding::Pcm16, 24000};

struct OpenAiSessionUpdate {
  bool beta = false;  // transcription_session.update: answer transcription_session.updated
  std::optional<std::string> model;  // the transcription model asked for
  std::optional<InputAudioFormat> format;
  bool turn_detection_given = false;
  std::optional<TurnDetectionOptions> turn_detection;  // given as null: off
};

class OpenAiEventSink {
 public:
  virtual ~OpenAiEventSink() = default;
  // `event_id`: the client's, "" when it gave none.
  virtual void on_session_update(const OpenAiSessionUpdate& update, const std::string& event_id) = 0;
  // The decoded bytes of the append (not empty), in the session's format.
  virtual void on_append(std::string bytes, const std::string& event_id) = 0;
  virtual void on_commit(const std::string& event_id) = 0;
  virtual void on_clear(const std::string& event_id) = 0;
  virtual void on_error(const RealtimeError& error, const std::string& event_id) = 0;
};

// Parses one client message and calls exactly one method of `sink`. Throws only what the
// sink throws (or std::bad_alloc).
void dispatch_openai_event(std::string_view message, OpenAiEventSink& sink);

}  // namespace voxtral
