// The backend interface: device memory and the ops the model is written in. The encoder,
// adapter, decoder and schedule (src/model/) are written once against this interface; the
// CPU backend (src/backend/cpu/) and the CUDA backend implement it.
//
// Rules every op follows, so that a GPU backend never needs the host inside a forward pass:
//  * activations are F32 tensors in backend memory; weights are backend-owned Weight handles;
//  * anything that changes from call to call inside a decode step (token ids, positions)
//    is read from backend memory, never passed as a host scalar;
//  * ops are issued in order and may run asynchronously; copy_to_host waits for them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/quant.h"
#include "core/safetensors.h"

namespace voxtral {

enum class ElemType { F32, BF16, F16, I32 };
std::size_t elem_size(ElemType type);

// A row-major 2-D view of backend memory: `rows` x `cols` with `stride` elements between
// the starts of consecutive rows (stride >= cols). Views never own memory.
struct Tensor {
  void* data = nullptr;
  ElemType type = ElemType::F32;
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  std::int64_t stride = 0;

  bool contiguous() const { return stride == cols; }
  std::int64_t numel() const { return rows * cols; }
  // Rows [first, first + count).
  Tensor row_range(std::int64_t first, std::int64_t count) const;
  // Columns [first, first + count) of every row (a strided view).
  Tensor col_range(std::int64_t first, std::int64_t count) const;
  // The same contiguous memory seen as rows x cols (numel must match).
  Tensor reshaped(std::int64_t new_rows, std::int64_t new_cols) const;
  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
};

// A weight matrix [rows = outputs, cols = inputs] (or a vector: rows = 1) in whatever
// storage the backend chose for it. `handle` means something only to the backend that
// made it (a device pointer, a list of row segments in a memory map, ...).
struct Weight {
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  const void* handle = nullptr;
  bool empty() const { return handle == nullptr; }
  bool operator==(const Weight&) const = default;
};

// One matrix of a weight as the host holds it: a tensor of the model file in any float
// dtype, or the two planes of a block-quantized matrix (core/quant.h: I8 (Q8) or U8 (Q4)
// codes [rows, bytes per row] and F16 scales [rows, cols / 32]) from a quantized file or
// quantized at load. The model keeps that memory alive as long as the backend (the memory
// map; the planes it quantized), so a backend may use it in place.
struct WeightPart {
  const TensorView* values = nullptr;
  const TensorView* scales = nullptr;  // Q8/Q4 only
  // FP8: a plain float tensor the backend quantizes itself while loading it (the CUDA backend
  // on GPUs with FP8 tensor cores; backends without the format refuse it before any load).
  WeightFormat quantize_at_load = WeightFormat::BF16;

  WeightFormat format() const;  // BF16 for a plain float tensor (whatever its dtype)
  std::int64_t rows() const;    // outputs
  std::int64_t cols() const;    // inputs: Q4 holds two per byte; a plain tensor's trailing dims
};

// How a weight is used, so the backend can pick its storage and kernels: Dense weights
// multiply many rows at once (encoder, adapter); Streamed weights are read once per decoded
// token (the decoder). The CPU reads both in place as stored.
enum class WeightUse { Dense, Streamed };

enum class Epilogue {
  Store,     // y = x W^T (+ b)
  Gelu,      // y = gelu(x W^T (+ b)), exact erf GELU
  Add,       // y += x W^T (+ b)   (residual connection)
};

// Geometry of the paged K/V cache of one layer. The cache holds many sequences (streams'
// segments); each sees its keys as a ring of `capacity` positions: keys of absolute position
// p live at ring index p % capacity. The ring is cut into pages of `page_size` positions,
// and a page table maps each sequence's logical pages to physical pages of the layer's cache
// tensor ([pages * page_size, n_kv_heads * head_dim]), so memory is taken as sequences grow
// and given back when they end (as vLLM's PagedAttention). The cache row of (sequence s,
// position p) is
//     page_table[s][(p % capacity) / page_size] * page_size + p % page_size.
// capacity >= window + (most rows of one sequence appended in one call) - 1, so that a batch
// of queries still finds every key of its window. A single-sequence cache is the special case
// page_size = capacity with page_table = [[0]].
struct KvCacheLayout {
  int n_kv_heads = 0;
  int head_dim = 0;
  int capacity = 0;   // ring positions per sequence, a multiple of page_size
  int window = 0;
  ElemType type = ElemType::F32;  // F32, or BF16 to halve the cache's memory and traffic
  int page_size = 0;  // 0 means capacity (one page per sequence)
  int pages_per_sequence() const { return capacity / rows_per_page(); }
  int rows_per_page() const { return page_size > 0 ? page_size : capacity; }
};

// Where the rows of a batch belong (llama.cpp's llama_batch: a sequence id per token). Rows
// of different sequences, and several consecutive positions of one sequence (a prefill), may
// share a call; all rows' keys are appended before any row attends.
struct KvRows {
  Tensor positions;   // I32 [n, 1]: absolute position of row i in its sequence
  Tensor sequences;   // I32 [n, 1]: the sequence of row i (a row of page_table)
  Tensor page_table;  // I32 [sequences, pages_per_sequence]: physical page of each logical page
  // A decode step: every row attends on its own, as in a step of its own, so that its result
  // does not depend on the other rows (a sequence's speculative rows give the bits of
  // sequential steps). Otherwise a backend may take consecutive rows of one sequence together
  // (another summation order).
  bool rows_attend_alone = false;
};

struct RopeParams {
  int n_heads = 0;
  int head_dim = 0;
  double theta = 0;
};

// Throws Error("<backend>: rope_kv_append: ...") unless the operands fit together.
void check_rope_kv_shapes(const char* backend, const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                          const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                          const Tensor& k_cache, const Tensor& v_cache);
// Throws Error("<backend>: <op>: ...") unless `rows` has one position and one sequence per
// row of a batch of `n` and a page table of the cache's geometry.
void check_kv_rows(const char* backend, const char* op, const KvRows& rows, std::int64_t n, const KvCacheLayout& cache);

// The cache row of (sequence, position), on the host (reference and tests).
std::int64_t kv_cache_row(const KvCacheLayout& cache, const std::int32_t* page_table, std::int32_t sequence,
                          std::int64_t position);

// RoPE's inverse frequency theta^(-2j / head_dim) for pair j, rounded to float as the
// reference computes it (the angle is then float(position) * this, in float).
float rope_inverse_frequency(double theta, int head_dim, int pair);

// A recorded sequence of ops that can be replayed (a CUDA graph on the GPU).
class Recording {
 public:
  virtual ~Recording() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // The K/V cache element type this backend uses unless told otherwise.
  virtual ElemType default_kv_cache_type() const { return ElemType::F32; }
  // True when the first product of each new shape class is slow (a GPU library choosing and
  // loading its kernel): the model then runs its shapes once at load time.
  virtual bool slow_first_use() const { return false; }
  // Bytes of backend memory still free (0: unknown), to size the K/V cache pool from.
  virtual std::size_t free_memory() const { return 0; }
  // Streams one model serves at once unless told otherwise: a GPU step costs about the same
  // for one row as for a hundred; a CPU's grows with the rows.
  virtual int default_max_streams() const { return 8; }

  // ---- memory
  virtual void* allocate(std::size_t bytes) = 0;
  virtual void deallocate(void* data) = 0;
  virtual void copy_to_device(const Tensor& dst, const void* host) = 0;  // contiguous dst
  virtual void copy_to_host(const Tensor& src, void* host) = 0;          // waits for queued ops
  virtual void fill_zero(const Tensor& dst) = 0;
  virtual void copy(const Tensor& src, const Tensor& dst) = 0;            // same shape and type

  // ---- weights (owned by the backend, alive until it is destroyed)
  // Several matrices with the same number of columns and the same format are stacked
  // row-wise into one weight (e.g. wq|wk|wv, or w1|w3), so one pass computes all of them.
  // Throws Error("<backend>: ...") for a format the backend cannot run.
  virtual Weight load_weight(std::span<const WeightPart> parts, WeightUse use) = 0;
  // The same for plain float tensors (derived classes: `using Backend::load_weight;`).
  Weight load_weight(std::span<const TensorView* const> parts, WeightUse use);
  // How many matrices load_weight is about to be asked for, and their elements in all, so a
  // backend can place them in one allocation (the CUDA backend: one rounding to the
  // allocator's 2 MiB pages instead of one per matrix). Counted in 16-bit elements: a
  // quantized matrix counts its bytes (codes and scales) / 2. Only a hint.
  virtual void reserve_weights(std::size_t /*matrices*/, std::int64_t /*elements*/) {}
  // A vector (bias or norm weight) from host floats, e.g. computed at session start.
  virtual Weight load_vector(std::span<const float> values) = 0;
  // Bytes of backend memory held by weights.
  virtual std::size_t weight_bytes() const = 0;

  // ---- ops (all activations F32)
  // y[n, m] = epilogue(x[n, k] W[m, k]^T + bias[m]); bias may be empty.
  virtual void linear(const Tensor& x, const Weight& w, const Weight& bias, const Tensor& y, Epilogue epilogue) = 0;
  // y = x / rms(x) * weight, per row, computed in F32.
  virtual void rms_norm(const Tensor& x, const Weight& weight, float eps, const Tensor& y) = 0;
  // The same with a weight per row: y[i] = x[i] / rms(x[i]) * norms[norm_rows[i]]; norms is
  // F32 [any, x.cols] (any stride), norm_rows I32 [x.rows, 1].
  virtual void rms_norm_rows(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps, const Tensor& y) = 0;
  // dst[i] = src[indices[i]] for every row of dst; indices I32 [dst.rows, 1]; F32 rows.
  virtual void gather_rows(const Tensor& src, const Tensor& indices, const Tensor& dst) = 0;
  // y[:, j] = silu(gate_up[:, j]) * gate_up[:, half + j], half = gate_up.cols / 2.
  virtual void silu_mul(const Tensor& gate_up, const Tensor& y) = 0;

  // Fused forms of "rms_norm then linear" and "silu_mul then linear", the patterns of every
  // transformer layer, so a backend can fold the first step into the product's input. The
  // defaults run both ops (`scratch` holds the intermediate, shaped like the first op's
  // output). The CUDA backend fuses norm_linear for one row (the LM head of a decode step).
  virtual void norm_linear(const Tensor& x, const Weight& norm, float eps, const Weight& w, const Weight& bias,
                           const Tensor& y, Epilogue epilogue, const Tensor& scratch) {
    rms_norm(x, norm, eps, scratch);
    linear(scratch, w, bias, y, epilogue);
  }
  virtual void swiglu_linear(const Tensor& gate_up, const Weight& w, const Weight& bias, const Tensor& y,
                             Epilogue epilogue, const Tensor& scratch) {
    silu_mul(gate_up, scratch);
    linear(scratch, w, bias, y, epilogue);
  }
  // The two halves of a decoder layer that start from the residual stream, as one op each,
  // so a backend can run each as one pass over its weights (the decode step is bound by
  // reading them). norm_qkv_rope: qkv = rms_norm(x) Wqkv^T, then RoPE on its q and k
  // columns and the K/V append, as rope_kv_append. norm_swiglu: act = silu(g) * u where
  // [g | u] = rms_norm(x) Wgate_up^T. The defaults compose the ops above; `normed` and
  // `gate_up` are their scratch.
  virtual void norm_qkv_rope(const Tensor& x, const Weight& norm, float eps, const Weight& w_qkv, const Tensor& qkv,
                             const Tensor& normed, const KvRows& rows, const RopeParams& q_rope,
                             const RopeParams& k_rope, const KvCacheLayout& cache, const Tensor& k_cache,
                             const Tensor& v_cache) {
    norm_linear(x, norm, eps, w_qkv, Weight{}, qkv, Epilogue::Store, normed);
    const std::int64_t q_width = static_cast<std::int64_t>(q_rope.n_heads) * q_rope.head_dim;
    const std::int64_t kv_width = static_cast<std::int64_t>(k_rope.n_heads) * k_rope.head_dim;
    rope_kv_append(qkv.col_range(0, q_width), qkv.col_range(q_width, kv_width), qkv.col_range(q_width + kv_width, kv_width),
                   rows, q_rope, k_rope, cache, k_cache, v_cache);
  }
  // As above with a norm weight per row: row i is normalized with norms[norm_rows[i]] (the
  // decoder's FFN norm depends on each stream's delay).
  virtual void norm_swiglu(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps,
                           const Weight& w_gate_up, const Tensor& act, const Tensor& normed, const Tensor& gate_up) {
    rms_norm_rows(x, norms, norm_rows, eps, normed);
    linear(normed, w_gate_up, Weight{}, gate_up, Epilogue::Store);
    silu_mul(gate_up, act);
  }
  // out[i] = table[ids[i]] (+ add[i] when add is non-empty); ids is an I32 column.
  virtual void embed(const Weight& table, const Tensor& ids, const Tensor& add, const Tensor& out) = 0;
  // im2col with the input rows named: out[t, c*K + k] = in[rows[t*K + k], c]; rows is I32
  // [out.rows * K, 1], out.cols = in.cols * K. A causal convolution of stride s over one
  // sequence reads rows t*s + k of an input holding its left context first; the encoder
  // gathers many streams' inputs and their saved context rows in one call.
  virtual void im2col(const Tensor& in, const Tensor& rows, int kernel, const Tensor& out) = 0;
  // Interleaved RoPE on q and k (pairs (2i, 2i+1) of each head) at each row's absolute
  // position (rows.positions), then k and v are written into the paged cache at their
  // sequence's row for that position (KvCacheLayout).
  virtual void rope_kv_append(const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                              const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                              const Tensor& k_cache, const Tensor& v_cache) = 0;
  // Causal sliding-window attention of each query row (position p of sequence s) over the
  // cached keys of sequence s at positions max(0, p - window + 1) .. p; GQA maps query head h
  // to kv head h / (n_heads / n_kv_heads). out has the layout of q.
  virtual void attention(const Tensor& q, const KvRows& rows, int n_heads, const KvCacheLayout& cache,
                         const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) = 0;
  // ids[i] = argmax of logits row i (lowest index on ties); ids is an I32 column.
  virtual void argmax(const Tensor& logits, const Tensor& ids) = 0;

  // ---- recording: run `ops` once now and return a handle that replays the same ops
  // (with whatever values their input buffers hold at replay time).
  virtual std::unique_ptr<Recording> record(const std::function<void()>& ops) = 0;
  virtual void replay(Recording& recording) = 0;
};

// Owning handle of backend memory, with a Tensor view over all of it.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend& backend, ElemType type, std::int64_t rows, std::int64_t cols);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  const Tensor& view() const { return view_; }
  operator const Tensor&() const { return view_; }  // NOLINT: a buffer is used where its view is

 private:
  Backend* backend_ = nullptr;
  Tensor view_;
};

}  // namespace voxtral
