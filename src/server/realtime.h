// GET /v1/realtime: WebSocket transcription in two protocols, chosen by the URL:
//   - OpenAI's realtime transcription sessions when the query names an `intent`
//     (?intent=transcription, as OpenAI's documentation connects) or a `model` (as the
//     official SDKs' realtime clients do), or the client sends OpenAI-Beta: realtime=v1:
//     client events session.update / transcription_session.update (audio format and rate,
//     transcription model, turn_detection), input_audio_buffer.append/commit/clear; server
//     events session.created/updated (transcription_session.* for beta clients),
//     input_audio_buffer.committed/cleared/speech_started/speech_stopped,
//     conversation.item.input_audio_transcription.delta/completed, error {type, code,
//     message, param, event_id}. An item's events come in OpenAI's order: committed, item
//     added (created), deltas, completed; the engine's words for a turn still open wait for
//     its commit, and those of a cleared turn are never sent. A session that declares no
//     format reads 24 kHz PCM16, as OpenAI does. Differences: turn detection is off until a
//     session turns it on (OpenAI's default is server_vad); PCM may be at any rate from 8 to
//     192 kHz (OpenAI's is 24 kHz only).
//   - vLLM's protocol otherwise (realtime_events.h), so its clients work unchanged:
//     session.update {model}, input_audio_buffer.append {audio: base64 PCM16 mono 16 kHz},
//     input_audio_buffer.commit (the words so far come out) and input_audio_buffer.commit
//     {final: true} (the utterance is over). Server events: session.created,
//     transcription.delta {delta}, transcription.done {text, usage}, error {error, code,
//     param}. Additions: session.update's sample_rate and turn_detection. Deltas stream as
//     the engine writes them, before the commit that ends their utterance.
// Audio at another rate than the model's 16 kHz is resampled (libsoxr). With turn detection
// (runtime/voice_activity.h) the server ends each turn at the pause after it, and only the
// turns' audio (with their prefix padding) reaches the engine.
//
// Events are served in the order they arrive: audio and commits sent after a commit,
// before its transcript is done, form the next turn, whose deltas follow that done. The
// first delta of a turn has no leading space, so the deltas and the done text are the text
// an upload of the same audio gets.
//
// Limits (ServerOptions): a message over max_message_bytes gets an `error` event, then the
// close (1009); a binary frame gets an `error` event (events are text frames of JSON); a
// session takes an engine slot (--max-sessions) at its first append or commit and keeps it
// until it closes, or until it is idle: no message from the client (pings do not count) for
// idle_timeout_seconds while the engine has nothing of it to do gets an `error` event
// (idle_timeout), then the close 1008 (policy violation); audio appended and not yet transcribed is bounded
// per session (max_buffered_audio_seconds: a faster client is held back, reading its next
// message once there is room; one longer append is refused) and taken from the server's
// memory budget; a session's audio in total is bounded by max_audio_seconds. A refused
// event gets an `error` event and the session goes on. At shutdown (Lifecycle::abort_all) a
// session gets an `error` event (server_shutdown) and the close 1001 (going away).
#pragma once

#include "server/http_session.h"

namespace voxtral {

void start_realtime(beast::tcp_stream stream, ServerContext& context, http::request<http::string_body> request);

}  // namespace voxtral
