// GET /v1/realtime: WebSocket transcription speaking vLLM's realtime protocol, so its
// clients work unchanged. Client events (realtime_events.h): session.update {model},
// input_audio_buffer.append {audio: base64 PCM16 mono 16 kHz}, input_audio_buffer.commit
// (the words so far come out) and input_audio_buffer.commit {final: true} (the utterance is
// over). Server events: session.created, transcription.delta {delta}, transcription.done
// {text, usage}, error {error, code, param}.
//
// Events are served in the order they arrive: audio and commits sent after a final commit,
// before its transcription.done, form the next utterance, whose deltas follow that done.
// The first delta of an utterance has no leading space, so the deltas and the done text are
// the text an upload of the same audio gets.
//
// Limits (ServerOptions): a message over max_message_bytes gets an `error` event, then the
// close (1009); a session takes an engine slot (--max-sessions) at its first append or
// commit and keeps it until it closes; audio appended and not yet transcribed is bounded
// per session (max_buffered_audio_seconds: a faster client is held back, reading its next
// message once there is room; one longer append is refused) and taken from the server's
// memory budget; a session's audio in total is bounded by max_audio_seconds. A refused
// append gets an `error` event and the session goes on. At shutdown (Lifecycle::abort_all) a session gets an
// `error` event (server_shutdown) and the close 1001 (going away).
#pragma once

#include "server/http_session.h"

namespace voxtral {

void start_realtime(beast::tcp_stream stream, ServerContext& context, http::request<http::string_body> request);

}  // namespace voxtral
