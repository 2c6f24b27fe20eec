// POST /v1/audio/transcriptions: OpenAI's transcription API over the shared engine.
// Multipart fields: file (required), model (any name unless --strict-model-name), language
// (accepted, unused: the model takes no language input), prompt and temperature
// (accepted, unused: decoding is greedy), response_format (json, text, srt, vtt,
// verbose_json), timestamp_granularities[] (segment, word), stream (server-sent events
// transcript.text.delta / transcript.text.done).
#pragma once

#include <memory>

#include "server/http_session.h"

namespace voxtral {

void handle_transcription(std::shared_ptr<HttpSession> session, http::request<http::string_body>&& request);

}  // namespace voxtral
