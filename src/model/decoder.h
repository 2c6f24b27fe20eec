// The text decoder: GQA transformer with ada-norm time conditioning, a ring K/V cache over
// absolute positions with a sliding window, and the tied LM head with an on-device argmax.
// Positions are fed either as a batch (prefill) or one at a time (step); the one-token step
// is recorded once and replayed, so on a GPU it is a single graph launch.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "core/config.h"
#include "model/weights.h"

namespace voxtral {

// Per-layer FFN norm weights with the time conditioning folded in:
// ffn_norm * (1 + ada_up(gelu(ada_down(t_cond)))), t_cond the sinusoidal embedding of the
// delay in tokens. Constant for a session, so computed once per delay.
std::vector<std::vector<float>> time_conditioned_ffn_norms(const ModelConfig& config, const ModelWeights& weights,
                                                           int n_delay_tokens);

class TextDecoder {
 public:
  // max_rows: most positions in one prefill call; max_positions: total positions this
  // decoder will see (bounds the cache below the window when the audio is short).
  TextDecoder(Backend& backend, const ModelConfig& config, const ModelWeights& weights, int max_rows,
              std::int64_t max_positions, ElemType kv_cache_type = ElemType::F32);

  // Starts a sequence with the given per-layer FFN norms (see time_conditioned_ffn_norms).
  void start(const std::vector<Weight>& ffn_norms);

  // Feeds ids[i] + audio_rows[i] at positions first_position + i. With logits given
  // ([n, vocab] device), also computes the logits of every row (teacher forcing tests).
  void prefill(std::span<const int> ids, const Tensor& audio_rows, std::int64_t first_position,
               const Tensor* logits = nullptr);

  // Feeds id + audio_row at `position`; returns the argmax of the logits.
  int step(int id, const Tensor& audio_row, std::int64_t position);
  // The logits of the last step, [1, vocab] in backend memory.
  const Tensor& step_logits() const { return logits_.view(); }

 private:
  struct Scratch {
    Tensor normed, qkv, attn, gate_up, act;
  };
  Scratch batch_scratch(int n) const;
  Scratch step_scratch() const;
  void run_layers(const Tensor& x, const Tensor& positions, const Scratch& s);
  void step_ops();

  Backend& backend_;
  const ModelConfig& config_;
  const ModelWeights& weights_;
  void check_position(std::int64_t position) const;

  int max_rows_;
  std::int64_t position_limit_ = std::numeric_limits<std::int64_t>::max();
  KvCacheLayout cache_layout_;
  std::vector<Weight> ffn_norms_;

  DeviceBuffer x_, normed_, qkv_, attn_, gate_up_, act_, ids_, positions_;
  DeviceBuffer step_x_, step_normed_, step_qkv_, step_attn_, step_gate_up_, step_act_;
  DeviceBuffer step_audio_, step_id_, step_position_, logits_;
  // Every layer's K and V cache in one allocation: GPU allocators round each allocation up
  // to 2 MiB pages, which cost ~100 MiB over 52 separate caches of a 10-minute stream.
  DeviceBuffer kv_caches_;
  Tensor k_cache(std::size_t layer) const { return cache_part(2 * layer); }
  Tensor v_cache(std::size_t layer) const { return cache_part(2 * layer + 1); }
  Tensor cache_part(std::size_t i) const {
    return kv_caches_.view().row_range(static_cast<std::int64_t>(i) * cache_layout_.capacity, cache_layout_.capacity);
  }
  std::unique_ptr<Recording> step_recording_;
};

}  // namespace voxtral
