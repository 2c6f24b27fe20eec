// Live transcription: audio arrives in pieces of any size and text comes out as soon as the
// model has produced it.
//
// Every stage is causal, so the work is incremental: the log-mel frames are computed as
// their windows fill (bit-identical to the offline front end), the conv stem keeps its left
// context, the encoder runs only new frames against its rolling K/V cache, and the decoder
// steps once per new 80 ms position. A stream is a sequence of segments; each segment is
// exactly the offline schedule of docs/MODEL.md over a slice of the input (left padding, prompt,
// prefill, one step per position, right padding at its end), so feeding audio in any
// chunking and finishing gives the offline run's tokens. flush() ends the current segment
// at a pause (its pending words come out) and the next audio starts a new one; continuous
// mode does the same by itself before a segment would pass the model's maximum length.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/mel.h"
#include "model/decoder.h"
#include "model/encoder.h"
#include "model/model.h"
#include "model/word_times.h"
#include "runtime/alternatives.h"
#include "runtime/speculation.h"

namespace voxtral {

struct StreamOptions {
  int delay_ms = 0;                   // 0: the tokenizer's transcription_delay_ms
  double processing_interval_s = 0;   // batch this much new audio per encoder run (0: every 80 ms)
  bool continuous = false;            // restart segments by itself instead of failing at the length limit
  bool ignore_eos = false;            // benchmarks: decode the whole audio span
  int alternatives = 0;               // report up to this many candidates per token (0: off)
  double alternative_cutoff = 0.1;    // ... with at least this probability
  // Total input length when known (feeding more fails). Each segment then takes the decoder
  // K/V pages of all its positions when it starts, so a full cache refuses the stream at its
  // start (BusyError) rather than mid-way: what admits an upload.
  std::int64_t expected_samples = 0;
  int encoder_chunk = 64;             // most positions per encoder run (larger: faster, more memory)
  // Called after every decode step with the step's input id, position and logits ([1, vocab]
  // in backend memory): for parity checks, not for normal use.
  std::function<void(int input_id, std::int64_t position, const Tensor& logits)> on_step_logits;
  // Teacher forcing, for parity checks: the k-th decode step's token is teacher_ids[k] instead
  // of its argmax while k < size, so two engines compare logits on the same inputs.
  std::vector<int> teacher_ids;

  // Reports each chosen token's own probability (for avg_logprob) without other candidates,
  // unless alternatives were asked for already: no other candidate reaches certainty.
  void report_chosen_probabilities() {
    if (alternatives > 0) return;
    alternatives = 1;
    alternative_cutoff = 1;
  }
};

// The most candidates a token may report (what OpenAI's top_logprobs allows).
inline constexpr int kMaxAlternatives = 20;
// The longest processing interval: beyond it a "live" stream would sit on a minute of audio.
inline constexpr double kMaxProcessingIntervalSeconds = 60.0;

// Throws Error naming the field ("processing_interval_s: ...") when an option is out of
// range: delay_ms < 0 (positive delays are checked against the model by the Stream),
// processing_interval_s not in [0, 60], alternatives not in [0, 20], alternative_cutoff not
// in [0, 1], expected_samples < 0, encoder_chunk < 1. NaN and infinity are out of every range.
// The Stream constructor calls it, so every front end gets the same checks.
void validate(const StreamOptions& options);

struct TextPiece {
  int id = 0;                 // the token; -1 marks the end of a segment (flush, finish)
  std::string text;           // the text this token completes (may be empty)
  std::int64_t position = 0;  // decoder position in its segment
  double time = 0;            // seconds of input audio: where the token's audio ends, minus the delay
  double audio_end = 0;       // seconds of input audio consumed when the token was produced
  // Seconds of input audio where the word this piece's text belongs to starts and ends (the
  // same for every piece of a word; model/word_times.h gives the method). A piece starts a
  // word when its text begins with whitespace or is the first text of a segment. Pieces
  // without text carry start = end = time.
  double start = 0, end = 0;
  std::vector<Alternative> alternatives;  // with StreamOptions::alternatives, most likely first
};

struct StreamStats {
  double audio_seconds = 0;
  double mel_ms = 0;
  double encoder_ms = 0;
  double prefill_ms = 0;
  double decode_ms = 0;
  double first_token_ms = -1;  // from the first feed to the first token
  std::vector<double> step_ms;
  std::int64_t positions = 0;  // decoder positions, all segments
  int segments = 0;
  int decode_passes = 0;  // decoder steps taken (fewer than tokens when speculative rows were accepted)
  std::int64_t encoder_positions = 0;  // positions encoded (the left padding's zeros come from the cache)
};

// Who runs the decoder steps of a stream: the stream itself, inside feed/flush/finish (one
// row per step), or a scheduler that steps many streams in one batch (runtime/scheduler.h).
enum class Decoding { Self, Scheduled };

class Stream {
 public:
  // Takes one of the model's decoder sequences (BusyError when all are in use).
  Stream(Model& model, const StreamOptions& options, Decoding decoding = Decoding::Self);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // 16 kHz mono samples; processes whatever the processing interval allows. A NaN or
  // infinite sample is an Error naming its index in `samples`, and nothing of the call is
  // taken: one such value would spread through the mel frames and the encoder's cache and
  // silence the stream for good.
  void feed(std::span<const float> samples);
  // As feed, but stops where a segment must end before more audio is taken (continuous
  // mode at the model's length limit, with Decoding::Scheduled: the end waits for the
  // scheduler's steps). Returns the samples taken; the rest is for a later call.
  std::size_t feed_some(std::span<const float> samples);
  // Ends the current segment (right padding, decodes its tail) so that everything spoken
  // so far comes out; later audio starts a new segment.
  void flush();
  // Ends the stream: flushes and accepts no more audio.
  void finish();

  // ---- for a scheduler (Decoding::Scheduled): it collects next_steps() from every stream
  // with step_ready(), runs them as one batched DecoderPool::step, and gives each stream its
  // tokens with take_steps(). With Decoding::Self the stream does this itself.
  // The encoder likewise: encode_ready() prepares the stream's next mel frames when the
  // signal and the ring allow; the scheduler encodes every ready stream's encode_request()
  // in one EncoderPool::encode and tells each with take_encoded().
  bool encode_ready();
  EncodeRequest encode_request() const;
  void take_encoded(double encoder_ms);
  bool step_ready() const { return prefilled_ && !segment_done_ && decoded_ < encoded_; }
  // Speculative decoding (runtime/speculation.h): the rows of the stream's next step, at most
  // rows.size(): its next position, then rows for the following positions whose audio is encoded,
  // each with the pad token as its guessed input, as many as the stream's policy finds
  // worth it (Model::speculative_tokens() at most). Returns how many it filled (1 when
  // step_ready()).
  int next_steps(std::span<DecodeRow> rows) const;
  // The outputs of those rows (tokens[i], logits [rows, vocab] in backend memory) and the
  // step's time: takes the first, then each following row's while the token before it was
  // the pad its row guessed (and the segment goes on). Returns the tokens taken. `alone`:
  // the step held only this stream's rows, so its time teaches the policy what rows cost.
  int take_steps(std::span<const int> tokens, const Tensor& logits, double step_ms, bool alone = true);
  // A flush or finish is waiting for its segment's last steps.
  bool ending() const { return ending_ != End::None; }
  bool live() const { return options_.processing_interval_s == 0; }

  // Text pieces produced since the last call.
  std::vector<TextPiece> take_pieces();
  // Every token of the stream so far (specials included, EOS excluded).
  const std::vector<int>& ids() const { return ids_; }
  const StreamStats& stats() const { return stats_; }
  bool finished() const { return finished_; }
  // Input samples held by the front end (bounded: it keeps only what the next frames need).
  std::size_t buffered_samples() const { return padded_.size(); }
  int delay_positions() const { return n_delay_; }
  // Input samples still to feed before the encoder's next full chunk of positions is ready:
  // feeding in such pieces runs the encoder on whole chunks only. A chunk's worth when the
  // encoder waits for something else (the processing interval, or the end of a segment).
  std::int64_t input_until_next_chunk() const;

 private:
  enum class End { None, Flush, Finish };
  void start_segment();
  void reserve_segment_pages();  // expected_samples known: the segment's pages, now
  void append_padded(std::span<const float> samples);
  // Encodes what the signal and the ring allow, prefills, and (Decoding::Self) decodes;
  // completes a segment end whose last position has been decoded.
  void advance();
  bool encode_next(bool final);
  // Computes the mel frames of the next encoder run (once; 0 when none is possible now).
  std::int64_t prepare_encode(bool final);
  std::int64_t frames_ready(bool final) const;  // mel frames whose window the signal covers
  void prefill_if_ready();
  DecodeRow next_step() const;  // the row of the stream's next position
  // One row's output token and its logits ([1, vocab] in backend memory), with its time.
  void take_step(int token, const Tensor& logits, double step_ms);
  void end_segment(End end);
  void complete_segment_end();
  void emit(int token, std::int64_t position, const Tensor& logits);
  void set_word_times(TextPiece& piece);
  double input_seconds(std::int64_t padded_samples) const;

  Model& model_;
  StreamOptions options_;
  const ModelConfig& config_;
  int n_delay_ = 0;
  int left_pad_ = 0;
  std::vector<int> prompt_;
  std::int64_t samples_per_position_ = 0;
  std::int64_t max_segment_input_ = 0;  // input samples one segment may hold

  const Decoding decoding_;
  MelSpectrogram mel_;
  DecoderPool& decoder_;
  int sequence_ = -1;        // this stream's sequence in the decoder pool
  Tensor audio_ring_;        // the sequence's audio embeddings of positions not yet decoded
  std::int64_t ring_positions_ = 0;
  int encoder_chunk_ = 0;

  // The current segment. "Padded" counts samples of the segment's padded signal (left
  // padding included); its frames and positions are what the offline schedule would see.
  std::vector<float> padded_;             // the tail of the padded signal still needed
  std::int64_t padded_base_ = 0;          // padded index of padded_[0]
  std::int64_t padded_total_ = 0;         // padded samples appended
  std::int64_t segment_input_ = 0;        // input samples in this segment
  double segment_start_time_ = 0;         // input seconds where this segment starts
  bool segment_final_ = false;            // right padding appended
  std::int64_t mel_frames_ = 0;           // frames computed (and encoded)
  std::int64_t encoded_ = 0;              // positions encoded
  std::int64_t pending_encode_ = 0;       // positions whose mel frames wait for the encoder
  std::int64_t decoded_ = 0;              // positions decoded (next step's position)
  bool prefilled_ = false;
  std::int64_t zero_positions_ = 0;       // the padding's positions the left-pad cache covers
  std::int64_t prefilled_positions_ = 0;  // prompt positions prefilled so far
  bool segment_done_ = false;             // EOS seen, or every position decoded
  End ending_ = End::None;                // a flush or finish waits for the segment's last steps
  int next_input_ = 0;
  SpeculationPolicy speculation_;
  std::int64_t pending_input_ = 0;        // input samples fed since the last processing
  std::vector<float> mel_scratch_;
  std::vector<double> energy_scratch_;    // mean square of each frame's window

  std::int64_t total_input_ = 0;
  bool finished_ = false;
  TextStream text_;
  WordTimer word_timer_{0.01, 0, 0};      // set up in the constructor
  bool in_word_ = false;                  // a word of this segment is open (its pieces share its times)
  WordSpan word_;
  std::vector<TextPiece> pieces_;
  std::vector<int> ids_;
  StreamStats stats_;
  std::vector<float> host_logits_;
  bool started_clock_ = false;
  std::chrono::steady_clock::time_point first_feed_;
};

}  // namespace voxtral
