#include "model/encoder.h"

#include <numeric>
#include <vector>

#include "core/error.h"

namespace voxtral {

namespace {
constexpr int kConvKernel = 3;
constexpr int kConv0Context = 2;  // left padding of the stride-1 conv: kernel - stride
constexpr int kConv1Context = 1;  // left padding of the stride-2 conv
}  // namespace

AudioEncoder::AudioEncoder(Backend& backend, const ModelConfig& config, const ModelWeights& weights,
                           int max_positions_per_call, ElemType kv_cache_type)
    : backend_(backend), config_(config), weights_(weights), max_positions_(max_positions_per_call) {
  const auto& enc = config.encoder;
  const std::int64_t mel_bins = config.audio.num_mel_bins;
  const std::int64_t max_mel = static_cast<std::int64_t>(max_positions_) * config.mel_frames_per_position();
  const std::int64_t max_frames = static_cast<std::int64_t>(max_positions_) * config.downsample_factor;
  const auto f32 = ElemType::F32;
  conv0_in_ = DeviceBuffer(backend, f32, kConv0Context + max_mel, mel_bins);
  conv0_cols_ = DeviceBuffer(backend, f32, max_mel, mel_bins * kConvKernel);
  conv1_in_ = DeviceBuffer(backend, f32, kConv1Context + max_mel, enc.dim);
  conv1_cols_ = DeviceBuffer(backend, f32, max_frames, static_cast<std::int64_t>(enc.dim) * kConvKernel);
  x_ = DeviceBuffer(backend, f32, max_frames, enc.dim);
  normed_ = DeviceBuffer(backend, f32, max_frames, enc.dim);
  qkv_ = DeviceBuffer(backend, f32, max_frames, enc.q_width() + 2 * enc.kv_width());
  attn_ = DeviceBuffer(backend, f32, max_frames, enc.q_width());
  gate_up_ = DeviceBuffer(backend, f32, max_frames, 2 * static_cast<std::int64_t>(enc.hidden_dim));
  act_ = DeviceBuffer(backend, f32, max_frames, enc.hidden_dim);
  adapter_mid_ = DeviceBuffer(backend, f32, max_positions_, config.decoder.dim);
  positions_ = DeviceBuffer(backend, ElemType::I32, max_frames, 1);
  host_positions_.resize(static_cast<std::size_t>(max_frames));
  sequences_ = DeviceBuffer(backend, ElemType::I32, max_frames, 1);
  page_table_ = DeviceBuffer(backend, ElemType::I32, 1, 1);
  const std::vector<std::int32_t> zeros(static_cast<std::size_t>(max_frames), 0);
  backend.copy_to_device(sequences_.view(), zeros.data());
  backend.copy_to_device(page_table_.view(), zeros.data());

  cache_layout_ = {enc.n_kv_heads, enc.head_dim, enc.sliding_window + static_cast<int>(max_frames) - 1,
                   enc.sliding_window, kv_cache_type};
  kv_caches_ = DeviceBuffer(backend, kv_cache_type, 2 * static_cast<std::int64_t>(enc.n_layers) * cache_layout_.capacity,
                            enc.kv_width());
  reset();
}

void AudioEncoder::reset() {
  frames_done_ = 0;
  backend_.fill_zero(conv0_in_.view().row_range(0, kConv0Context));
  backend_.fill_zero(conv1_in_.view().row_range(0, kConv1Context));
}

void AudioEncoder::encode(std::span<const float> mel, int n_positions, const Tensor& out, const Tensor* encoder_out) {
  const std::int64_t mel_bins = config_.audio.num_mel_bins;
  const std::int64_t n_mel = static_cast<std::int64_t>(n_positions) * config_.mel_frames_per_position();
  const std::int64_t n_frames = static_cast<std::int64_t>(n_positions) * config_.downsample_factor;
  if (n_positions <= 0 || n_positions > max_positions_ || static_cast<std::int64_t>(mel.size()) != n_mel * mel_bins ||
      out.rows != n_positions || out.cols != config_.decoder.dim) {
    fail("encoder", cat("encode: bad call (", n_positions, " positions, ", mel.size(), " mel values)"));
  }
  const auto& enc = config_.encoder;
  const Tensor conv0_in = conv0_in_.view().row_range(0, kConv0Context + n_mel);
  backend_.copy_to_device(conv0_in.row_range(kConv0Context, n_mel), mel.data());

  // Conv stem: stride 1 then stride 2, both causal, GELU after each.
  const Tensor cols0 = conv0_cols_.view().row_range(0, n_mel);
  backend_.im2col(conv0_in, kConvKernel, 1, cols0);
  const Tensor conv1_in = conv1_in_.view().row_range(0, kConv1Context + n_mel);
  backend_.linear(cols0, weights_.conv0, weights_.conv0_bias, conv1_in.row_range(kConv1Context, n_mel), Epilogue::Gelu);
  const Tensor cols1 = conv1_cols_.view().row_range(0, n_frames);
  backend_.im2col(conv1_in, kConvKernel, 2, cols1);
  const Tensor x = x_.view().row_range(0, n_frames);
  backend_.linear(cols1, weights_.conv1, weights_.conv1_bias, x, Epilogue::Gelu);
  // The last input rows are the left context of the next call.
  backend_.copy(conv0_in.row_range(n_mel, kConv0Context), conv0_in.row_range(0, kConv0Context));
  backend_.copy(conv1_in.row_range(n_mel, kConv1Context), conv1_in.row_range(0, kConv1Context));

  std::iota(host_positions_.begin(), host_positions_.begin() + n_frames, static_cast<std::int32_t>(frames_done_));
  backend_.copy_to_device(positions_.view().row_range(0, n_frames), host_positions_.data());
  run_layers(static_cast<int>(n_frames));
  frames_done_ += n_frames;

  // Adapter: downsample_factor consecutive frames side by side, then a GELU MLP.
  const Tensor normed = normed_.view().row_range(0, n_frames);
  backend_.rms_norm(x, weights_.encoder_norm, enc.norm_eps, normed);
  if (encoder_out != nullptr) backend_.copy(normed, *encoder_out);
  const Tensor grouped = normed.reshaped(n_positions, static_cast<std::int64_t>(enc.dim) * config_.downsample_factor);
  const Tensor mid = adapter_mid_.view().row_range(0, n_positions);
  backend_.linear(grouped, weights_.adapter_in, Weight{}, mid, Epilogue::Gelu);
  backend_.linear(mid, weights_.adapter_out, Weight{}, out, Epilogue::Store);
}

void AudioEncoder::run_layers(int n_frames) {
  const auto& enc = config_.encoder;
  const Tensor x = x_.view().row_range(0, n_frames);
  const Tensor normed = normed_.view().row_range(0, n_frames);
  const Tensor qkv = qkv_.view().row_range(0, n_frames);
  const Tensor attn = attn_.view().row_range(0, n_frames);
  const Tensor gate_up = gate_up_.view().row_range(0, n_frames);
  const Tensor act = act_.view().row_range(0, n_frames);
  const KvRows rows{positions_.view().row_range(0, n_frames), sequences_.view().row_range(0, n_frames), page_table_.view()};
  const RopeParams q_rope{enc.n_heads, enc.head_dim, enc.rope_theta};
  const RopeParams k_rope{enc.n_kv_heads, enc.head_dim, enc.rope_theta};
  for (int l = 0; l < enc.n_layers; ++l) {
    const auto& w = weights_.encoder[static_cast<std::size_t>(l)];
    backend_.norm_linear(x, w.attention_norm, enc.norm_eps, w.qkv, w.qkv_bias, qkv, Epilogue::Store, normed);
    const Tensor q = qkv.col_range(0, enc.q_width());
    const Tensor k = qkv.col_range(enc.q_width(), enc.kv_width());
    const Tensor v = qkv.col_range(enc.q_width() + enc.kv_width(), enc.kv_width());
    const auto li = static_cast<std::size_t>(l);
    backend_.rope_kv_append(q, k, v, rows, q_rope, k_rope, cache_layout_, k_cache(li), v_cache(li));
    backend_.attention(q, rows, enc.n_heads, cache_layout_, k_cache(li), v_cache(li), attn);
    backend_.linear(attn, w.wo, w.wo_bias, x, Epilogue::Add);
    backend_.norm_linear(x, w.ffn_norm, enc.norm_eps, w.gate_up, Weight{}, gate_up, Epilogue::Store, normed);
    backend_.swiglu_linear(gate_up, w.w2, w.w2_bias, x, Epilogue::Add, act);
  }
}

}  // namespace voxtral
