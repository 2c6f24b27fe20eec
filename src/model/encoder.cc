#include "model/encoder.h"

#include <algorithm>
#include <numeric>

#include "core/error.h"

namespace voxtral {

namespace {
constexpr int kConvKernel = 3;
constexpr int kConv0Context = 2;  // left context of the stride-1 conv: kernel - stride

// Frames of a sequence's K/V ring: a whole window plus the rest of one request's frames
// (KvCacheLayout), in whole pages.
std::int64_t ring_capacity(const ModelConfig& config, const EncoderPoolOptions& options) {
  const std::int64_t frames = config.encoder.sliding_window +
                              static_cast<std::int64_t>(options.max_positions_per_sequence) * config.downsample_factor - 1;
  return (frames + options.page_size - 1) / options.page_size * options.page_size;
}
}  // namespace

std::size_t EncoderPool::sequence_cache_bytes(const ModelConfig& config, const EncoderPoolOptions& options) {
  const auto& enc = config.encoder;
  return static_cast<std::size_t>(2 * enc.n_layers * ring_capacity(config, options) * enc.kv_width()) *
         elem_size(options.kv_cache_type);
}

EncoderPool::EncoderPool(Backend& backend, const ModelConfig& config, const ModelWeights& weights,
                         const EncoderPoolOptions& options)
    : backend_(backend), config_(config), weights_(weights), options_(options) {
  const auto& enc = config.encoder;
  if (options_.max_sequences < 1 || options_.max_positions_per_sequence < 1 ||
      options_.max_positions_per_call < options_.max_positions_per_sequence || options_.page_size < 1) {
    fail("encoder", "bad pool options");
  }
  const auto capacity = static_cast<int>(ring_capacity(config, options_));
  layout_ = {enc.n_kv_heads, enc.head_dim, capacity, enc.sliding_window, options_.kv_cache_type, options_.page_size};
  const std::int64_t total_pages = static_cast<std::int64_t>(options_.max_sequences) * layout_.pages_per_sequence();
  pages_ = std::make_unique<KvPages>(backend, layout_, enc.n_layers, options_.max_sequences, total_pages, "encoder");

  const std::int64_t bins = config.audio.num_mel_bins;
  const std::int64_t max_positions = options_.max_positions_per_call;
  const std::int64_t max_mel = max_positions * config.mel_frames_per_position();
  const std::int64_t max_frames = max_positions * config.downsample_factor;
  const std::int64_t max_requests = std::min<std::int64_t>(max_positions, options_.max_sequences);
  const auto f32 = ElemType::F32;
  conv0_in_ = DeviceBuffer(backend, f32, max_mel + kConv0Context * max_requests, bins);
  conv0_cols_ = DeviceBuffer(backend, f32, max_mel, bins * kConvKernel);
  conv1_in_ = DeviceBuffer(backend, f32, options_.max_sequences + max_mel, enc.dim);
  conv1_cols_ = DeviceBuffer(backend, f32, max_frames, static_cast<std::int64_t>(enc.dim) * kConvKernel);
  indices_ = DeviceBuffer(backend, ElemType::I32, kConvKernel * (max_mel + max_frames) + 2 * max_frames, 1);
  zeros_ = DeviceBuffer(backend, ElemType::I32, max_frames, 1);
  const std::vector<std::int32_t> zeros(static_cast<std::size_t>(max_frames), 0);
  backend.copy_to_device(zeros_.view(), zeros.data());
  x_ = DeviceBuffer(backend, f32, max_frames, enc.dim);
  normed_ = DeviceBuffer(backend, f32, max_frames, enc.dim);
  qkv_ = DeviceBuffer(backend, f32, max_frames, enc.q_width() + 2 * enc.kv_width());
  attn_ = DeviceBuffer(backend, f32, max_frames, enc.q_width());
  gate_up_ = DeviceBuffer(backend, f32, max_frames, 2 * static_cast<std::int64_t>(enc.hidden_dim));
  act_ = DeviceBuffer(backend, f32, max_frames, enc.hidden_dim);
  adapter_mid_ = DeviceBuffer(backend, f32, max_positions, config.decoder.dim);
  adapter_out_ = DeviceBuffer(backend, f32, max_positions, config.decoder.dim);
  bytes_ = pages_->bytes();
  for (const DeviceBuffer* b : {&conv0_in_, &conv0_cols_, &conv1_in_, &conv1_cols_, &x_, &normed_, &qkv_,
                                &attn_, &gate_up_, &act_, &adapter_mid_, &adapter_out_}) {
    bytes_ += static_cast<std::size_t>(b->view().numel()) * elem_size(b->view().type);
  }
  frames_done_.assign(static_cast<std::size_t>(options_.max_sequences), 0);
  mel_context_.assign(static_cast<std::size_t>(options_.max_sequences * kConv0Context * bins), 0.0f);
  backend.fill_zero(conv1_in_.view().row_range(0, options_.max_sequences));
}

EncoderPool::~EncoderPool() = default;

void EncoderPool::reset(int sequence) {
  if (sequence < 0 || sequence >= options_.max_sequences) fail("encoder", cat("reset: no sequence ", sequence));
  const auto s = static_cast<std::size_t>(sequence);
  const auto bins = static_cast<std::size_t>(config_.audio.num_mel_bins);
  frames_done_[s] = 0;
  std::fill_n(mel_context_.begin() + static_cast<std::ptrdiff_t>(s * kConv0Context * bins), kConv0Context * bins, 0.0f);
  backend_.fill_zero(conv1_in_.view().row_range(sequence, 1));
  pages_->release(sequence);
  pages_->reserve(sequence, 0, layout_.capacity - 1);
}

EncoderPool::Prefix EncoderPool::save_prefix(int sequence) const {
  if (sequence < 0 || sequence >= options_.max_sequences) fail("encoder", cat("save_prefix: no sequence ", sequence));
  const auto s = static_cast<std::size_t>(sequence);
  const auto context = static_cast<std::size_t>(kConv0Context * config_.audio.num_mel_bins);
  Prefix prefix;
  prefix.frames = frames_done_[s];
  prefix.mel_context.assign(mel_context_.begin() + static_cast<std::ptrdiff_t>(s * context),
                            mel_context_.begin() + static_cast<std::ptrdiff_t>((s + 1) * context));
  const Tensor conv1_row = conv1_in_.view().row_range(sequence, 1);
  prefix.conv1_context = DeviceBuffer(backend_, conv1_row.type, 1, conv1_row.cols);
  backend_.copy(conv1_row, prefix.conv1_context.view());
  prefix.kv = pages_->save(sequence, prefix.frames);
  return prefix;
}

void EncoderPool::restore_prefix(int sequence, const Prefix& prefix) {
  reset(sequence);
  const auto s = static_cast<std::size_t>(sequence);
  if (prefix.mel_context.size() != static_cast<std::size_t>(kConv0Context * config_.audio.num_mel_bins)) {
    fail("encoder", "restore_prefix: a prefix of another model");
  }
  std::copy(prefix.mel_context.begin(), prefix.mel_context.end(),
            mel_context_.begin() + static_cast<std::ptrdiff_t>(s * prefix.mel_context.size()));
  backend_.copy(prefix.conv1_context.view(), conv1_in_.view().row_range(sequence, 1));
  pages_->load(sequence, prefix.frames, prefix.kv);
  frames_done_[s] = prefix.frames;
}

void EncoderPool::release(int sequence) {
  if (sequence >= 0 && sequence < options_.max_sequences) pages_->release(sequence);
}

void EncoderPool::encode(std::span<const EncodeRequest> requests) {
  const std::int64_t per_position = static_cast<std::int64_t>(config_.mel_frames_per_position()) * config_.audio.num_mel_bins;
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const EncodeRequest& r = requests[i];
    if (r.sequence < 0 || r.sequence >= options_.max_sequences || r.n_positions <= 0 ||
        r.n_positions > options_.max_positions_per_sequence ||
        static_cast<std::int64_t>(r.mel.size()) != r.n_positions * per_position || r.out.rows != r.n_positions ||
        r.out.cols != config_.decoder.dim) {
      fail("encoder", cat("encode: bad request (sequence ", r.sequence, ", ", r.n_positions, " positions, ", r.mel.size(),
                          " mel values)"));
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (requests[j].sequence == r.sequence) fail("encoder", "encode: two requests for one sequence");
    }
  }
  // Passes of whole requests that fit the buffers.
  std::size_t first = 0;
  while (first < requests.size()) {
    std::size_t end = first;
    int positions = 0;
    while (end < requests.size() && positions + requests[end].n_positions <= options_.max_positions_per_call) {
      positions += requests[end++].n_positions;
    }
    encode_pass(requests.subspan(first, end - first));
    first = end;
  }
}

void EncoderPool::encode_pass(std::span<const EncodeRequest> requests) {
  const auto& enc = config_.encoder;
  const std::int64_t bins = config_.audio.num_mel_bins;
  const std::int64_t mel_per_position = config_.mel_frames_per_position();
  const std::int64_t frames_per_position = config_.downsample_factor;
  const std::int64_t n_seq = options_.max_sequences;
  std::int64_t n_mel = 0, n_frames = 0, n_positions = 0;
  for (const auto& r : requests) {
    n_mel += r.n_positions * mel_per_position;
    n_frames += r.n_positions * frames_per_position;
    n_positions += r.n_positions;
  }
  const auto n_requests = static_cast<std::int64_t>(requests.size());
  const std::int64_t conv0_rows = n_mel + kConv0Context * n_requests;

  // Host: each request's conv input (its saved context, then its mel), and the rows each
  // convolution output reads. The stride-2 convolution reads conv1_in_: the sequence's saved
  // row for its first tap, this pass's conv0 outputs (from row n_seq) for the rest.
  host_conv0_.resize(static_cast<std::size_t>(conv0_rows * bins));
  const std::int64_t idx0_size = kConvKernel * n_mel, idx1_size = kConvKernel * n_frames;
  host_indices_.resize(static_cast<std::size_t>(idx0_size + idx1_size + 2 * n_frames));
  std::int32_t* idx0 = host_indices_.data();
  std::int32_t* idx1 = idx0 + idx0_size;
  std::int32_t* positions = idx1 + idx1_size;
  std::int32_t* sequences = positions + n_frames;
  std::int64_t in_row = 0, mel_row = 0, frame = 0;
  parts_.clear();
  for (const auto& r : requests) {
    parts_.push_back({frame, r.n_positions * frames_per_position, r.sequence});
    const auto s = static_cast<std::size_t>(r.sequence);
    float* context = mel_context_.data() + s * static_cast<std::size_t>(kConv0Context * bins);
    float* block = host_conv0_.data() + in_row * bins;
    std::copy_n(context, kConv0Context * bins, block);
    std::copy(r.mel.begin(), r.mel.end(), block + kConv0Context * bins);
    const std::int64_t mel_rows = r.n_positions * mel_per_position;
    std::copy_n(block + mel_rows * bins, kConv0Context * bins, context);  // the last two rows
    for (std::int64_t t = 0; t < mel_rows; ++t) {
      for (int k = 0; k < kConvKernel; ++k) idx0[(mel_row + t) * kConvKernel + k] = static_cast<std::int32_t>(in_row + t + k);
    }
    const std::int64_t frames = r.n_positions * frames_per_position;
    pages_->reserve(r.sequence, frames_done_[s], frames_done_[s] + frames - 1);
    for (std::int64_t t = 0; t < frames; ++t) {
      for (int k = 0; k < kConvKernel; ++k) {
        const std::int64_t j = 2 * t + k - 1;  // conv0 output row of this request; -1 is the saved one
        idx1[(frame + t) * kConvKernel + k] = static_cast<std::int32_t>(j < 0 ? r.sequence : n_seq + mel_row + j);
      }
      positions[frame + t] = static_cast<std::int32_t>(frames_done_[s] + t);
      sequences[frame + t] = r.sequence;
    }
    frames_done_[s] += frames;
    in_row += mel_rows + kConv0Context;
    mel_row += mel_rows;
    frame += frames;
  }
  const Tensor conv0_in = conv0_in_.view().row_range(0, conv0_rows);
  const Tensor indices = indices_.view().row_range(0, static_cast<std::int64_t>(host_indices_.size()));
  backend_.copy_to_device(conv0_in, host_conv0_.data());
  backend_.copy_to_device(indices, host_indices_.data());

  // Conv stem: stride 1 then stride 2, both causal, GELU after each.
  const Tensor cols0 = conv0_cols_.view().row_range(0, n_mel);
  backend_.im2col(conv0_in, indices.row_range(0, idx0_size), kConvKernel, cols0);
  const Tensor conv1_in = conv1_in_.view().row_range(0, n_seq + n_mel);
  backend_.linear(cols0, weights_.conv0, weights_.conv0_bias, conv1_in.row_range(n_seq, n_mel), Epilogue::Gelu);
  const Tensor cols1 = conv1_cols_.view().row_range(0, n_frames);
  backend_.im2col(conv1_in, indices.row_range(idx0_size, idx1_size), kConvKernel, cols1);
  const Tensor x = x_.view().row_range(0, n_frames);
  backend_.linear(cols1, weights_.conv1, weights_.conv1_bias, x, Epilogue::Gelu);
  // Each sequence's last conv0 output is the stride-2 convolution's context next time.
  mel_row = 0;
  for (const auto& r : requests) {
    mel_row += r.n_positions * mel_per_position;
    backend_.copy(conv1_in.row_range(n_seq + mel_row - 1, 1), conv1_in.row_range(r.sequence, 1));
  }

  const KvRows rows{indices.row_range(idx0_size + idx1_size, n_frames),
                    indices.row_range(idx0_size + idx1_size + n_frames, n_frames), pages_->table()};
  run_layers(n_frames, rows);

  // Adapter: downsample_factor consecutive frames side by side (every request holds whole
  // positions, so groups never straddle two streams), then a GELU MLP.
  const Tensor normed = normed_.view().row_range(0, n_frames);
  backend_.rms_norm(x, weights_.encoder_norm, enc.norm_eps, normed);
  const Tensor grouped = normed.reshaped(n_positions, static_cast<std::int64_t>(enc.dim) * frames_per_position);
  const Tensor mid = adapter_mid_.view().row_range(0, n_positions);
  const Tensor out = adapter_out_.view().row_range(0, n_positions);
  backend_.linear(grouped, weights_.adapter_in, Weight{}, mid, Epilogue::Gelu);
  backend_.linear(mid, weights_.adapter_out, Weight{}, out, Epilogue::Store);
  std::int64_t position = 0;
  for (const auto& r : requests) {
    backend_.copy(out.row_range(position, r.n_positions), r.out);
    if (r.encoder_out != nullptr) {
      backend_.copy(normed.row_range(position * frames_per_position, r.n_positions * frames_per_position), *r.encoder_out);
    }
    position += r.n_positions;
  }
}

void EncoderPool::run_layers(std::int64_t n_frames, const KvRows& rows) {
  const auto& enc = config_.encoder;
  const Tensor x = x_.view().row_range(0, n_frames);
  const Tensor normed = normed_.view().row_range(0, n_frames);
  const Tensor qkv = qkv_.view().row_range(0, n_frames);
  const Tensor attn = attn_.view().row_range(0, n_frames);
  const Tensor gate_up = gate_up_.view().row_range(0, n_frames);
  const Tensor act = act_.view().row_range(0, n_frames);
  const RopeParams q_rope{enc.n_heads, enc.head_dim, enc.rope_theta};
  const RopeParams k_rope{enc.n_kv_heads, enc.head_dim, enc.rope_theta};
  for (int l = 0; l < enc.n_layers; ++l) {
    const auto& w = weights_.encoder[static_cast<std::size_t>(l)];
    backend_.norm_linear(x, w.attention_norm, enc.norm_eps, w.qkv, w.qkv_bias, qkv, Epilogue::Store, normed);
    const Tensor q = qkv.col_range(0, enc.q_width());
    const Tensor k = qkv.col_range(enc.q_width(), enc.kv_width());
    const Tensor v = qkv.col_range(enc.q_width() + enc.kv_width(), enc.kv_width());
    const Tensor k_cache = pages_->k_cache(l), v_cache = pages_->v_cache(l);
    backend_.rope_kv_append(q, k, v, rows, q_rope, k_rope, layout_, k_cache, v_cache);
    // Attention one request at a time, each over its own page-table row: a request's rows are
    // consecutive positions of one sequence, so they share their keys' reads (on a GPU the
    // tiled kernel; rows of many sequences in one call would each read their whole window).
    for (const PassPart& part : parts_) {
      const KvRows own{rows.positions.row_range(part.first_frame, part.frames), zeros_.view().row_range(0, part.frames),
                       rows.page_table.row_range(part.sequence, 1)};
      backend_.attention(q.row_range(part.first_frame, part.frames), own, enc.n_heads, layout_, k_cache, v_cache,
                         attn.row_range(part.first_frame, part.frames));
    }
    backend_.linear(attn, w.wo, w.wo_bias, x, Epilogue::Add);
    backend_.norm_linear(x, w.ffn_norm, enc.norm_eps, w.gate_up, Weight{}, gate_up, Epilogue::Store, normed);
    backend_.swiglu_linear(gate_up, w.w2, w.w2_bias, x, Epilogue::Add, act);
  }
}

}  // namespace voxtral
