// The text decoder, shared by every stream of a model: a GQA transformer with ada-norm time
// conditioning, a paged K/V cache holding many sequences (one per stream), and the tied LM
// head with an on-device argmax.
//
// A step takes a batch: one row per stream, each with its own token, position, sequence and
// audio row, so N streams decode for one read of the weights (the step is bound by reading
// them: 6.9 GB at full size). Each batch size bucket (1, 2, 4, ... max_batch) is recorded
// once and replayed, so on a GPU a step is one graph launch and only the token ids come back.
// A prefill feeds many consecutive positions of one sequence.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "core/config.h"
#include "core/error.h"
#include "model/kv_pages.h"
#include "model/weights.h"

namespace voxtral {

// Per-layer FFN norm weights with the time conditioning folded in:
// ffn_norm * (1 + ada_up(gelu(ada_down(t_cond)))), t_cond the sinusoidal embedding of the
// delay in tokens. Constant for a stream, so computed once per delay.
std::vector<std::vector<float>> time_conditioned_ffn_norms(const ModelConfig& config, const ModelWeights& weights,
                                                           int n_delay_tokens);

struct DecoderPoolOptions {
  int max_sequences = 8;          // streams decoding at once
  int max_batch = 0;              // most rows of one step (a row per stream, or a stream's speculative rows); 0: max_sequences
  int max_prefill_rows = 64;      // most positions of one prefill call
  int page_size = 64;             // K/V positions per page
  std::int64_t pages = 0;         // K/V pages for all sequences; 0: every sequence's whole ring
  int audio_ring_positions = 256; // audio embeddings each sequence may hold ahead of its decoding
  ElemType kv_cache_type = ElemType::F32;
};

// One row of a batched step.
struct DecodeRow {
  int sequence = 0;
  int id = 0;                  // the input token (the previous step's output)
  std::int64_t position = 0;   // absolute position in the sequence
  std::int64_t audio_row = 0;  // row of the sequence's audio ring holding this position's embedding
};

class DecoderPool {
 public:
  DecoderPool(Backend& backend, const ModelConfig& config, const ModelWeights& weights, const DecoderPoolOptions& options);
  ~DecoderPool();
  DecoderPool(const DecoderPool&) = delete;
  DecoderPool& operator=(const DecoderPool&) = delete;

  // A free sequence; BusyError when all max_sequences are taken. Thread-safe.
  int acquire();
  // Gives the sequence and its K/V pages back. Thread-safe.
  void release(int sequence);
  int sequences_in_use() const;
  const DecoderPoolOptions& options() const { return options_; }
  // Bytes of backend memory the pool holds (K/V pages, audio rings, step buffers).
  std::size_t bytes() const { return bytes_; }
  std::int64_t pages_in_use() const { return pages_->in_use() - 1; }  // the dummy's page not counted
  std::int64_t total_pages() const { return pages_->pages() - 1; }

  // Gives the sequence K/V pages for positions [first, last] now (steps and prefills do it
  // themselves; benchmarks use it to attend over a long context without decoding it).
  // Error when the cache is full.
  void reserve(int sequence, std::int64_t first, std::int64_t last);

  // Starts (or restarts) a sequence at position 0 with the FFN norms of its delay (see
  // time_conditioned_ffn_norms); its old pages are freed.
  void start(int sequence, const std::vector<std::vector<float>>& ffn_norms);
  // The sequence's audio ring: [audio_ring_positions, decoder dim], where its encoder writes.
  Tensor audio_ring(int sequence) const;

  // The K/V of the sequence's positions [0, count) (KvPages::save), and a started sequence
  // given them (KvPages::load): the prompt over the left padding, the same for every stream
  // of a delay (model/left_pad.h).
  DeviceBuffer save_positions(int sequence, std::int64_t count) const;
  void load_positions(int sequence, std::int64_t count, const DeviceBuffer& saved);

  // Feeds ids[i] + audio_rows[i] at positions first_position + i of one sequence. With
  // logits given ([n, vocab] device), also computes every row's logits (parity tests).
  void prefill(int sequence, std::span<const int> ids, const Tensor& audio_rows, std::int64_t first_position,
               const Tensor* logits = nullptr);
  // One step of every row (at most max_batch): next[i] is the argmax of row i's logits. A
  // sequence has one row, or several adjacent rows at consecutive positions (speculative
  // rows: their inputs are guesses of the tokens before them, and a row's output counts only
  // if every guess before it was right). Each row attends alone (KvRows::rows_attend_alone),
  // so its bits are those of a step of its own on a backend whose products keep rows
  // independent (the CPU's). Error on any other arrangement.
  void step(std::span<const DecodeRow> rows, std::span<int> next);
  // The logits of the last step's rows, [rows, vocab] in backend memory, valid until the
  // next step.
  Tensor step_logits(std::int64_t rows) const { return logits_.view().row_range(0, rows); }

 private:
  struct Buffers {
    Tensor x, normed, qkv, attn, gate_up, act;
  };
  Buffers buffers(std::int64_t n) const;
  void run_layers(const Buffers& b, const KvRows& rows);
  void step_ops(int bucket);
  int bucket_for(int n) const;
  void check_sequence(int sequence, const char* what) const;

  Backend& backend_;
  const ModelConfig& config_;
  const ModelWeights& weights_;
  DecoderPoolOptions options_;
  KvCacheLayout layout_;
  int dummy_sequence_ = 0;  // pads a step up to its bucket; its every page is one page
  std::size_t bytes_ = 0;

  mutable std::mutex mutex_;  // guards in_use_
  std::vector<bool> in_use_;
  std::unique_ptr<KvPages> pages_;  // [max_sequences + 1] sequences
  DeviceBuffer ffn_norms_;    // F32 [max_sequences + 1, layers * dim]: each sequence's conditioned norms
  DeviceBuffer audio_rings_;  // F32 [(max_sequences + 1) * audio_ring_positions, dim]
  DeviceBuffer x_, normed_, qkv_, attn_, gate_up_, act_;
  // Step inputs, one upload per step: ids, positions, sequences, audio rows (max_batch each).
  DeviceBuffer step_inputs_;
  std::vector<std::int32_t> step_inputs_host_;
  DeviceBuffer prefill_ids_, prefill_positions_, prefill_sequences_;
  DeviceBuffer step_audio_, logits_, next_ids_;
  std::vector<std::int32_t> next_host_;
  std::map<int, std::unique_ptr<Recording>> recordings_;  // by bucket
};

}  // namespace voxtral
