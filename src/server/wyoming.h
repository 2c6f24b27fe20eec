// Home Assistant's Wyoming protocol (voxtral-server --wyoming PORT): speech to text for
// Home Assistant's Assist and other Wyoming clients, on its own TCP port beside HTTP, on the
// same I/O threads and the same engine (Scheduler). Framing: wyoming_event.h; audio:
// wyoming_audio.h.
//
// Client events (any other type is ignored, as the protocol's peers do):
//   describe                         -> info {asr: [program with one model: name (the model
//                                       id), languages, attribution, installed, version,
//                                       supports_transcript_streaming: true]}
//   ping {text}                      -> pong {text}
//   transcribe {name?, language?}    the model's name is checked when --strict-model-name;
//                                    language is type-checked, not used (the model hears it)
//   audio-start {rate, width, channels}            starts a transcription (an engine slot)
//   audio-chunk {rate, width, channels} + PCM      the same format as its audio-start
//   audio-stop                       -> transcript {text}, the whole text
// While the audio comes, the text streams as the protocol's 1.7 events: transcript-start,
// then transcript-chunk {text} as the engine produces words (their texts joined are the
// transcript's text), then after audio-stop: transcript, then transcript-stop.
//
// Every refusal is an `error` event {text, code}, after which the server closes the
// connection (a Wyoming client waits for a transcript or the end of the connection):
//   framing (wyoming_event.h): header_too_long, invalid_header, data_too_long,
//     invalid_data, payload_too_long (over --max-message-kb)
//   events: invalid_type (a field of the wrong type), model_not_found,
//     audio_not_started (audio-chunk or audio-stop without audio-start),
//     audio_already_started, invalid_audio_format (rate, width, channels),
//     audio_format_mismatch (a chunk's format differs from its audio-start's),
//     invalid_audio (a payload that is not whole frames),
//     audio_too_long (past --max-audio-seconds in one stream)
//   server: server_busy (--max-sessions, or the memory budget), processing_error,
//     idle_timeout (silent for --idle-timeout while the server waits for it, or no audio
//       for --idle-timeout while a stream holds an engine slot: pings do not keep it),
//     server_shutdown (drain, or the end of the shutdown grace period), internal_error.
// Limits are the server's (ServerOptions): a client sending audio faster than the engine
// transcribes is held back (max_buffered_audio_seconds, by not reading), audio held is
// taken from the memory budget. On SIGTERM a running transcription gets the grace period.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "server/server.h"

namespace boost::asio {
class io_context;
}

namespace voxtral {

class WyomingListener {
 public:
  WyomingListener(boost::asio::io_context& io, ServerContext& context);
  ~WyomingListener();
  // Binds host:port (0: any free port) and accepts; throws voxtral::Error naming the address.
  void start(const std::string& host, unsigned short port);
  // Stops accepting (any thread); connections go on until the server stops.
  void close();
  unsigned short port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The `info` event's data for this server.
nlohmann::json wyoming_info(const ServerContext& context);

}  // namespace voxtral
