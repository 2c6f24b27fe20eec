// The audio encoder and the adapter, shared by every stream of a model: log-mel frames in,
// one embedding per decoder position out. Causal throughout, so audio can be fed in pieces:
// each sequence (a stream; the decoder's sequence numbers) keeps the left context of both
// convolutions and a paged K/V cache over the encoder's window.
//
// One call encodes the new frames of many streams together, so the encoder's weights (about
// 2 GB in BF16 at full size) are read once per tick instead of once per stream: the rows of
// all requests are concatenated, the convolutions gather each request's input rows and its
// saved context rows (Backend::im2col with named rows), and the transformer's attention finds
// each row's own sequence (KvRows).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "core/config.h"
#include "model/kv_pages.h"
#include "model/weights.h"

namespace voxtral {

struct EncoderPoolOptions {
  int max_sequences = 8;
  int max_positions_per_sequence = 64;  // most decoder positions one request may hold
  int max_positions_per_call = 512;     // all requests of one pass (longer batches take several)
  int page_size = 64;                   // encoder frames per K/V page
  ElemType kv_cache_type = ElemType::F32;
};

// The new audio of one sequence.
struct EncodeRequest {
  int sequence = 0;
  std::span<const float> mel;  // host, frames-major [n_positions * mel_frames_per_position][num_mel_bins]
  int n_positions = 0;
  Tensor out;                  // device [n_positions, decoder dim]: the audio embeddings
  const Tensor* encoder_out = nullptr;  // optional device [n_positions * downsample, encoder dim]: final-normed frames (parity tests)
};

class EncoderPool {
 public:
  EncoderPool(Backend& backend, const ModelConfig& config, const ModelWeights& weights, const EncoderPoolOptions& options);
  ~EncoderPool();
  EncoderPool(const EncoderPool&) = delete;
  EncoderPool& operator=(const EncoderPool&) = delete;

  // Starts a sequence's audio: zero conv context, position 0. Its K/V pages (a whole window,
  // which any stream past ~15 s fills) are taken here, so a running stream never finds the
  // cache full. Error when they are not free.
  void reset(int sequence);
  // Gives the sequence's pages back.
  void release(int sequence);

  // A sequence's state after its first frames: frames done, both convolutions' left context
  // and the K/V of those frames. Every stream starts with the same left padding of zeros and
  // the encoder is causal, so the state after the padding is the same for all: computed once
  // (model/left_pad.h), then given to each new sequence instead of encoding it again.
  struct Prefix {
    std::int64_t frames = 0;
    std::vector<float> mel_context;  // the stride-1 convolution's last mel rows (host)
    DeviceBuffer conv1_context;      // [1, encoder dim]: the stride-2 convolution's last input row
    DeviceBuffer kv;                 // KvPages::save of the frames
    DeviceBuffer embeddings;         // [frames / downsample, decoder dim]: what they gave (set by the stream)
  };
  Prefix save_prefix(int sequence) const;
  // Starts a sequence (as reset does) at the saved state.
  void restore_prefix(int sequence, const Prefix& prefix);

  // Encodes every request (at most one per sequence) in as few passes as the buffers allow.
  void encode(std::span<const EncodeRequest> requests);

  const EncoderPoolOptions& options() const { return options_; }
  std::size_t bytes() const { return bytes_; }
  // Bytes of K/V cache one sequence holds.
  static std::size_t sequence_cache_bytes(const ModelConfig& config, const EncoderPoolOptions& options);

 private:
  void encode_pass(std::span<const EncodeRequest> requests);
  // The frames of one request in the pass being run.
  struct PassPart {
    std::int64_t first_frame = 0, frames = 0;
    int sequence = 0;
  };
  void run_layers(std::int64_t n_frames, const KvRows& rows);

  Backend& backend_;
  const ModelConfig& config_;
  const ModelWeights& weights_;
  EncoderPoolOptions options_;
  KvCacheLayout layout_;
  std::unique_ptr<KvPages> pages_;
  std::size_t bytes_ = 0;

  // Per sequence: frames encoded, and the last two mel frames (the stride-1 convolution's
  // left context; host, as the mel is).
  std::vector<std::int64_t> frames_done_;
  std::vector<float> mel_context_;
  // Host staging of one pass: conv input rows, and the I32 indices (im2col rows of both
  // convolutions, positions, sequences) uploaded at once.
  std::vector<float> host_conv0_;
  std::vector<std::int32_t> host_indices_;
  std::vector<PassPart> parts_;

  DeviceBuffer conv0_in_, conv0_cols_;
  // Rows [0, max_sequences): each sequence's saved conv0 output row (the stride-2
  // convolution's left context); then the pass's conv0 outputs.
  DeviceBuffer conv1_in_;
  DeviceBuffer conv1_cols_, indices_;
  DeviceBuffer zeros_;  // I32 zeros: each request's rows as sequence 0 of its own page-table row
  DeviceBuffer x_, normed_, qkv_, attn_, gate_up_, act_, adapter_mid_, adapter_out_;
};

}  // namespace voxtral
