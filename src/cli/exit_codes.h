// The voxtral command's exit codes (its --help lists them).
#pragma once

namespace voxtral {

enum ExitCode : int {
  kOk = 0,
  kUsage = 2,
  kModelError = 3,
  kAudioError = 4,
  kTranscriptionError = 5,
  kOutputError = 6,
};

}  // namespace voxtral
