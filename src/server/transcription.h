// POST /v1/audio/transcriptions: OpenAI's transcription API over the shared engine.
// Multipart fields: file (required), model (any name unless --strict-model-name), language
// (accepted, unused: the model takes no language input), prompt and temperature
// (accepted, unused: decoding is greedy), response_format (json, text, srt, vtt,
// verbose_json), timestamp_granularities[] (segment, word), stream (server-sent events
// transcript.text.delta / transcript.text.done).
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "server/http_session.h"

namespace voxtral {

void handle_transcription(std::shared_ptr<HttpSession> session, http::request<http::string_body>&& request);

// The form check alone, without a connection (for the fuzzer): "" or the error message,
// and the field it names.
std::pair<std::string, std::string> check_transcription_form(std::string body, const std::string& content_type,
                                                             const ServerOptions& options);

}  // namespace voxtral
