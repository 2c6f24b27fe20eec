// GET /v1/realtime: WebSocket transcription speaking vLLM's realtime protocol, so its
// clients work unchanged. Client events: session.update {model}, input_audio_buffer.append
// {audio: base64 PCM16 mono 16 kHz}, input_audio_buffer.commit (starts transcribing) and
// input_audio_buffer.commit {final: true} (the audio is over). Server events:
// session.created, transcription.delta {delta}, transcription.done {text, usage},
// error {error, code}. After transcription.done the next commit starts a new utterance.
#pragma once

#include "server/http_session.h"

namespace voxtral {

void start_realtime(beast::tcp_stream stream, ServerContext& context, http::request<http::string_body> request);

}  // namespace voxtral
