// voxtral-server: one process holds the model and serves many clients over HTTP and
// WebSocket (Boost.Beast on Asio). Endpoints:
//   GET  /                              the web page (microphone and file transcription)
//   GET  /health, /v1/models, /metrics  status, the model list, Prometheus counters
//   GET  /v1/models/{id}                one served model (OpenAI's retrieve)
//   POST /v1/audio/transcriptions       OpenAI-compatible transcription (json, text, srt, vtt,
//                                       verbose_json; stream=true as server-sent events)
//   GET  /v1/realtime                   WebSocket: OpenAI's realtime transcription sessions, or
//                                       vLLM's realtime protocol (server/realtime.h)
// and, with --wyoming PORT, Home Assistant's Wyoming protocol on its own port (server/wyoming.h).
// Connections run on a few I/O threads; all model work runs on the Scheduler's thread.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/scheduler.h"
#include "runtime/voice_activity.h"
#include "server/lifecycle.h"
#include "server/memory_budget.h"
#include "server/metrics.h"

namespace boost::asio {
class thread_pool;
}

namespace voxtral {

// A limit given in seconds (the options below) as the steady clock's duration, for timers
// and deadlines.
inline std::chrono::steady_clock::duration clock_seconds(double seconds) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(seconds));
}

struct ServerOptions {
  std::string host = "127.0.0.1";
  unsigned short port = 8000;      // 0: any free port (see Server::port())
  int io_threads = 2;
  std::string api_key;             // when set, /v1/* needs "Authorization: Bearer <key>" (or ?api_key=)
  // --allowed-origin (repeatable, "*": any): web origins besides the server's own that may
  // call the API from a browser (CORS) and open the realtime WebSocket (server/auth.h).
  std::vector<std::string> allowed_origins;
  // --allowed-host (repeatable, "*": any): Host names served without an API key besides IP
  // addresses, localhost, LAN names and --host (a guard against DNS rebinding; server/auth.h).
  std::vector<std::string> allowed_hosts;
  std::string model_id;            // the first served model name (default: the model directory's name)
  // --served-model-name (repeatable): what /v1/models lists; model_id is the first.
  std::vector<std::string> served_model_names;
  // --strict-model-name: requests naming another model get 404 (default: any name is
  // accepted, as local whisper servers do, so OpenAI and vLLM clients work unchanged).
  bool strict_model_name = false;
  double shutdown_timeout_seconds = 30;     // grace period for in-flight work on SIGTERM/SIGINT
  // Bytes clients make the server hold in total (upload bodies, decoded audio, realtime
  // audio); past it requests get 503. 0: default_memory_budget_bytes().
  std::size_t memory_budget_bytes = 0;
  std::size_t max_upload_bytes = 100u << 20;  // the file part of an upload
  // An upload body must arrive at this average rate (bytes/s), after a grace of
  // idle_timeout_seconds: a slow client on a slow link is served, a trickle is cut. 0: no floor.
  double min_upload_bytes_per_second = 4096;
  double header_timeout_seconds = 30;       // a request's header, from its first byte
  double max_audio_seconds = 4 * 3600.0;   // per upload, and per realtime session
  // One WebSocket message: 16 MiB holds one append of ~390 s of audio (base64 PCM16).
  std::size_t max_message_bytes = 16u << 20;
  // Audio a realtime session has appended and the engine not yet served (4 bytes a sample
  // while held): a faster client is held back; one append longer than this is refused.
  // Above one largest message's audio.
  double max_buffered_audio_seconds = 600;
  int delay_ms = 0;                         // 0: the model's default
  // --vad: turn detection for every realtime session from its start (a session may turn it
  // off or change it); none: off until a session asks for it.
  std::optional<TurnDetectionOptions> turn_detection;
  // A connection silent this long (between requests, or within a body) is closed; so is a
  // realtime session or Wyoming stream holding an engine slot that gets no audio or event
  // (pings do not count) for this long while the engine has nothing of it to do.
  double idle_timeout_seconds = 60;
  // --wyoming: Home Assistant's Wyoming protocol on this TCP port too, at `host` (0: any
  // free port, see Server::wyoming_port(); -1: off). server/wyoming.h.
  int wyoming_port = -1;

  // What /v1/models lists: model_id, then the other served names.
  std::vector<std::string> listed_models() const {
    std::vector<std::string> names{model_id};
    for (const auto& name : served_model_names) {
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    return names;
  }
  // Whether a request naming `model` is served ("" always is).
  bool accepts_model(std::string_view model) const {
    if (model.empty() || !strict_model_name) return true;
    if (model == model_id) return true;
    for (const auto& name : served_model_names) {
      if (model == name) return true;
    }
    return false;
  }
};

// What every connection shares.
struct ServerContext {
  Scheduler& engine;
  Metrics& metrics;
  const ServerOptions& options;
  boost::asio::thread_pool* blocking_pool = nullptr;  // audio decoding, off the I/O threads
  Lifecycle* lifecycle = nullptr;  // graceful shutdown: drain, then abort what remains
  MemoryBudget* memory = nullptr;  // bytes clients make the server hold, in total
  std::atomic<int> busy_requests{0};  // HTTP requests read and not yet fully answered
  double position_seconds = 0.08;  // one decoder position
  int sample_rate = 16000;
};

class Server {
 public:
  Server(Scheduler& engine, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds (throws voxtral::Error naming the address on failure) and starts the I/O threads.
  void start();
  // Blocks until stop() (e.g. from a signal handler thread).
  void wait();
  // Stops at once: connections and running requests are dropped without an answer.
  void stop();
  // The end of the shutdown grace period: every session still registered with the
  // Lifecycle is aborted (a realtime session closes with 1001).
  void abort_remaining();
  // Graceful stop (SIGTERM/SIGINT): stops accepting; requests and realtime sessions already
  // running go on for up to `grace_seconds` (new requests on open connections get 503 and
  // Connection: close); then what remains is aborted (HTTP 503, WebSocket close 1001) and the
  // server stops. Returns once the I/O threads have ended. cut_grace() (any thread) ends the
  // grace period early.
  void shutdown(double grace_seconds);
  void cut_grace();
  unsigned short port() const;
  unsigned short wyoming_port() const;  // 0 when the Wyoming protocol is off
  Metrics& metrics() { return metrics_; }

 private:
  struct Impl;
  Metrics metrics_;  // before impl_: sessions torn down with the I/O context still count in it
  std::unique_ptr<Impl> impl_;
};

// Half of the physical memory or of the address-space limit (RLIMIT_AS), whichever is lower.
std::size_t default_memory_budget_bytes();

}  // namespace voxtral
