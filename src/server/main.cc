// voxtral-server: loads the model once and serves transcription over HTTP and WebSocket.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <thread>

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "model/schedule.h"
#include "cli/model_options.h"
#include "cli/option_checks.h"
#include "server/auth.h"
#include "server/server.h"

int main(int argc, char** argv) {
  using namespace voxtral;
  CLI::App app{"voxtral-server: speech to text over HTTP (OpenAI-compatible) and WebSocket (vLLM's realtime\n"
               "protocol), with a web page for the microphone, and Home Assistant's Wyoming protocol (--wyoming).\n"
               "One process holds the model for every client."};
  std::string model_dir;
  ServerOptions server;
  SchedulerOptions engine;
  ModelOptions model{"auto"};
  double max_upload_mb = 100;
  double max_message_kb = 16384;
  double memory_budget_mb = 0;
  double min_upload_kib_per_second = server.min_upload_bytes_per_second / 1024;
  app.add_option("-d,--model", model_dir, "Model directory (params.json, tekken.json, consolidated.safetensors)")
      ->required();
  app.add_option("--host", server.host, "Address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)");
  app.add_option("-p,--port", server.port, "Port (default 8000; 0 picks a free one)");
  app.add_option("--wyoming", server.wyoming_port,
                 "Also serve Home Assistant's Wyoming protocol (speech to text) on this TCP port, at --host\n"
                 "(e.g. 10300; 0 picks a free one; default: off)")
      ->check(CLI::Range(0, 65535));
  app.add_option("--model-id", server.model_id,
                 "Model name in /v1/models and responses (default: the first --served-model-name, else the directory name)");
  app.add_option("--served-model-name", server.served_model_names,
                 "A model name /v1/models lists (repeatable; e.g. whisper-1). Requests may name any model unless "
                 "--strict-model-name")
      ->take_all();
  app.add_flag("--strict-model-name", server.strict_model_name,
               "Refuse requests naming a model other than --model-id and --served-model-name (404 model_not_found)");
  app.add_option("--api-key", server.api_key,
                                 "Require \"Authorization: Bearer KEY\" on /v1/* (default: none; also read from "
                                 "VOXTRAL_API_KEY; --api-key-file keeps it out of `ps`)")
                      ->envname("VOXTRAL_API_KEY");
  std::string api_key_file;
  app.add_option("--api-key-file", api_key_file,
                 "Read the API key from the first line of this file (instead of --api-key or VOXTRAL_API_KEY)");
  app.add_option("--allowed-origin", server.allowed_origins,
                 "A web origin (scheme://host:port) besides the server's own whose pages may call the API and open "
                 "the realtime WebSocket (repeatable; * allows any)")
      ->take_all();
  app.add_option("--allowed-host", server.allowed_hosts,
                 "A Host name served without an API key besides IP addresses, localhost, LAN names and --host (repeatable; "
                 "* allows any; a guard against DNS rebinding)")
      ->take_all();
  app.add_option("--max-sessions", engine.max_jobs,
                 "Transcriptions at once: uploads, and realtime sessions from their first audio until they close "
                 "(default: the model's streams, --max-streams)")
      ->check(whole_range(0, kMaxStreams));
  app.add_option("--max-upload-mb", max_upload_mb, "Largest upload in MiB (default 100)")->check(CLI::Range(0.001, 4096.0));
  app.add_option("--max-audio-seconds", server.max_audio_seconds,
                 "Longest audio per upload or realtime session (default 14400)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-message-kb", max_message_kb,
                 "Largest WebSocket message in KiB (default 16384: one append of ~390 s of audio)")
      ->check(CLI::Range(1.0, 1048576.0));
  app.add_option("--max-buffered-audio-seconds", server.max_buffered_audio_seconds,
                 "Audio a realtime session may send ahead of its transcription; a faster client is held back "
                 "(default 600)")
      ->check(CLI::PositiveNumber);
  app.add_option("--memory-budget-mb", memory_budget_mb,
                 "Upload bodies and decoded audio held at once, all clients, in MiB; past it requests get 503\n"
                 "(default: half of the physical memory or of the address-space limit, whichever is lower)")
      ->check(CLI::Range(1.0, 1e9));
  app.add_option("--min-upload-rate", min_upload_kib_per_second,
                 "Slowest upload accepted, in KiB/s averaged over the body after a grace of --idle-timeout\n"
                 "(default 4; 0: no floor)")
      ->check(CLI::Range(0.0, 1e6));
  app.add_option("--header-timeout", server.header_timeout_seconds,
                 "Seconds a request's header may take from its first byte (default 30)")
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--idle-timeout", server.idle_timeout_seconds,
                 "Seconds a connection may stay silent between requests or within a body, and a realtime\n"
                 "session or Wyoming stream holding a transcription slot without audio or events (default 60)")
      ->check(CLI::Range(0.1, 86400.0));
  app.add_option("--shutdown-timeout", server.shutdown_timeout_seconds,
                 "On SIGTERM/SIGINT, seconds running requests and sessions get to finish before they are\n"
                 "ended (HTTP 503, WebSocket close 1001); a second signal ends them at once (default 30)")
      ->check(CLI::Range(0.0, 86400.0));
  add_delay_option(app, server.delay_ms);
  bool vad = false;
  TurnDetectionOptions vad_options;
  add_turn_detection_options(app, vad, vad_options,
                             "end each realtime session's utterances there, from its start (a session may turn it "
                             "off with turn_detection: null, or set its own)");
  app.add_option("--io-threads", server.io_threads, "Network threads (default 2)")->check(CLI::Range(1, 64));
  add_model_options(app, model);
  // Every number must be finite: CLI11's ranges let NaN through (its comparisons are false).
  for (CLI::Option* option : app.get_options()) {
    if (option->get_type_name().starts_with("FLOAT")) option->check(finite_number());
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help is 0; every bad command line is 2, as in the CLI
  }
  auto usage_error = [](const std::string& message) {
    std::fprintf(stderr, "voxtral-server: %s\n", message.c_str());
    return 2;
  };
  const bool key_on_command_line = std::any_of(argv + 1, argv + argc, [](const char* a) {
    return std::string_view(a) == "--api-key" || std::string_view(a).starts_with("--api-key=");
  });
  if (!api_key_file.empty() && key_on_command_line) return usage_error("give --api-key or --api-key-file, not both");
  const char* key_from_environment = std::getenv("VOXTRAL_API_KEY");
  if (api_key_file.empty() && server.api_key.empty() &&
      (key_on_command_line || (key_from_environment != nullptr && *key_from_environment == '\0'))) {
    // An empty key would serve everyone: an operator who set one expects it to be required.
    return usage_error("the API key is empty (--api-key or VOXTRAL_API_KEY): give a key, or leave both out to "
                       "serve without one");
  }
  for (const auto& name : server.served_model_names) {
    if (name.empty()) return usage_error("--served-model-name: a model name cannot be empty");
  }
  for (const auto& origin : server.allowed_origins) {
    if (const std::string why = check_allowed_origin(origin); !why.empty()) {
      return usage_error("--allowed-origin " + origin + ": " + why);
    }
  }
  if (vad) server.turn_detection = vad_options;
  server.max_upload_bytes = static_cast<std::size_t>(max_upload_mb * (1 << 20));
  server.max_message_bytes = static_cast<std::size_t>(max_message_kb * 1024);
  if (!api_key_file.empty()) {
    try {
      server.api_key = read_api_key_file(api_key_file);
    } catch (const Error& e) {
      std::fprintf(stderr, "voxtral-server: %s\n", e.what());
      return 2;
    }
  }
  if (server.model_id.empty() && !server.served_model_names.empty()) server.model_id = server.served_model_names.front();
  server.memory_budget_bytes = static_cast<std::size_t>(memory_budget_mb * (1 << 20));
  server.min_upload_bytes_per_second = min_upload_kib_per_second * 1024;
  if (server.model_id.empty()) {
    server.model_id = std::filesystem::path(model_dir).lexically_normal().filename().string();
    if (server.model_id.empty()) server.model_id = std::filesystem::path(model_dir).parent_path().filename().string();
  }

  // SIGINT/SIGTERM end the server; every thread started below inherits the blocked mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  try {
    auto loaded = Model::load(model_dir, model);
    if (server.delay_ms > 0) delay_positions(server.delay_ms, loaded->config());  // validates it
    const int streams = loaded->decoder().options().max_sequences;
    if (engine.max_jobs > streams) {
      std::fprintf(stderr,
                   "voxtral-server: warning: --max-sessions %d is more than the model's streams (--max-streams %d%s): "
                   "at most %d transcriptions run at once\n",
                   engine.max_jobs, streams, model.max_streams > 0 ? "" : ", the default here", streams);
    }
    Scheduler engine_runner(*loaded, engine);
    Server http(engine_runner, server);
    http.start();
    std::fprintf(stderr, "voxtral-server: model %s on %s, %s weights; listening on http://%s:%u/\n",
                 server.model_id.c_str(), loaded->backend().name().c_str(),
                 std::string(weight_format_name(loaded->weight_format())).c_str(), server.host.c_str(), http.port());
    if (server.wyoming_port >= 0) {
      std::fprintf(stderr, "voxtral-server: Wyoming protocol on tcp://%s:%u\n", server.host.c_str(), http.wyoming_port());
    }
    int received = 0;
    sigwait(&signals, &received);
    std::fprintf(stderr, "voxtral-server: stopping: no new connections; running work gets %g s to finish\n",
                 server.shutdown_timeout_seconds);
    // A second signal ends the grace period at once.
    std::atomic<bool> stopped{false};
    std::thread second_signal([&] {
      const timespec tick{0, 100'000'000};
      while (!stopped.load()) {
        if (sigtimedwait(&signals, nullptr, &tick) > 0) http.cut_grace();
      }
    });
    http.shutdown(server.shutdown_timeout_seconds);
    stopped = true;
    second_signal.join();
    std::fprintf(stderr, "voxtral-server: stopped\n");
  } catch (const std::exception& e) {  // Error, and anything else (a filesystem or system error)
    std::fprintf(stderr, "voxtral-server: %s\n", e.what());
    return 3;
  }
  return 0;
}
