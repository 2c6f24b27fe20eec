// The audio encoder and the adapter: log-mel frames in, one embedding per decoder position
// out. Causal throughout, so audio can be fed in pieces: the conv stem keeps its left
// context rows between calls and the transformer keeps a ring K/V cache of its window.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "core/config.h"
#include "model/weights.h"

namespace voxtral {

class AudioEncoder {
 public:
  // max_positions_per_call bounds the work of one encode() call (and the buffers).
  AudioEncoder(Backend& backend, const ModelConfig& config, const ModelWeights& weights, int max_positions_per_call,
               ElemType kv_cache_type = ElemType::F32);

  // Starts a new audio stream (zero conv context, position 0).
  void reset();

  // mel: host frames-major [n_positions * mel_frames_per_position][num_mel_bins]. Writes
  // n_positions rows of decoder-width audio embeddings into out (a device tensor), and,
  // when encoder_out is given, the final-normed encoder frames (for the parity tests).
  void encode(std::span<const float> mel, int n_positions, const Tensor& out, const Tensor* encoder_out = nullptr);

  int max_positions_per_call() const { return max_positions_; }
  std::int64_t frames_done() const { return frames_done_; }

 private:
  void run_layers(int n_frames);

  Backend& backend_;
  const ModelConfig& config_;
  const ModelWeights& weights_;
  int max_positions_;
  KvCacheLayout cache_layout_;
  std::int64_t frames_done_ = 0;
  std::vector<std::int32_t> host_positions_;

  DeviceBuffer conv0_in_, conv0_cols_, conv1_in_, conv1_cols_;
  DeviceBuffer x_, normed_, qkv_, attn_, gate_up_, act_, adapter_mid_, positions_;
  // One sequence in one page: sequence 0 for every row, page table [[0]].
  DeviceBuffer sequences_, page_table_;
  // Every layer's K and V cache in one allocation (see TextDecoder).
  DeviceBuffer kv_caches_;
  Tensor k_cache(std::size_t layer) const { return cache_part(2 * layer); }
  Tensor v_cache(std::size_t layer) const { return cache_part(2 * layer + 1); }
  Tensor cache_part(std::size_t i) const {
    return kv_caches_.view().row_range(static_cast<std::int64_t>(i) * cache_layout_.capacity, cache_layout_.capacity);
  }
};

}  // namespace voxtral
