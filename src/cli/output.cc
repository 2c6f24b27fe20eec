#include "cli/output.h"

#include <cerrno>
#include <cstring>

#include "transcript/formats.h"

namespace voxtral {

TranscriptPrinter::TranscriptPrinter(OutputFormat format, bool timestamps, bool alternatives, bool debug,
                                     const Tokenizer& tokenizer, std::string* sink)
    : format_(format),
      timestamps_(timestamps),
      alternatives_(alternatives),
      debug_(debug),
      tokenizer_(tokenizer),
      sink_(sink) {
  if (format_ == OutputFormat::Vtt) out(vtt_header());
}

void TranscriptPrinter::out(const std::string& s) {
  if (sink_ != nullptr) {
    sink_->append(s);
    return;
  }
  // Flushed at once (the transcript is live), so a write error shows here, not at exit.
  errno = 0;
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size() || std::fflush(stdout) != 0) {
    const int error = errno;
    std::clearerr(stdout);
    throw OutputError(cat("stdout: cannot write the transcript: ", error != 0 ? std::strerror(error) : "write error"));
  }
}

void TranscriptPrinter::print_segments(const std::vector<Segment>& segments) {
  for (const auto& s : segments) {
    segments_.push_back(s);
    switch (format_) {
      case OutputFormat::Srt: out(srt_cue(++cue_, s)); break;
      case OutputFormat::Vtt: out(vtt_cue(s)); break;
      case OutputFormat::Text:
        if (timestamps_) {
          std::string line = "[";  // (built by appending: GCC 12 warns wrongly about "[" + ...)
          line.append(timestamp(s.start, '.')).append(" --> ").append(timestamp(s.end, '.')).append("] ");
          line.append(s.text).append("\n");
          out(line);
        }
        break;
      case OutputFormat::Json: break;
    }
  }
}

void TranscriptPrinter::add(const TextPiece& piece) {
  if (debug_ && piece.id >= 0) {
    std::string what(1, '"');
    if (tokenizer_.is_special(piece.id)) {
      what = tokenizer_.special_name(piece.id);
    } else {
      what.append(piece.text).push_back('"');
    }
    std::fprintf(stderr, "voxtral: position %lld token %d %s at %.2f s", static_cast<long long>(piece.position),
                 piece.id, what.c_str(), piece.time);
    if (!piece.text.empty()) std::fprintf(stderr, " (word %.2f-%.2f s)", piece.start, piece.end);
    std::fputc('\n', stderr);
  }
  text_ += piece.text;
  if (format_ == OutputFormat::Text && !timestamps_) {
    // Alternatives inline, as {chosen|other|other}, where any candidate passed the cutoff
    // and the chosen token writes text (a control token chosen writes nothing, so its
    // position shows nothing: no control token's name ever appears in the transcript).
    if (alternatives_ && piece.alternatives.size() > 1 && !piece.text.empty() && !tokenizer_.is_special(piece.id)) {
      std::string shown = "{";
      for (std::size_t i = 0; i < piece.alternatives.size(); ++i) {
        if (i > 0) shown.push_back('|');
        shown.append(piece.alternatives[i].text);
      }
      shown.push_back('}');
      out(shown);
      printed_ = true;
    } else if (printed_) {
      out(piece.text);
    } else {
      // The model writes a space before every word, the first included: a transcript
      // starts at its first word.
      const std::size_t first = piece.text.find_first_not_of(' ');
      if (first != std::string::npos) {
        out(piece.text.substr(first));
        printed_ = true;
      }
    }
  }
  print_segments(segmenter_.add(piece));
}

void TranscriptPrinter::end_turn() {
  if (format_ != OutputFormat::Text || timestamps_ || !printed_) return;
  out("\n");
  printed_ = false;
  ended_turn_ = true;
}

void TranscriptPrinter::finish(double duration) {
  print_segments(segmenter_.finish());
  if (format_ == OutputFormat::Text && !timestamps_ && (printed_ || !ended_turn_)) out("\n");
  if (format_ == OutputFormat::Json) {
    std::size_t first = text_.find_first_not_of(' ');
    const std::string text = first == std::string::npos ? std::string() : text_.substr(first);
    out(segments_json(segments_, segmenter_.all_words(), text, duration).dump(2));
    out("\n");
  }
}

}  // namespace voxtral
