// The command-line options every front end shares (voxtral, voxtral-server, voxtral-bench
// run), registered in one place so that their names, checks and help read the same
// everywhere. Each fills the engine's own option structs; Model::load and the Stream
// validate them again, so a value that passes here is still checked against the model.
#pragma once

#include <CLI/CLI.hpp>

#include "model/model.h"
#include "runtime/voice_activity.h"

namespace voxtral {

// -t/--threads, --backend, --precision, --kv-cache, --weights, --max-streams, --kv-cache-mb.
// The help states `options`' current backend as the default (the bench's is cpu).
void add_model_options(CLI::App& app, ModelOptions& options);

// --delay: the transcription delay in ms (0 = the model's).
CLI::Option* add_delay_option(CLI::App& app, int& delay_ms);

// -I/--interval: seconds of new audio gathered per encoder run (0 = every 80 ms).
CLI::Option* add_interval_option(CLI::App& app, double& seconds);

// --vad (turn detection on), --vad-threshold, --vad-silence-ms, --vad-padding-ms: OpenAI's
// server_vad parameters (runtime/voice_activity.h). `what_vad_does` ends the --vad help.
void add_turn_detection_options(CLI::App& app, bool& enabled, TurnDetectionOptions& options,
                                const std::string& what_vad_does);

}  // namespace voxtral
