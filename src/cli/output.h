// How the voxtral command prints a transcript: live text, text with timestamps, SRT or
// WebVTT cues as segments complete, or JSON at the end.
#pragma once

#include <cstdio>
#include <string>

#include "core/error.h"
#include "core/tokenizer.h"
#include "runtime/stream.h"
#include "transcript/segments.h"

namespace voxtral {

enum class OutputFormat { Text, Json, Srt, Vtt };

// The transcript could not be written to stdout (disk full, closed descriptor, ...).
class OutputError : public Error {
 public:
  using Error::Error;
};

class TranscriptPrinter {
 public:
  // With `sink`, the transcript is appended there instead of going to stdout (the many-file
  // mode prints each file's whole once it is done, and writes --output-dir files).
  TranscriptPrinter(OutputFormat format, bool timestamps, bool alternatives, bool debug, const Tokenizer& tokenizer,
                    std::string* sink = nullptr);
  // Each throws OutputError when stdout refuses the text.
  void add(const TextPiece& piece);
  void finish(double duration);
  // An utterance ended (--vad): plain text starts a new line for the next one.
  void end_turn();

 private:
  void print_segments(const std::vector<Segment>& segments);
  void out(const std::string& s);

  OutputFormat format_;
  bool timestamps_, alternatives_, debug_;
  const Tokenizer& tokenizer_;
  Segmenter segmenter_;
  std::vector<Segment> segments_;
  std::string text_;
  std::string* sink_;
  int cue_ = 0;
  bool printed_ = false;  // whether any transcript text has gone to stdout yet (on this line)
  bool ended_turn_ = false;  // a line was ended by end_turn()
};

}  // namespace voxtral
