#include "model/decoder.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace voxtral {

std::vector<std::vector<float>> time_conditioned_ffn_norms(const ModelConfig& config, const ModelWeights& weights,
                                                           int n_delay_tokens) {
  const int dim = config.decoder.dim;
  const int ada = config.decoder.ada_norm_dim;
  std::vector<std::vector<float>> norms;
  // The sinusoidal time embedding, in float32 as the reference computes it.
  const int half = dim / 2;
  std::vector<float> t_cond(static_cast<std::size_t>(dim), 0.0f);
  for (int j = 0; j < half; ++j) {
    const auto inv_freq = static_cast<float>(std::exp(-std::log(10000.0) * j / half));
    const float angle = static_cast<float>(n_delay_tokens) * inv_freq;
    t_cond[static_cast<std::size_t>(j)] = std::cos(angle);
    t_cond[static_cast<std::size_t>(half + j)] = std::sin(angle);
  }
  for (const auto& layer : weights.decoder) {
    std::vector<float> norm = layer.ffn_norm;
    if (ada > 0) {
      std::vector<float> hidden(static_cast<std::size_t>(ada));
      for (int a = 0; a < ada; ++a) {
        double sum = 0;
        for (int j = 0; j < dim; ++j) {
          sum += static_cast<double>(layer.ada_down[static_cast<std::size_t>(a) * dim + j]) * t_cond[static_cast<std::size_t>(j)];
        }
        const double v = sum;
        hidden[static_cast<std::size_t>(a)] = static_cast<float>(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
      }
      for (int j = 0; j < dim; ++j) {
        double scale = 0;
        for (int a = 0; a < ada; ++a) {
          scale += static_cast<double>(layer.ada_up[static_cast<std::size_t>(j) * ada + a]) * hidden[static_cast<std::size_t>(a)];
        }
        norm[static_cast<std::size_t>(j)] *= static_cast<float>(1.0 + scale);
      }
    }
    norms.push_back(std::move(norm));
  }
  return norms;
}

TextDecoder::TextDecoder(Backend& backend, const ModelConfig& config, const ModelWeights& weights, int max_rows,
                         std::int64_t max_positions, ElemType kv_cache_type)
    : backend_(backend), config_(config), weights_(weights), max_rows_(max_rows) {
  const auto& dec = config.decoder;
  const auto f32 = ElemType::F32;
  const std::int64_t qkv_width = dec.q_width() + 2 * dec.kv_width();
  auto make = [&](std::int64_t rows) {
    return std::array<DeviceBuffer, 6>{DeviceBuffer(backend, f32, rows, dec.dim), DeviceBuffer(backend, f32, rows, dec.dim),
                                       DeviceBuffer(backend, f32, rows, qkv_width), DeviceBuffer(backend, f32, rows, dec.q_width()),
                                       DeviceBuffer(backend, f32, rows, 2 * static_cast<std::int64_t>(dec.hidden_dim)),
                                       DeviceBuffer(backend, f32, rows, dec.hidden_dim)};
  };
  auto batch = make(max_rows);
  x_ = std::move(batch[0]), normed_ = std::move(batch[1]), qkv_ = std::move(batch[2]);
  attn_ = std::move(batch[3]), gate_up_ = std::move(batch[4]), act_ = std::move(batch[5]);
  auto single = make(1);
  step_x_ = std::move(single[0]), step_normed_ = std::move(single[1]), step_qkv_ = std::move(single[2]);
  step_attn_ = std::move(single[3]), step_gate_up_ = std::move(single[4]), step_act_ = std::move(single[5]);
  ids_ = DeviceBuffer(backend, ElemType::I32, max_rows, 1);
  positions_ = DeviceBuffer(backend, ElemType::I32, max_rows, 1);
  step_audio_ = DeviceBuffer(backend, f32, 1, dec.dim);
  step_id_ = DeviceBuffer(backend, ElemType::I32, 1, 1);
  step_position_ = DeviceBuffer(backend, ElemType::I32, 1, 1);
  logits_ = DeviceBuffer(backend, f32, 1, dec.vocab_size);

  const std::int64_t capacity = std::min<std::int64_t>(dec.sliding_window + max_rows - 1, std::max<std::int64_t>(max_positions, 1));
  cache_layout_ = {dec.n_kv_heads, dec.head_dim, static_cast<int>(capacity), dec.sliding_window, kv_cache_type};
  // A cache sized below the window plus a batch never wraps: positions must stay below it.
  if (capacity < dec.sliding_window + max_rows - 1) position_limit_ = capacity;
  kv_caches_ = DeviceBuffer(backend, kv_cache_type, 2 * dec.n_layers * capacity, dec.kv_width());
}

void TextDecoder::start(const std::vector<Weight>& ffn_norms) {
  if (ffn_norms.size() != weights_.decoder.size()) fail("decoder", "start: one FFN norm per layer expected");
  if (ffn_norms_ != ffn_norms) step_recording_.reset();  // the recorded step captured the old norms
  ffn_norms_ = ffn_norms;
}

TextDecoder::Scratch TextDecoder::batch_scratch(int n) const {
  return {normed_.view().row_range(0, n), qkv_.view().row_range(0, n), attn_.view().row_range(0, n),
          gate_up_.view().row_range(0, n), act_.view().row_range(0, n)};
}

TextDecoder::Scratch TextDecoder::step_scratch() const {
  return {step_normed_.view(), step_qkv_.view(), step_attn_.view(), step_gate_up_.view(), step_act_.view()};
}

void TextDecoder::run_layers(const Tensor& x, const Tensor& positions, const Scratch& s) {
  const auto& dec = config_.decoder;
  const Tensor& normed = s.normed;
  const Tensor& qkv = s.qkv;
  const Tensor& attn = s.attn;
  const Tensor& gate_up = s.gate_up;
  const Tensor& act = s.act;
  const RopeParams q_rope{dec.n_heads, dec.head_dim, dec.rope_theta};
  const RopeParams k_rope{dec.n_kv_heads, dec.head_dim, dec.rope_theta};
  for (int l = 0; l < dec.n_layers; ++l) {
    const auto li = static_cast<std::size_t>(l);
    const auto& w = weights_.decoder[li];
    backend_.norm_qkv_rope(x, w.attention_norm, dec.norm_eps, w.qkv, qkv, normed, positions, q_rope, k_rope,
                           cache_layout_, k_cache(li), v_cache(li));
    const Tensor q = qkv.col_range(0, dec.q_width());
    backend_.attention(q, positions, dec.n_heads, cache_layout_, k_cache(li), v_cache(li), attn);
    backend_.linear(attn, w.wo, Weight{}, x, Epilogue::Add);
    backend_.norm_swiglu(x, ffn_norms_[li], dec.norm_eps, w.gate_up, act, normed, gate_up);
    backend_.linear(act, w.w2, Weight{}, x, Epilogue::Add);
  }
}

void TextDecoder::check_position(std::int64_t position) const {
  if (position >= position_limit_) {
    fail("decoder", cat("position ", position, " is past the ", position_limit_,
                        " positions this decoder's cache was sized for (more audio than the stream expected)"));
  }
}

void TextDecoder::prefill(std::span<const int> ids, const Tensor& audio_rows, std::int64_t first_position,
                          const Tensor* logits) {
  const auto n = static_cast<int>(ids.size());
  if (n <= 0 || n > max_rows_ || audio_rows.rows != n || ffn_norms_.empty()) fail("decoder", "prefill: bad call");
  check_position(first_position + n - 1);
  std::vector<std::int32_t> host_ids(ids.begin(), ids.end());
  std::vector<std::int32_t> host_positions(static_cast<std::size_t>(n));
  std::iota(host_positions.begin(), host_positions.end(), static_cast<std::int32_t>(first_position));
  const Tensor ids_view = ids_.view().row_range(0, n);
  const Tensor positions = positions_.view().row_range(0, n);
  backend_.copy_to_device(ids_view, host_ids.data());
  backend_.copy_to_device(positions, host_positions.data());
  const Tensor x = x_.view().row_range(0, n);
  backend_.embed(weights_.tok_embeddings, ids_view, audio_rows, x);
  run_layers(x, positions, batch_scratch(n));
  if (logits != nullptr) {
    backend_.norm_linear(x, weights_.final_norm, config_.decoder.norm_eps, weights_.tok_embeddings, Weight{}, *logits,
                         Epilogue::Store, normed_.view().row_range(0, n));
  }
}

void TextDecoder::step_ops() {
  const Tensor& x = step_x_.view();
  backend_.embed(weights_.tok_embeddings, step_id_.view(), step_audio_.view(), x);
  run_layers(x, step_position_.view(), step_scratch());
  backend_.norm_linear(x, weights_.final_norm, config_.decoder.norm_eps, weights_.tok_embeddings, Weight{}, logits_.view(),
                       Epilogue::Store, step_normed_.view());
  backend_.argmax(logits_.view(), step_id_.view());
}

int TextDecoder::step(int id, const Tensor& audio_row, std::int64_t position) {
  if (ffn_norms_.empty() || audio_row.rows != 1) fail("decoder", "step: bad call");
  check_position(position);
  const std::int32_t host_id = id;
  const auto host_position = static_cast<std::int32_t>(position);
  backend_.copy_to_device(step_id_.view(), &host_id);
  backend_.copy_to_device(step_position_.view(), &host_position);
  backend_.copy(audio_row, step_audio_.view());
  if (!step_recording_) {
    step_recording_ = backend_.record([this] { step_ops(); });
  } else {
    backend_.replay(*step_recording_);
  }
  std::int32_t next = 0;
  backend_.copy_to_host(step_id_.view(), &next);
  return next;
}

}  // namespace voxtral
