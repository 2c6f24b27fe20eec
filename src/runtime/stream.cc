#include "runtime/stream.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cmath>
#include <future>
#include <numeric>
#include <thread>

#include "core/error.h"
#include "model/schedule.h"

namespace voxtral {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::int64_t kMelFramesPerTask = 128;  // a thread's start costs about what 2-3 frames do
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Waits for queued backend work (so that timings land where the work happened).
void wait_for(Backend& backend, const Tensor& any) {
  float sink[1];
  backend.copy_to_host(any.row_range(0, 1).col_range(0, 1), sink);
}

}  // namespace

void validate(const StreamOptions& o) {
  if (o.delay_ms < 0) fail("delay_ms", cat(o.delay_ms, " is negative (0 = the model's delay)"));
  if (!(o.processing_interval_s >= 0 && o.processing_interval_s <= kMaxProcessingIntervalSeconds)) {
    fail("processing_interval_s", cat(o.processing_interval_s, " is out of range (0 to ", kMaxProcessingIntervalSeconds,
                                      " seconds; 0 = every 80 ms)"));
  }
  if (o.alternatives < 0 || o.alternatives > kMaxAlternatives) {
    fail("alternatives", cat(o.alternatives, " is out of range (0 to ", kMaxAlternatives, ")"));
  }
  if (!(o.alternative_cutoff >= 0 && o.alternative_cutoff <= 1)) {
    fail("alternative_cutoff", cat(o.alternative_cutoff, " is not a probability (0 to 1)"));
  }
  if (o.expected_samples < 0) fail("expected_samples", cat(o.expected_samples, " is negative (0 = unknown)"));
  if (o.encoder_chunk < 1) fail("encoder_chunk", cat(o.encoder_chunk, " is below 1"));
}

Stream::Stream(Model& model, const StreamOptions& options, Decoding decoding)
    : model_(model),
      options_((validate(options), options)),
      config_(model.config()),
      decoding_(decoding),
      mel_(model.config().audio),
      decoder_(model.decoder()),
      speculation_(model.speculative_tokens()),
      text_(model.tokenizer()) {
  const Tokenizer& tokenizer = model.tokenizer();
  const int delay_ms = options.delay_ms > 0 ? options.delay_ms : tokenizer.audio().transcription_delay_ms;
  n_delay_ = voxtral::delay_positions(delay_ms, config_);
  left_pad_ = tokenizer.audio().n_left_pad_tokens;
  prompt_ = prompt_ids(tokenizer, n_delay_);
  zero_positions_ = std::min<std::int64_t>(zero_padding_positions(config_, left_pad_),
                                           static_cast<std::int64_t>(prompt_.size()) - 1);
  samples_per_position_ = config_.samples_per_position();
  const std::int64_t segment_positions =
      config_.decoder.model_max_length - left_pad_ - n_delay_ - 1 - kRightPadExtraPositions;
  if (segment_positions <= 0) {
    fail("model", cat("model_max_length ", config_.decoder.model_max_length, " leaves no room for audio after the ",
                      left_pad_, " + ", n_delay_ + 1 + kRightPadExtraPositions, " padding positions"));
  }
  max_segment_input_ = segment_positions * samples_per_position_;

  const std::int64_t ring_limit = decoder_.options().audio_ring_positions;
  const auto prompt_positions = static_cast<std::int64_t>(prompt_.size());
  if (prompt_positions >= ring_limit) fail("stream", "the prompt does not fit the decoder's audio ring");
  // A whole number of encoder chunks (at least the prompt plus one) in the pool's ring for
  // this sequence, so that full chunks never straddle the ring's end and get split.
  auto ring_for = [&](std::int64_t chunk) { return (prompt_positions + chunk + chunk - 1) / chunk * chunk; };
  std::int64_t chunk = std::min<std::int64_t>({std::max(1, options.encoder_chunk), ring_limit - prompt_positions,
                                                model.encoder().options().max_positions_per_sequence});
  while (ring_for(chunk) > ring_limit) --chunk;
  encoder_chunk_ = static_cast<int>(chunk);
  ring_positions_ = ring_for(chunk);
  sequence_ = decoder_.acquire();
  audio_ring_ = decoder_.audio_ring(sequence_).row_range(0, ring_positions_);
  // A word is timed when the token n_delay positions after its end is decoded; by then the
  // frames reach at least that far, and at most a ring of encoded positions further.
  const double position_seconds = static_cast<double>(samples_per_position_) / config_.audio.sampling_rate;
  const double lookahead = n_delay_ * position_seconds;
  word_timer_ = WordTimer(static_cast<double>(config_.audio.hop_length) / config_.audio.sampling_rate, lookahead,
                          WordTimer::kPeakSeconds + lookahead + static_cast<double>(ring_positions_ + 1) * position_seconds);
  try {
    start_segment();
  } catch (...) {
    model_.encoder().release(sequence_);
    decoder_.release(sequence_);
    throw;
  }
}

Stream::~Stream() {
  model_.encoder().release(sequence_);
  decoder_.release(sequence_);
}

void Stream::start_segment() {
  model_.encoder().reset(sequence_);
  // A fresh sequence: positions from 0, the old segment's K/V pages given back.
  decoder_.start(sequence_, model_.ffn_norms(n_delay_));
  if (options_.expected_samples > 0) reserve_segment_pages();
  padded_.assign(static_cast<std::size_t>(left_pad_ * samples_per_position_), 0.0f);
  padded_base_ = 0;
  padded_total_ = static_cast<std::int64_t>(padded_.size());
  segment_input_ = 0;
  segment_start_time_ = static_cast<double>(total_input_) / config_.audio.sampling_rate;
  segment_final_ = false;
  mel_frames_ = 0;
  encoded_ = 0;
  pending_encode_ = 0;
  decoded_ = 0;
  prefilled_ = false;
  prefilled_positions_ = 0;
  segment_done_ = false;
  next_input_ = prompt_.back();
  // The padding's first positions, as an earlier stream computed them (model/left_pad.h).
  // The decoder's are per delay: without them, the cached audio embeddings are prefilled.
  const auto encoder_state = model_.left_pad().encoder();
  if (zero_positions_ > 0 && encoder_state) {
    model_.encoder().restore_prefix(sequence_, *encoder_state);
    mel_frames_ = zero_positions_ * config_.mel_frames_per_position();
    encoded_ = zero_positions_;
    if (const auto decoder_state = model_.left_pad().decoder(n_delay_)) {
      decoder_.load_positions(sequence_, zero_positions_, *decoder_state);
      prefilled_positions_ = zero_positions_;
    } else {
      model_.backend().copy(encoder_state->embeddings.view(), audio_ring_.row_range(0, zero_positions_));
    }
  }
}

void Stream::reserve_segment_pages() {
  // The segment decodes one position per samples_per_position_ of its padded input: left
  // padding, its share of the input, right padding (a whole number of positions).
  const std::int64_t input = std::min(options_.expected_samples - total_input_, max_segment_input_);
  const std::int64_t padded =
      left_pad_ * samples_per_position_ + input + right_padding_samples(input, config_, n_delay_);
  const std::int64_t positions = padded / samples_per_position_;
  const std::int64_t free_pages = decoder_.total_pages() - decoder_.pages_in_use();
  try {
    decoder_.reserve(sequence_, 0, positions - 1);
  } catch (const BusyError&) {
    // Pages taken before the refusal go back with the sequence (the stream is not made).
    throw BusyError(cat("decoder: the K/V cache has no room for this audio now: its ",
                        static_cast<double>(input) / config_.audio.sampling_rate, " s take ", positions,
                        " positions (at most a window's pages), and ", free_pages, " of the ",
                        decoder_.total_pages(), " pages of ", decoder_.options().page_size,
                        " positions are free"));
  }
}

double Stream::input_seconds(std::int64_t padded_samples) const {
  const std::int64_t input = std::clamp<std::int64_t>(padded_samples - left_pad_ * samples_per_position_, 0, segment_input_);
  return segment_start_time_ + static_cast<double>(input) / config_.audio.sampling_rate;
}

void Stream::append_padded(std::span<const float> samples) {
  padded_.insert(padded_.end(), samples.begin(), samples.end());
  padded_total_ += static_cast<std::int64_t>(samples.size());
}

void Stream::feed(std::span<const float> samples) {
  while (!samples.empty()) {
    const std::size_t taken = feed_some(samples);
    if (taken == 0) fail("stream", "feed: a segment end is waiting for the scheduler (use feed_some)");
    samples = samples.subspan(taken);
  }
}

std::size_t Stream::feed_some(std::span<const float> samples) {
  if (finished_ || ending_ == End::Finish) fail("stream", "audio fed after finish()");
  // Checked before anything is taken, so that the stream stays usable after the refusal.
  const auto bad = std::find_if(samples.begin(), samples.end(), [](float v) { return !std::isfinite(v); });
  if (bad != samples.end()) {
    fail("audio", cat("sample ", bad - samples.begin(), " of ", samples.size(), " is ",
                      std::isnan(*bad) ? "NaN" : "infinite", "; nothing of this call was taken"));
  }
  if (!started_clock_) {
    started_clock_ = true;
    first_feed_ = Clock::now();
  }
  if (options_.expected_samples > 0 && total_input_ + static_cast<std::int64_t>(samples.size()) > options_.expected_samples) {
    fail("stream", cat("fed more audio than the ", options_.expected_samples,
                       " samples it was told to expect (StreamOptions::expected_samples)"));
  }
  std::size_t taken = 0;
  while (taken < samples.size() && ending_ == End::None) {
    if (segment_input_ == max_segment_input_) {
      if (!options_.continuous) {
        const double limit = static_cast<double>(max_segment_input_) / config_.audio.sampling_rate;
        fail("audio", cat("is longer than the ", limit, " s (", config_.decoder.model_max_length,
                          " positions) this model handles in one pass; continuous mode restarts by itself"));
      }
      end_segment(End::Flush);
      continue;
    }
    const auto take = static_cast<std::size_t>(
        std::min<std::int64_t>(static_cast<std::int64_t>(samples.size() - taken), max_segment_input_ - segment_input_));
    append_padded(samples.subspan(taken, take));
    segment_input_ += static_cast<std::int64_t>(take);
    total_input_ += static_cast<std::int64_t>(take);
    pending_input_ += static_cast<std::int64_t>(take);
    taken += take;
  }
  stats_.audio_seconds = static_cast<double>(total_input_) / config_.audio.sampling_rate;
  const auto interval = static_cast<std::int64_t>(options_.processing_interval_s * config_.audio.sampling_rate);
  if (taken > 0 && pending_input_ >= interval) {
    pending_input_ = 0;
    advance();
  }
  return taken;
}

std::int64_t Stream::input_until_next_chunk() const {
  const auto& a = config_.audio;
  const std::int64_t per_position = config_.mel_frames_per_position();
  const std::int64_t available = frames_ready(false) / per_position;
  // A whole chunk is here but the encoder waits for something else (the processing interval,
  // or the segment's text ended at EOS): a chunk's worth of audio, not a trickle of samples.
  if (segment_done_ || available - encoded_ >= encoder_chunk_) return encoder_chunk_ * samples_per_position_;
  const std::int64_t target = (available / encoder_chunk_ + 1) * encoder_chunk_;
  // The inverse of frames_ready: frame t is ready once the signal reaches t * hop + window / 2.
  return (target * per_position - 1) * a.hop_length + a.window_size / 2 - padded_total_;
}

std::int64_t Stream::frames_ready(bool final) const {
  const auto& a = config_.audio;
  const std::int64_t half = a.window_size / 2;
  // Frame t covers padded samples [t*hop - half, t*hop + half). Before the end it is ready
  // once its window is complete; at the end the signal continues with zeros, which is what
  // the offline front end's reflect padding yields, since both ends of a segment are zeros.
  if (final) return padded_total_ / a.hop_length;
  return padded_total_ >= half ? (padded_total_ - half) / a.hop_length + 1 : 0;
}

void Stream::advance() {
  for (;;) {
    const bool encoded = decoding_ == Decoding::Self && encode_next(segment_final_);
    prefill_if_ready();
    if (decoding_ == Decoding::Self) {
      while (step_ready()) {
        std::array<DecodeRow, kMaxSpeculativeTokens + 1> rows;
        std::array<int, kMaxSpeculativeTokens + 1> tokens{};
        const auto n = static_cast<std::size_t>(next_steps(rows));
        const auto t = Clock::now();
        decoder_.step(std::span(rows).first(n), std::span(tokens).first(n));
        take_steps(std::span(tokens).first(n), decoder_.step_logits(static_cast<std::int64_t>(n)), ms_since(t));
      }
    }
    if (!encoded) break;
  }
  if (segment_final_ && !segment_done_ && prefilled_ && decoded_ * samples_per_position_ >= padded_total_) {
    segment_done_ = true;
  }
  // Keep only the samples that the next frame's window still needs.
  const std::int64_t keep_from = mel_frames_ * config_.audio.hop_length - config_.audio.window_size / 2;
  const std::int64_t drop = keep_from - padded_base_;
  if (drop > (1 << 16)) {
    padded_.erase(padded_.begin(), padded_.begin() + drop);
    padded_base_ += drop;
  }
  if (ending_ != End::None && segment_done_) complete_segment_end();
}

bool Stream::encode_next(bool final) {
  if (prepare_encode(final) == 0) return false;
  const EncodeRequest request = encode_request();
  const auto t = Clock::now();
  model_.encoder().encode(std::span(&request, 1));
  wait_for(model_.backend(), request.out);
  take_encoded(ms_since(t));
  return true;
}

bool Stream::encode_ready() { return prepare_encode(segment_final_) > 0; }

EncodeRequest Stream::encode_request() const {
  return {sequence_, std::span<const float>(mel_scratch_), static_cast<int>(pending_encode_),
          audio_ring_.row_range(encoded_ % ring_positions_, pending_encode_)};
}

void Stream::take_encoded(double encoder_ms) {
  stats_.encoder_ms += encoder_ms;
  stats_.encoder_positions += pending_encode_;
  encoded_ += pending_encode_;
  pending_encode_ = 0;
  if (encoded_ == zero_positions_ && !model_.left_pad().encoder()) {
    EncoderPool::Prefix prefix = model_.encoder().save_prefix(sequence_);
    const Tensor embeddings = audio_ring_.row_range(0, zero_positions_);
    prefix.embeddings = DeviceBuffer(model_.backend(), embeddings.type, embeddings.rows, embeddings.cols);
    model_.backend().copy(embeddings, prefix.embeddings.view());
    model_.left_pad().set_encoder(std::move(prefix));
  }
  if (decoding_ == Decoding::Scheduled) advance();
}

std::int64_t Stream::prepare_encode(bool final) {
  if (pending_encode_ > 0) return pending_encode_;
  const auto& a = config_.audio;
  const std::int64_t half = a.window_size / 2;
  const std::int64_t per_position = config_.mel_frames_per_position();
  std::int64_t count = frames_ready(final) / per_position - encoded_;
  count = std::min<std::int64_t>(count, encoder_chunk_);
  // The padding's zero positions end a request of their own, as when they are cached.
  if (encoded_ < zero_positions_) count = std::min(count, zero_positions_ - encoded_);
  // Room in the ring: a chunk waits for room for all of it (a scheduler frees the ring one
  // position per step; encoding in scraps would be slow and change the chunking).
  if (count > ring_positions_ - (encoded_ - decoded_)) return 0;
  count = std::min(count, ring_positions_ - encoded_ % ring_positions_);  // without wrapping
  if (count <= 0 || segment_done_) return 0;

  auto t = Clock::now();
  const std::int64_t first_frame = encoded_ * per_position;
  const std::int64_t n_frames = count * per_position;
  mel_scratch_.resize(static_cast<std::size_t>(n_frames * a.num_mel_bins));
  energy_scratch_.resize(static_cast<std::size_t>(n_frames));
  auto frames_range = [&](std::int64_t begin, std::int64_t end) {
    std::vector<float> window(static_cast<std::size_t>(a.window_size));
    for (std::int64_t f = begin; f < end; ++f) {
      const std::int64_t start = (first_frame + f) * a.hop_length - half;
      double energy = 0;
      for (int i = 0; i < a.window_size; ++i) {
        const std::int64_t at = start + i;
        const float v =
            at >= padded_base_ && at < padded_total_ ? padded_[static_cast<std::size_t>(at - padded_base_)] : 0.0f;
        window[static_cast<std::size_t>(i)] = v;
        energy += static_cast<double>(v) * v;
      }
      energy_scratch_[static_cast<std::size_t>(f)] = energy / a.window_size;
      mel_.compute_frame(window.data(), mel_scratch_.data() + f * a.num_mel_bins);
    }
  };
  // Frames are independent: a large batch (offline chunks of 1024 frames, 4-9 us each) is
  // shared among the cores; with the encoder on a GPU the mel had become ~40% of the encoder's
  // time and a third of the first token's. Live pieces of a few frames stay on this thread.
  const std::int64_t parts = std::min<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()),
                                                    n_frames / kMelFramesPerTask);
  if (parts > 1) {
    std::vector<std::future<void>> tasks;
    for (std::int64_t p = 1; p < parts; ++p) {
      tasks.push_back(std::async(std::launch::async, frames_range, n_frames * p / parts, n_frames * (p + 1) / parts));
    }
    frames_range(0, n_frames / parts);
    for (auto& task : tasks) task.get();
  } else {
    frames_range(0, n_frames);
  }
  mel_frames_ = first_frame + n_frames;
  // The word timer hears the frames centred on input audio (not on the padding).
  const std::int64_t left = left_pad_ * samples_per_position_;
  for (std::int64_t f = 0; f < n_frames; ++f) {
    const std::int64_t input = (first_frame + f) * a.hop_length - left;
    if (input < 0 || input >= segment_input_) continue;
    word_timer_.add_frame(segment_start_time_ + static_cast<double>(input) / a.sampling_rate,
                          energy_scratch_[static_cast<std::size_t>(f)]);
  }
  stats_.mel_ms += ms_since(t);
  pending_encode_ = count;
  return count;
}

void Stream::prefill_if_ready() {
  const auto prompt_rows = static_cast<std::int64_t>(prompt_.size()) - 1;
  if (prefilled_ || segment_done_) return;
  // In two pieces: the padding's zero positions (cached for later streams: model/left_pad.h),
  // then the rest of the prompt, which sees the audio.
  const auto prefill = [&](std::int64_t first, std::int64_t end) {
    const auto t = Clock::now();
    decoder_.prefill(sequence_,
                     std::span(prompt_).subspan(static_cast<std::size_t>(first), static_cast<std::size_t>(end - first)),
                     audio_ring_.row_range(first, end - first), first);
    stats_.prefill_ms += ms_since(t);
    prefilled_positions_ = end;
  };
  if (prefilled_positions_ < zero_positions_ && encoded_ >= zero_positions_) {
    prefill(0, zero_positions_);
    if (!model_.left_pad().decoder(n_delay_)) {
      model_.left_pad().set_decoder(n_delay_, decoder_.save_positions(sequence_, zero_positions_));
    }
  }
  if (prefilled_positions_ < zero_positions_ || encoded_ < prompt_rows) return;
  prefill(prefilled_positions_, prompt_rows);
  prefilled_ = true;
  decoded_ = prompt_rows;
}

DecodeRow Stream::next_step() const {
  return {sequence_, next_input_, decoded_, decoded_ % ring_positions_};
}

int Stream::next_steps(std::span<DecodeRow> rows) const {
  if (rows.empty() || !step_ready()) return 0;
  const std::int64_t available = std::min<std::int64_t>(encoded_ - decoded_, static_cast<std::int64_t>(rows.size()));
  const int n = speculation_.rows(available);
  const int pad = model_.tokenizer().streaming_pad_id();
  rows[0] = next_step();
  for (int i = 1; i < n; ++i) {
    const std::int64_t position = decoded_ + i;
    rows[static_cast<std::size_t>(i)] = {sequence_, pad, position, position % ring_positions_};
  }
  return n;
}

int Stream::take_steps(std::span<const int> tokens, const Tensor& logits, double step_ms, bool alone) {
  const int pad = model_.tokenizer().streaming_pad_id();
  const std::int64_t first_position = decoded_;
  const int segment = stats_.segments;
  const std::size_t first_entry = stats_.step_ms.size();
  const std::size_t first_id = ids_.size();
  int taken = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    // Row i guessed that row i - 1 emits the pad: its output counts only if so (and the
    // segment goes on: not ended by EOS or by its last position).
    const bool guessed_right = next_input_ == pad && step_ready() && stats_.segments == segment &&
                               decoded_ == first_position + static_cast<std::int64_t>(i);
    if (i > 0 && !guessed_right) break;
    take_step(tokens[i], logits.row_range(static_cast<std::int64_t>(i), 1), 0.0);
    ++taken;
  }
  // The step's time is shared by its tokens.
  for (std::size_t e = first_entry; e < stats_.step_ms.size(); ++e) stats_.step_ms[e] = step_ms / taken;
  stats_.decode_ms += step_ms;
  ++stats_.decode_passes;
  if (stats_.segments == segment) {
    speculation_.observe(static_cast<int>(tokens.size()), alone ? step_ms : 0.0, ids_.data() + first_id,
                         static_cast<int>(ids_.size() - first_id), pad);
  }
  return taken;
}

void Stream::take_step(int token, const Tensor& logits, double step_ms) {
  const std::int64_t p = decoded_;
  stats_.step_ms.push_back(step_ms);
  stats_.decode_ms += step_ms;
  if (options_.on_step_logits) options_.on_step_logits(next_input_, p, logits);
  if (stats_.step_ms.size() <= options_.teacher_ids.size()) token = options_.teacher_ids[stats_.step_ms.size() - 1];
  ++decoded_;
  if (token == model_.tokenizer().eos_id() && !options_.ignore_eos) {
    segment_done_ = true;  // as offline: the rest of this segment's audio yields no text
  } else {
    emit(token, p, logits);
    next_input_ = token;
  }
  if (decoding_ == Decoding::Scheduled) advance();
}

void Stream::emit(int token, std::int64_t position, const Tensor& logits) {
  if (stats_.first_token_ms < 0) stats_.first_token_ms = ms_since(first_feed_);
  ids_.push_back(token);
  TextPiece piece;
  piece.id = token;
  piece.text = text_.push(token);
  piece.position = position;
  piece.time = input_seconds((position - n_delay_) * samples_per_position_);
  piece.audio_end = input_seconds((position + 1) * samples_per_position_);
  set_word_times(piece);
  if (options_.alternatives > 0) {
    host_logits_.resize(static_cast<std::size_t>(logits.numel()));
    model_.backend().copy_to_host(logits, host_logits_.data());
    piece.alternatives =
        top_alternatives(host_logits_, token, model_.tokenizer(), options_.alternatives, options_.alternative_cutoff);
  }
  pieces_.push_back(std::move(piece));
}

void Stream::set_word_times(TextPiece& piece) {
  if (piece.text.empty()) {
    piece.start = piece.end = piece.time;
    return;
  }
  if (!in_word_ || std::isspace(static_cast<unsigned char>(piece.text.front()))) {
    // The word's last sample lies in position (position - n_delay): its end is that
    // position's middle (clamped to the audio fed).
    const double end = input_seconds((piece.position - n_delay_) * samples_per_position_ + samples_per_position_ / 2);
    word_ = word_timer_.next_word(end);
    in_word_ = true;
  }
  piece.start = word_.start;
  piece.end = word_.end;
}

void Stream::end_segment(End end) {
  if (segment_input_ == 0) {  // nothing was fed since the segment began
    if (end == End::Finish) finished_ = true;
    return;
  }
  const std::vector<float> zeros(static_cast<std::size_t>(right_padding_samples(segment_input_, config_, n_delay_)), 0.0f);
  append_padded(zeros);
  segment_final_ = true;
  pending_input_ = 0;
  ending_ = end;
  advance();
}

void Stream::complete_segment_end() {
  stats_.positions += padded_total_ / samples_per_position_;
  ++stats_.segments;
  // Marks the segment end (and releases a character left incomplete, as U+FFFD).
  TextPiece piece;
  piece.id = -1;
  piece.text = text_.finish();
  piece.position = decoded_;
  piece.time = piece.audio_end = input_seconds(padded_total_);
  set_word_times(piece);
  in_word_ = false;
  pieces_.push_back(std::move(piece));
  const End end = ending_;
  ending_ = End::None;
  if (end == End::Finish) {
    finished_ = true;
  } else {
    start_segment();
  }
}

void Stream::flush() {
  if (finished_ || ending_ != End::None || segment_input_ == 0) return;
  end_segment(End::Flush);
}

void Stream::finish() {
  if (finished_ || ending_ == End::Finish) return;
  if (ending_ == End::Flush) {
    ending_ = End::Finish;  // the segment being ended is the last
    return;
  }
  end_segment(End::Finish);
}

std::vector<TextPiece> Stream::take_pieces() {
  std::vector<TextPiece> out;
  out.swap(pieces_);
  return out;
}

}  // namespace voxtral
