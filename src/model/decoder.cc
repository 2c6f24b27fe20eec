#include "model/decoder.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
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
        hidden[static_cast<std::size_t>(a)] = static_cast<float>(0.5 * sum * (1.0 + std::erf(sum / std::sqrt(2.0))));  // GELU
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

namespace {

constexpr int kStepInputs = 4;  // ids, positions, sequences, audio rows

}  // namespace

DecoderPool::DecoderPool(Backend& backend, const ModelConfig& config, const ModelWeights& weights,
                         const DecoderPoolOptions& options)
    : backend_(backend), config_(config), weights_(weights), options_(options) {
  const auto& dec = config.decoder;
  if (options_.max_batch <= 0) options_.max_batch = options_.max_sequences;
  if (options_.max_sequences < 1 || options_.max_batch < 1 ||
      options_.max_prefill_rows < 1 || options_.page_size < 1 || options_.audio_ring_positions < 1) {
    fail("decoder", cat("bad pool options (", options_.max_sequences, " sequences, batch ", options_.max_batch,
                        ", page ", options_.page_size, ")"));
  }
  const int page = options_.page_size;
  // The ring holds a whole window plus the rest of a prefill's rows (KvCacheLayout).
  const std::int64_t ring = dec.sliding_window + options_.max_prefill_rows - 1;
  const auto capacity = static_cast<int>((ring + page - 1) / page * page);
  layout_ = {dec.n_kv_heads, dec.head_dim, capacity, dec.sliding_window, options_.kv_cache_type, page};
  const int per_sequence = layout_.pages_per_sequence();
  dummy_sequence_ = options_.max_sequences;
  const std::int64_t wanted = options_.pages > 0 ? options_.pages
                                                 : static_cast<std::int64_t>(options_.max_sequences) * per_sequence;
  // One more page for the padding sequence.
  pages_ = std::make_unique<KvPages>(backend, layout_, dec.n_layers, options_.max_sequences + 1, wanted + 1, "decoder");
  const auto f32 = ElemType::F32;
  const std::int64_t rows = std::max(options_.max_batch, options_.max_prefill_rows);
  const std::int64_t qkv_width = dec.q_width() + 2 * dec.kv_width();
  const std::int64_t n_seq = options_.max_sequences + 1;
  ffn_norms_ = DeviceBuffer(backend, f32, n_seq, static_cast<std::int64_t>(dec.n_layers) * dec.dim);
  audio_rings_ = DeviceBuffer(backend, f32, n_seq * options_.audio_ring_positions, dec.dim);
  x_ = DeviceBuffer(backend, f32, rows, dec.dim);
  normed_ = DeviceBuffer(backend, f32, rows, dec.dim);
  qkv_ = DeviceBuffer(backend, f32, rows, qkv_width);
  attn_ = DeviceBuffer(backend, f32, rows, dec.q_width());
  gate_up_ = DeviceBuffer(backend, f32, rows, 2 * static_cast<std::int64_t>(dec.hidden_dim));
  act_ = DeviceBuffer(backend, f32, rows, dec.hidden_dim);
  step_inputs_ = DeviceBuffer(backend, ElemType::I32, kStepInputs * options_.max_batch, 1);
  step_inputs_host_.assign(static_cast<std::size_t>(kStepInputs * options_.max_batch), 0);
  prefill_ids_ = DeviceBuffer(backend, ElemType::I32, options_.max_prefill_rows, 1);
  prefill_positions_ = DeviceBuffer(backend, ElemType::I32, options_.max_prefill_rows, 1);
  prefill_sequences_ = DeviceBuffer(backend, ElemType::I32, options_.max_prefill_rows, 1);
  step_audio_ = DeviceBuffer(backend, f32, options_.max_batch, dec.dim);
  logits_ = DeviceBuffer(backend, f32, options_.max_batch, dec.vocab_size);
  next_ids_ = DeviceBuffer(backend, ElemType::I32, options_.max_batch, 1);
  next_host_.assign(static_cast<std::size_t>(options_.max_batch), 0);
  bytes_ = pages_->bytes();
  for (const DeviceBuffer* b : {&ffn_norms_, &audio_rings_, &x_, &normed_, &qkv_, &attn_,
                                &gate_up_, &act_, &step_audio_, &logits_}) {
    bytes_ += static_cast<std::size_t>(b->view().numel()) * elem_size(b->view().type);
  }

  in_use_.assign(static_cast<std::size_t>(options_.max_sequences), false);
  // The padding sequence: every logical page is one zeroed page, its norms and audio are
  // zeros (any finite values do: its outputs are never read).
  pages_->pin_to_one_page(dummy_sequence_);
  backend.fill_zero(ffn_norms_.view());
  backend.fill_zero(audio_rings_.view());
}

DecoderPool::~DecoderPool() = default;

int DecoderPool::acquire() {
  std::lock_guard lock(mutex_);
  for (std::size_t s = 0; s < in_use_.size(); ++s) {
    if (!in_use_[s]) {
      in_use_[s] = true;
      return static_cast<int>(s);
    }
  }
  throw BusyError(cat("decoder: all ", in_use_.size(), " stream slots are in use"));  // front ends name their option
}

void DecoderPool::release(int sequence) {
  std::lock_guard lock(mutex_);
  if (sequence < 0 || sequence >= options_.max_sequences || !in_use_[static_cast<std::size_t>(sequence)]) return;
  pages_->release(sequence);
  in_use_[static_cast<std::size_t>(sequence)] = false;
}

int DecoderPool::sequences_in_use() const {
  std::lock_guard lock(mutex_);
  return static_cast<int>(std::count(in_use_.begin(), in_use_.end(), true));
}

void DecoderPool::check_sequence(int sequence, const char* what) const {
  std::lock_guard lock(mutex_);
  if (sequence < 0 || sequence >= options_.max_sequences || !in_use_[static_cast<std::size_t>(sequence)]) {
    fail("decoder", cat(what, ": sequence ", sequence, " is not in use"));
  }
}

void DecoderPool::start(int sequence, const std::vector<std::vector<float>>& ffn_norms) {
  check_sequence(sequence, "start");
  const auto& dec = config_.decoder;
  if (ffn_norms.size() != static_cast<std::size_t>(dec.n_layers)) fail("decoder", "start: one FFN norm per layer expected");
  std::vector<float> row;
  row.reserve(static_cast<std::size_t>(dec.n_layers) * dec.dim);
  for (const auto& norm : ffn_norms) {
    if (norm.size() != static_cast<std::size_t>(dec.dim)) fail("decoder", "start: FFN norm width mismatch");
    row.insert(row.end(), norm.begin(), norm.end());
  }
  backend_.copy_to_device(ffn_norms_.view().row_range(sequence, 1), row.data());
  pages_->release(sequence);
}

Tensor DecoderPool::audio_ring(int sequence) const {
  return audio_rings_.view().row_range(static_cast<std::int64_t>(sequence) * options_.audio_ring_positions,
                                       options_.audio_ring_positions);
}

void DecoderPool::reserve(int sequence, std::int64_t first, std::int64_t last) {
  pages_->reserve(sequence, first, last);
}

DeviceBuffer DecoderPool::save_positions(int sequence, std::int64_t count) const {
  check_sequence(sequence, "save_positions");
  return pages_->save(sequence, count);
}

void DecoderPool::load_positions(int sequence, std::int64_t count, const DeviceBuffer& saved) {
  check_sequence(sequence, "load_positions");
  pages_->load(sequence, count, saved);
}

DecoderPool::Buffers DecoderPool::buffers(std::int64_t n) const {
  return {x_.view().row_range(0, n),   normed_.view().row_range(0, n),  qkv_.view().row_range(0, n),
          attn_.view().row_range(0, n), gate_up_.view().row_range(0, n), act_.view().row_range(0, n)};
}

void DecoderPool::run_layers(const Buffers& b, const KvRows& rows) {
  const auto& dec = config_.decoder;
  const RopeParams q_rope{dec.n_heads, dec.head_dim, dec.rope_theta};
  const RopeParams k_rope{dec.n_kv_heads, dec.head_dim, dec.rope_theta};
  for (int l = 0; l < dec.n_layers; ++l) {
    const auto& w = weights_.decoder[static_cast<std::size_t>(l)];
    const Tensor k_cache = pages_->k_cache(l), v_cache = pages_->v_cache(l);
    backend_.norm_qkv_rope(b.x, w.attention_norm, dec.norm_eps, w.qkv, b.qkv, b.normed, rows, q_rope, k_rope, layout_,
                           k_cache, v_cache);
    backend_.attention(b.qkv.col_range(0, dec.q_width()), rows, dec.n_heads, layout_, k_cache, v_cache, b.attn);
    backend_.linear(b.attn, w.wo, Weight{}, b.x, Epilogue::Add);
    const Tensor norms = ffn_norms_.view().col_range(static_cast<std::int64_t>(l) * dec.dim, dec.dim);
    backend_.norm_swiglu(b.x, norms, rows.sequences, dec.norm_eps, w.gate_up, b.act, b.normed, b.gate_up);
    backend_.linear(b.act, w.w2, Weight{}, b.x, Epilogue::Add);
  }
}

void DecoderPool::prefill(int sequence, std::span<const int> ids, const Tensor& audio_rows, std::int64_t first_position,
                          const Tensor* logits) {
  check_sequence(sequence, "prefill");
  const auto n = static_cast<std::int64_t>(ids.size());
  if (n <= 0 || n > options_.max_prefill_rows || audio_rows.rows != n || first_position < 0 ||
      first_position + n > std::numeric_limits<std::int32_t>::max()) {
    fail("decoder", cat("prefill: bad call (", n, " rows at position ", first_position, ")"));
  }
  reserve(sequence, first_position, first_position + n - 1);
  std::vector<std::int32_t> host_ids(ids.begin(), ids.end());
  std::vector<std::int32_t> host_positions(static_cast<std::size_t>(n));
  std::iota(host_positions.begin(), host_positions.end(), static_cast<std::int32_t>(first_position));
  const std::vector<std::int32_t> host_sequences(static_cast<std::size_t>(n), sequence);
  const KvRows rows{prefill_positions_.view().row_range(0, n), prefill_sequences_.view().row_range(0, n), pages_->table()};
  const Tensor ids_view = prefill_ids_.view().row_range(0, n);
  backend_.copy_to_device(ids_view, host_ids.data());
  backend_.copy_to_device(rows.positions, host_positions.data());
  backend_.copy_to_device(rows.sequences, host_sequences.data());
  const Buffers b = buffers(n);
  backend_.embed(weights_.tok_embeddings, ids_view, audio_rows, b.x);
  run_layers(b, rows);
  if (logits != nullptr) {
    backend_.norm_linear(b.x, weights_.final_norm, config_.decoder.norm_eps, weights_.tok_embeddings, Weight{}, *logits,
                         Epilogue::Store, b.normed);
  }
}

int DecoderPool::bucket_for(int n) const {
  int bucket = 1;
  while (bucket < n) bucket *= 2;
  return std::min(bucket, options_.max_batch);
}

void DecoderPool::step_ops(int bucket) {
  const std::int64_t n = bucket;
  const std::int64_t stride = options_.max_batch;
  const Tensor inputs = step_inputs_.view();
  const Tensor ids = inputs.row_range(0, n);
  const KvRows rows{inputs.row_range(stride, n), inputs.row_range(2 * stride, n), pages_->table(), true};
  const Tensor audio_rows = inputs.row_range(3 * stride, n);
  const Tensor audio = step_audio_.view().row_range(0, n);
  const Buffers b = buffers(n);
  backend_.gather_rows(audio_rings_.view(), audio_rows, audio);
  backend_.embed(weights_.tok_embeddings, ids, audio, b.x);
  run_layers(b, rows);
  const Tensor logits = logits_.view().row_range(0, n);
  backend_.norm_linear(b.x, weights_.final_norm, config_.decoder.norm_eps, weights_.tok_embeddings, Weight{}, logits,
                       Epilogue::Store, b.normed);
  backend_.argmax(logits, next_ids_.view().row_range(0, n));
}

void DecoderPool::step(std::span<const DecodeRow> rows, std::span<int> next) {
  const auto n = static_cast<int>(rows.size());
  if (n <= 0 || n > options_.max_batch || next.size() < rows.size()) {
    fail("decoder", cat("step: ", n, " rows (1 to ", options_.max_batch, ")"));
  }
  const int bucket = bucket_for(n);
  const std::size_t stride = static_cast<std::size_t>(options_.max_batch);
  auto* ids = step_inputs_host_.data();
  auto* positions = ids + stride;
  auto* sequences = ids + 2 * stride;
  auto* audio_rows = ids + 3 * stride;
  for (int i = 0; i < bucket; ++i) {
    const auto at = static_cast<std::size_t>(i);
    if (i < n) {
      const DecodeRow& r = rows[at];
      check_sequence(r.sequence, "step");
      if (r.position < 0 || r.position > std::numeric_limits<std::int32_t>::max() || r.audio_row < 0 ||
          r.audio_row >= options_.audio_ring_positions) {
        fail("decoder", cat("step: bad row (position ", r.position, ", audio row ", r.audio_row, ")"));
      }
      // A sequence's rows follow each other at consecutive positions (speculative rows ride
      // behind its next one), so that all of them find their keys written before they attend.
      const bool continues = i > 0 && rows[at - 1].sequence == r.sequence;
      if (continues && r.position != rows[at - 1].position + 1) {
        fail("decoder", cat("step: rows of sequence ", r.sequence, " at positions ", rows[at - 1].position, " and ",
                            r.position, " (a sequence's rows must be consecutive positions)"));
      }
      for (int j = 0; !continues && j < i; ++j) {
        if (rows[static_cast<std::size_t>(j)].sequence == r.sequence) {
          fail("decoder", cat("step: sequence ", r.sequence, " appears in rows that do not follow each other"));
        }
      }
      reserve(r.sequence, r.position, r.position);
      ids[at] = r.id;
      positions[at] = static_cast<std::int32_t>(r.position);
      sequences[at] = r.sequence;
      audio_rows[at] = static_cast<std::int32_t>(static_cast<std::int64_t>(r.sequence) * options_.audio_ring_positions +
                                                 r.audio_row);
    } else {  // padding up to the bucket: the dummy sequence at position 0
      ids[at] = 0;
      positions[at] = 0;
      sequences[at] = dummy_sequence_;
      audio_rows[at] = dummy_sequence_ * options_.audio_ring_positions;
    }
  }
  backend_.copy_to_device(step_inputs_.view(), step_inputs_host_.data());
  auto& recording = recordings_[bucket];
  if (!recording) {
    recording = backend_.record([this, bucket] { step_ops(bucket); });
  } else {
    backend_.replay(*recording);
  }
  backend_.copy_to_host(next_ids_.view().row_range(0, n), next_host_.data());
  std::copy_n(next_host_.begin(), n, next.begin());
}

}  // namespace voxtral
