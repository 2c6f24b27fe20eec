// The two realtime protocols over one session (server/realtime.cc): the session holds the
// socket, the engine job, the audio path (resampling, turn detection) and the turns; a
// protocol reads the client's events into calls on the session (RealtimeCore) and writes
// the session's news as its own server events (RealtimeProtocol).
//   vLLM's (vllm_protocol.cc): session.created, transcription.delta, transcription.done
//   OpenAI's transcription sessions (openai_protocol.cc): session.created/updated,
//     input_audio_buffer.committed/cleared/speech_started/speech_stopped,
//     conversation.item.input_audio_transcription.delta/completed
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/voice_activity.h"
#include "server/event_fields.h"
#include "server/pcm.h"

namespace voxtral {

struct ServerOptions;

// How the session reads its appends, as the client last set it.
struct SessionAudio {
  // Until a session update says otherwise: 16 kHz PCM16 in vLLM's protocol (its appends are
  // 16 kHz), 24 kHz PCM16 in OpenAI's (kOpenAiDefaultFormat, its "pcm16").
  InputAudioFormat format;
  std::optional<TurnDetectionOptions> turn_detection;  // none: turns end at commits only
};

// A finished turn's figures.
struct TurnUsage {
  double audio_seconds = 0;  // audio the engine transcribed for it
  long long prompt_tokens = 0, completion_tokens = 0;
};

// The session, as a protocol sees it. Each call may send events (through the protocol).
class RealtimeCore {
 public:
  virtual ~RealtimeCore() = default;
  virtual void send(const nlohmann::json& event) = 0;
  // An `error` event (counted in /metrics by its code); the session goes on.
  virtual void refuse(const RealtimeError& error, const std::string& client_event_id = "") = 0;
  virtual const ServerOptions& options() const = 0;
  virtual const std::string& session_id() const = 0;
  virtual std::int64_t created_at() const = 0;  // Unix seconds
  virtual const SessionAudio& audio() const = 0;
  // Takes effect for the appends that follow (audio already appended is read as it was sent).
  virtual void set_audio(const SessionAudio& audio) = 0;
  // Samples in [-1, 1) at audio().format.rate.
  virtual void append(std::vector<float> samples) = 0;
  // Words spoken so far come out without ending the turn (vLLM's commit).
  virtual void flush() = 0;
  // Ends the open turn (its transcript follows). With `allow_empty` a turn with no audio is
  // ended too (vLLM's final commit always gets its transcription.done); without, committing
  // less than 100 ms is refused (OpenAI's input_audio_buffer_commit_empty). False when refused.
  virtual bool commit(bool allow_empty, const std::string& client_event_id) = 0;
  // Drops the open turn's audio and text.
  virtual void clear() = 0;
};

class RealtimeProtocol {
 public:
  virtual ~RealtimeProtocol() = default;
  virtual void opened() = 0;  // the connection is up: session.created
  virtual void handle(std::string_view message) = 0;
  virtual nlohmann::json error_event(const RealtimeError& error, const std::string& client_event_id) = 0;
  // Turn news. `item`: the turn's id; times are milliseconds of the session's audio.
  virtual void speech_started(const std::string& item, std::int64_t audio_start_ms) = 0;
  virtual void speech_stopped(const std::string& item, std::int64_t audio_end_ms) = 0;
  virtual void committed(const std::string& item, const std::string& previous_item) = 0;
  // `item`: the open turn's id, whose deltas are dropped; "" when no turn was open.
  virtual void cleared(const std::string& item) = 0;
  // `audio_end`: seconds of the session's audio the engine had when it wrote this text.
  virtual void delta(const std::string& item, const std::string& text, double audio_end) = 0;
  virtual void done(const std::string& item, const std::string& transcript, const TurnUsage& usage) = 0;
};

std::unique_ptr<RealtimeProtocol> make_vllm_protocol(RealtimeCore& core);
// `beta`: the client sent OpenAI-Beta: realtime=v1 (answers in the beta's event names).
std::unique_ptr<RealtimeProtocol> make_openai_protocol(RealtimeCore& core, bool beta);

// Server event ids ("event_..."), item ids ("item_...") and session ids ("sess_..."): the
// prefix and 16 random hex digits.
std::string random_id(std::string_view prefix);

}  // namespace voxtral
