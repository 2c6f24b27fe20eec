// Many recordings at once (`voxtral -i a.wav b.wav DIR ...`): every file is an upload job of
// one Scheduler, so up to --batch files decode together, each step one batched decoder step
// for all of them. A file's transcript is the one it gets alone (the scheduler's rows are
// independent); the files' outputs come out in input order as each completes.
#pragma once

#include <string>
#include <vector>

#include "cli/exit_codes.h"
#include "cli/output.h"
#include "model/model.h"
#include "runtime/stream.h"

namespace voxtral {

// What one input names: a file, or a directory standing for its audio files.
struct BatchInput {
  std::string path;
  std::string error;  // why it cannot be read (a directory without audio files, unreadable)
};

// The files the inputs name, in order: a directory gives its *.wav files (any case of the
// extension; not its subdirectories), sorted by name. A directory that cannot be listed or
// holds no such file is one input carrying its error.
std::vector<BatchInput> expand_inputs(const std::vector<std::string>& inputs);

struct BatchOptions {
  int max_files = 1;                  // files decoding at once
  std::vector<OutputFormat> formats;  // stdout gets the first; --output-dir gets each
  std::string output_dir;             // "": the transcripts go to stdout
  bool timestamps = false, alternatives = false, debug = false, silent = false;
  StreamOptions stream;
};

// Transcribes the files. On stdout: each file's transcript after a `==> path <==` line (a
// blank line between files), or for JSON one array of the single-file objects, each with
// "file" (and "error" instead of the transcript for a file that failed). With an output
// directory, DIR/<stem>.<ext> per file and format instead. A file that fails is reported on
// stderr naming it, and the others go on. Returns kOk, the exit code of the first file that
// failed (kAudioError, kTranscriptionError), or kOutputError when output could not be written.
// A file takes the decoder K/V pages of its whole length when it starts: one the cache has no
// room for now waits until another file ends (no new file starts meanwhile), and one that
// does not fit even alone fails with an error saying so.
ExitCode transcribe_files(Model& model, const std::vector<BatchInput>& files, const BatchOptions& options);

// The extension --output-dir gives a format's file.
const char* output_extension(OutputFormat format);

}  // namespace voxtral
