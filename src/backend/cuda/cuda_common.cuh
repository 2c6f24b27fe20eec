// Shared by the CUDA backend's translation units: error checking, the backend's state,
// and the host-side launchers of the kernels in the other .cu files.
#pragma once

#include <cublasLt.h>
#include <cublas_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <span>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_launch.cuh"
#include "core/error.h"

namespace voxtral {

[[noreturn]] void throw_cuda_error(const char* what, cudaError_t error);
[[noreturn]] void throw_cublas_error(const char* what, cublasStatus_t status);

#define VOXTRAL_CUDA_CHECK(call)                                  \
  do {                                                            \
    cudaError_t voxtral_err_ = (call);                            \
    if (voxtral_err_ != cudaSuccess) throw_cuda_error(#call, voxtral_err_); \
  } while (0)

#define VOXTRAL_CUBLAS_CHECK(call)                                \
  do {                                                            \
    cublasStatus_t voxtral_st_ = (call);                          \
    if (voxtral_st_ != CUBLAS_STATUS_SUCCESS) throw_cublas_error(#call, voxtral_st_); \
  } while (0)

// Checks the launch of the kernel just issued.
#define VOXTRAL_CUDA_LAUNCHED(name) VOXTRAL_CUDA_CHECK(cudaPeekAtLastError())

// A matrix in one of the formats of core/quant.h. BF16: 16-bit values of `type` [rows, cols];
// Q8/Q4: the codes at `data`, rows padded to whole 512-byte stages (cuda_quant.cuh), and the
// F16 block scales [rows, device_scale_stride] at `scales`; FP8: E4M3 codes in the same layout
// at `data` and an F32 scale per row at `scales` (w = code * scale).
struct CudaWeight {
  void* data = nullptr;
  ElemType type = ElemType::BF16;  // BF16 or F16 matrices, F32 vectors (the BF16 format only)
  WeightFormat format = WeightFormat::BF16;
  const void* scales = nullptr;
  std::int64_t row_bytes = 0;  // quantized formats: bytes of a row of codes in the device layout (cuda_quant.cuh)
  std::int64_t rows = 0;
  std::int64_t cols = 0;
  bool in_arena = false;  // placed in the weight arena, not allocated on its own
  bool quantized() const { return format != WeightFormat::BF16 && format != WeightFormat::F16; }
};

inline const CudaWeight& cuda_weight(const Weight& w) { return *static_cast<const CudaWeight*>(w.handle); }

// Device memory that only grows, for kernel scratch. Grown outside graph capture (recording
// runs the ops once eagerly before capturing them).
struct Scratch {
  void* data = nullptr;
  std::size_t bytes = 0;
};

// How the decode attention splits a window over blocks (cuda_decode.cu).
struct DecodeAttentionPolicy {
  int max_keys = 128;  // keys of one block at most (32, 64 or 128): longer windows take more blocks
  int splits = 32;     // slices of a row's window, while slices can still grow (set per call from the rows)
};

// The matrix products of many rows, on cuBLASLt (cuda_matmul.cu). Like the scratch, used by
// one thread at a time.
class MatmulPlans {
 public:
  MatmulPlans();
  ~MatmulPlans();
  void init(CudaBackend::Impl& impl);
  void release();  // the workspace; before the backend's stream goes
  // y[n, m] = x[n, k] W[m, k]^T + beta y + bias, x in W's type (BF16 or FP16), y in F32.
  void multiply(const CudaWeight& w, const void* x, std::int64_t n, float beta, const float* bias, float* y,
                std::int64_t ldy);
  // sums[n, m] = codes[n, :] W[m, :]^T for FP8 weights W: E4M3 times E4M3, F32 sums, no scales.
  // codes: one row of w.row_bytes bytes per activation row, each input's code at the byte that
  // holds W's code of that input (code_place), zeros in every other byte. false when cuBLASLt
  // has no FP8 algorithm for the shape (nothing is written).
  bool multiply_fp8(const CudaWeight& w, const void* codes, std::int64_t n, float* sums, std::int64_t ld_sums,
                    bool fast_accum);
  // y[n, m] = x_scales[i] w.scales[r] (codes W^T)[i, r] + beta y + bias, the scales applied by
  // cuBLASLt (per-row "outer vector" scales of both operands). false when it has no such
  // product for the shape (y untouched).
  bool multiply_fp8_scaled(const CudaWeight& w, const void* codes, std::int64_t n, const float* x_scales, float beta,
                           const float* bias, float* y, std::int64_t ldy, bool fast_accum);
  // Whether multiply_fp8_scaled with these operands has an algorithm: plans it (timing the
  // candidates on codes and x_scales, whatever they hold, and on scratch output), writes nothing of y.
  bool can_multiply_fp8_scaled(const CudaWeight& w, const void* codes, std::int64_t n, const float* x_scales, float beta,
                               const float* bias, float* y, std::int64_t ldy, bool fast_accum);

 private:
  struct Plan;
  struct Trial {  // operands a candidate algorithm may be timed on (the output is overwritten)
    const void* x;
    float* y;  // the product's own output, or scratch of its size where the product adds to it
    std::int64_t n;
  };
  struct Operands {  // both inputs' element type, the product's depth and the inputs' row stride
    cudaDataType_t type;
    std::int64_t depth, ld;
    const float* a_scales = nullptr;  // FP8: per-row scales of both operands (both or neither)
    const float* b_scales = nullptr;
    bool fast_accum = false;  // FP8
  };
  std::int64_t fp8_depth(const CudaWeight& w);
  // The product (launch false: only its plan), false where cuBLASLt has no algorithm for it.
  bool run(const CudaWeight& w, const Operands& in, const void* x, std::int64_t n, float beta, const float* bias, float* y,
           std::int64_t ldy, bool launch = true);
  struct Algo {  // (not std::optional: nvcc 13.0 fails on it here with an internal error)
    cublasLtMatmulAlgo_t value{};
    bool usable = false;  // false: cuBLASLt has none
  };
  Algo choose(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, const Operands& in, const CudaWeight& w,
              std::int64_t n, std::int64_t ldy, int y_align, const Trial* trial);
  cublasLtMatmulAlgo_t fastest(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, const Operands& in,
                               const CudaWeight& w, std::int64_t ldy, const Trial& trial,
                               std::span<const cublasLtMatmulHeuristicResult_t> candidates);
  CudaBackend::Impl* impl_ = nullptr;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  // by weight rows, columns, output stride, output alignment, bias or not, type, FP8 mode (scales, fast accumulation)
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, int, bool, int, int>, std::unique_ptr<Plan>> plans_;
  std::map<std::int64_t, std::int64_t> fp8_depths_;  // by weight columns
};

struct Fp8Activations;

struct CudaBackend::Impl {
  CudaOptions options;
  int device = 0;
  cudaDeviceProp props{};
  cudaStream_t stream = nullptr;
  MatmulPlans matmul;
  std::mutex weights_mutex;
  std::vector<std::unique_ptr<CudaWeight>> weights;
  std::size_t weight_bytes = 0;
  // The matrices announced by reserve_weights, placed one after another in one allocation.
  char* weight_arena = nullptr;
  std::size_t arena_bytes = 0, arena_used = 0;
  Scratch split_hi, split_lo, stacked_out, attention_partials, argmax_keys;
  Scratch matmul_trial;  // the output candidates of a product that adds to its output are timed on
  Scratch fp8_trial;     // the output fp8_product times its two ways on
  // fp8_product's faster way (Library or Kernel) by weight rows, columns, row bucket, output
  // stride, activations' source, epilogue, bias or not.
  std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t, int, int, bool>, CudaKernelChoices::Fp8Epilogue>
      fp8_ways;
  Scratch dequantized;  // a quantized matrix as F16, for the many-row products (the largest one's size)
  Scratch attention_counters;  // zeroed when allocated; the decode attention leaves them zeroed
  // The fused kernels of the decode step (cuda_streamed.cu, cuda_decode.cu), or the separate
  // ops / the general attention kernels, to measure what each part brings (CudaKernelChoices).
  bool fused_decode = true;
  bool fused_attention = true;
  DecodeAttentionPolicy attention_policy;  // CudaKernelChoices::attention_max_keys sets its largest slice
  // Shared memory allowed so far to the decode attention: BF16 caches (256, 512, 1024 threads), F32 caches.
  std::size_t decode_attention_shared[6] = {48 << 10, 48 << 10, 48 << 10, 48 << 10, 48 << 10, 48 << 10};
  // Many-row attention over BF16 caches on tensor cores (cuda_attention_mma.cu), or the F32
  // kernel, to measure.
  bool mma_attention = true;
  // Rows up to which a product streams the weights (cuda_streamed.cu); above it, cuBLASLt.
  // Measured on the H200 (BENCHMARKS.md); CudaKernelChoices::streamed_max_rows sets it.
  std::int64_t streamed_max_rows = 2;
  // The same for quantized weights, whose cuBLASLt path first widens the whole matrix to F16:
  // a step of 8 rows takes 9.4 ms either way on the H200 (BENCHMARKS.md), fewer rows stream.
  std::int64_t quantized_streamed_max_rows = 6;
  // Outgrown scratch stays allocated: a recorded graph may still point into it.
  std::vector<void*> retired_scratch;
  bool capturing = false;
  bool memory_log = false;  // VOXTRAL_CUDA_MEMORY_LOG: every allocation of 1 MiB or more, to stderr

  std::size_t bytes_by_format[5] = {};  // matrices' bytes per WeightFormat (the backend's name)

  template <typename Prepare>
  void product(const CudaWeight& w, std::int64_t rows, const float* bias, const Tensor& y, Epilogue epilogue,
               Prepare&& prepare);
  // Fast precision with FP8 weights: each activation row of `in` as E4M3 codes with an F32
  // scale, cuBLASLt's FP8 product of the codes, then the scales, bias, GELU or residual add
  // into y. false (y untouched) in exact precision, for other formats, or where cuBLASLt has
  // no FP8 algorithm for the shape: the caller takes the widened path.
  bool fp8_product(const CudaWeight& w, const Fp8Activations& in, const float* bias, const Tensor& y, Epilogue epilogue);
  // Exact mode up to 256 rows: both 16-bit halves in one product of twice the rows (one read
  // of the weights), then finish(sums) combines sums [2 rows, w.rows]; false otherwise.
  template <typename Prepare, typename Finish>
  bool stacked_product(const CudaWeight& w, std::int64_t rows, Prepare&& prepare, Finish&& finish);
  // Rows up to which products with `w` stream its weights.
  // (FP8 in the fast precision: at most 6, where cuBLASLt's FP8 product takes over; measured at
  // 8 rows 4.5 ms against 7.1 ms streamed, BENCHMARKS.md.)
  std::int64_t streamed_rows(const CudaWeight& w) const {
    if (w.format == WeightFormat::FP8 && !options.exact_matmul) return std::min<std::int64_t>(quantized_streamed_max_rows, 6);
    return w.quantized() ? quantized_streamed_max_rows : streamed_max_rows;
  }
  // `w` as a 16-bit matrix for cuBLASLt: itself, or a quantized matrix widened into `dequantized`
  // (F16: a code times its scale keeps 11 of its bits, against BF16's 8).
  CudaWeight dense(const CudaWeight& w);
  void* device_alloc(std::size_t bytes);
  void device_free(void* p);
  void* scratch(Scratch& s, std::size_t bytes);
};

// Whether the decode step's kernels are launched as programmatic dependents: their blocks
// may start while the kernel before them drains and wait in griddepcontrol.wait for its
// results (sm_90 and later; CudaKernelChoices::programmatic_launch turns it off to measure;
// launch_programmatic, cuda_launch.cuh, makes the launch).
inline bool programmatic_launch(const CudaBackend::Impl& impl) {
  return impl.options.kernels.programmatic_launch && impl.props.major >= 9;
}

// ---- launchers (cuda_streamed.cu): products of up to streamed_max_rows rows that read the
// weights once per 8 rows (the decode step), with RMSNorm (norm non-null), SiLU-gate or RoPE
// with the K/V append fused on the way; false when the shapes do not suit the kernel (then
// the caller composes the separate ops).
struct RowNorms {  // row i is normalized with table[rows[i] * stride] (rows null: row 0 for all)
  const float* table = nullptr;
  std::int64_t stride = 0;
  const std::int32_t* rows = nullptr;
  std::int64_t count = 1;  // rows of the table: an index outside it gives NaN rows
  float eps = 0;
};
bool launch_streamed_linear(const CudaBackend::Impl& impl, const CudaWeight& w, const float* x, std::int64_t ldx,
                            std::int64_t n, const RowNorms* norm, const float* bias, float* y, std::int64_t ldy,
                            Epilogue epilogue);
bool launch_streamed_norm_swiglu(const CudaBackend::Impl& impl, const CudaWeight& w, const float* x, std::int64_t ldx,
                                 std::int64_t n, const RowNorms* norm, float* act, std::int64_t ld_act);
bool launch_streamed_norm_qkv_rope(const CudaBackend::Impl& impl, const CudaWeight& w, const float* x, std::int64_t ldx,
                                   std::int64_t n, const RowNorms* norm, const Tensor& qkv, const KvRows& rows,
                                   const RopeParams& q_rope, const KvCacheLayout& cache, const Tensor& k_cache,
                                   const Tensor& v_cache);

// ---- launchers (cuda_linear.cu)
void launch_split_activations(cudaStream_t stream, const float* x, std::int64_t ldx, std::int64_t rows, std::int64_t cols,
                              ElemType type, void* hi, void* lo);
// The same, from RMSNorm(x) (a norm weight per row) or from SiLU-gate(gate_up) computed on the
// way (no F32 copy).
void launch_rms_norm_split(cudaStream_t stream, const float* x, std::int64_t ldx, const RowNorms& norm,
                           std::int64_t rows, std::int64_t cols, ElemType type, void* hi, void* lo);
void launch_silu_split(cudaStream_t stream, const float* gate_up, std::int64_t ld_in, std::int64_t rows, std::int64_t half,
                       ElemType type, void* hi, void* lo);
void launch_bias_activation(cudaStream_t stream, float* y, std::int64_t ldy, std::int64_t rows, std::int64_t cols,
                            const float* bias, bool gelu);
// y = (y if Add) + halves[i] + halves[rows + i] + bias, then GELU if asked: the two products
// of an exact-mode product run as one of 2 x rows rows.
void launch_combine_halves(cudaStream_t stream, const float* halves, std::int64_t rows, std::int64_t cols,
                           const float* bias, Epilogue epilogue, float* y, std::int64_t ldy);
// act[i, j] = silu(g) * u with [g | u] = halves[i] + halves[rows + i] (cols = 2 x act's).
void launch_combine_silu(cudaStream_t stream, const float* halves, std::int64_t rows, std::int64_t cols, float* act,
                         std::int64_t ld_act);

// ---- timing (cuda_timing.cu): the milliseconds one call of `launch` (which queues launches on
// `stream`) takes the GPU, the mean of `runs` calls queued while a kernel holds the stream, so
// that the host's launch costs are not counted. Waits for the stream.
float gpu_time_ms(cudaStream_t stream, int runs, const std::function<void()>& launch);

// ---- launchers (cuda_ops.cu)
void launch_rms_norm(cudaStream_t stream, const float* x, std::int64_t ldx, const RowNorms& norm, float* y,
                     std::int64_t ldy, std::int64_t rows, std::int64_t cols);
void launch_gather_rows(cudaStream_t stream, const float* src, std::int64_t lds, std::int64_t src_rows,
                        const std::int32_t* indices, std::int64_t index_stride, float* dst, std::int64_t ldd,
                        std::int64_t rows, std::int64_t cols);
void launch_silu_mul(cudaStream_t stream, const float* gate_up, std::int64_t ld_in, float* y, std::int64_t ldy,
                     std::int64_t rows, std::int64_t half);
void launch_embed(cudaStream_t stream, const CudaWeight& table, const std::int32_t* ids, std::int64_t ids_stride,
                  const float* add, std::int64_t ld_add, float* out, std::int64_t ld_out, std::int64_t rows);
void launch_im2col(cudaStream_t stream, const float* in, std::int64_t ld_in, std::int64_t channels, int kernel,
                   const int* rows, float* out, std::int64_t ld_out, std::int64_t out_rows);
// keys: two zeroed 64-bit words per row (a best key and a count of blocks; left zeroed again
// afterwards). programmatic: launched as a programmatic dependent (sm_90) of the kernel before.
void launch_argmax(cudaStream_t stream, const float* logits, std::int64_t ld, std::int64_t rows, std::int64_t cols,
                   std::int32_t* ids, std::int64_t ids_stride, unsigned long long* keys, bool programmatic);
void launch_convert_weights(cudaStream_t stream, const void* src, DType src_type, void* dst, ElemType dst_type,
                            std::int64_t count);

// ---- launchers (cuda_quantized.cu)
// FP8 at load: each row of the [rows, cols] float matrix `src` (F32, BF16 or F16) as E4M3
// codes of w / s with s = max|row| / 448 (a row of zeros: s = 0, codes 0), s into scales[r];
// the codes in the device layout (cuda_quant.cuh).
// first_bad_row (device, holding INT_MAX) gets the lowest row holding a NaN or infinity.
void launch_quantize_fp8(cudaStream_t stream, const void* src, DType src_type, std::int64_t rows, std::int64_t cols,
                         void* codes, float* scales, int* first_bad_row);
// The quantized matrix w (Q8, Q4 or FP8) as F16 values [rows, cols].
void launch_dequantize(cudaStream_t stream, const CudaWeight& w, __half* out);
// Rows of a quantized table (embed): out[i] = table[ids[i]] (+ add[i]).
void launch_embed_quantized(cudaStream_t stream, const CudaWeight& table, const std::int32_t* ids,
                            std::int64_t ids_stride, const float* add, std::int64_t ld_add, float* out,
                            std::int64_t ld_out, std::int64_t rows);

// ---- launchers (cuda_linear.cu): the fast precision's many-row products on FP8 weights.
// Dynamic per-row ("per-token") activation scaling: row r of the activations (x as it is,
// RMSNorm(x) or SiLU-gate(gate_up), computed as the 16-bit paths compute them) is written as
// E4M3 codes q = x / s, s = max|row| / 448 (a zero row: s = 0, codes 0; a row holding NaN:
// s = NaN, so its outputs are NaN), into codes + r * row_bytes at code_place(FP8, input),
// every other byte of the row zero; scales[r] = s. Rows from `rows` to `padded_rows` are
// zero codes with s = 0.
enum class Fp8Source { Rows, RmsNorm, Silu };
struct Fp8Activations {
  Fp8Source source = Fp8Source::Rows;
  const float* x = nullptr;  // Rows, RmsNorm: [rows, cols]; Silu: gate_up [rows, 2 cols]
  std::int64_t ldx = 0;
  const RowNorms* norm = nullptr;  // RmsNorm
  std::int64_t rows = 0, cols = 0;
};
// A product's bias put into its output rows by the kernel that makes its activations, ahead of
// the product (which then adds its sums to them): y[r, c] = bias[c], or y[r, c] += bias[c] where
// `add` (a residual add), for the activations' rows r.
struct BiasRows {
  const float* bias = nullptr;  // null: none
  float* y = nullptr;
  std::int64_t ldy = 0, cols = 0;
  bool add = false;
};
void launch_fp8_activations(cudaStream_t stream, const Fp8Activations& in, std::int64_t padded_rows,
                            std::int64_t row_bytes, unsigned char* codes, float* scales, const BiasRows& bias_rows = {});
// y = (y if Add) + [gelu](sums[r, c] * (x_scales[r] * w_scales[c]) + bias[c]) for the
// products of multiply_fp8.
void launch_fp8_epilogue(cudaStream_t stream, const float* sums, std::int64_t ld_sums, const float* x_scales,
                         const float* w_scales, std::int64_t rows, std::int64_t cols, const float* bias,
                         Epilogue epilogue, float* y, std::int64_t ldy);

// ---- launchers (cuda_decode.cu): attention of N query rows, each its own sequence and
// position; false when the shapes do not suit the kernel
bool launch_decode_attention(CudaBackend::Impl& impl, const Tensor& q, const KvRows& rows, int n_heads,
                             const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache, const Tensor& out);

// ---- launchers (cuda_attention_mma.cu): false when the shapes or the cache type do not suit it
bool launch_attention_mma(CudaBackend::Impl& impl, const Tensor& q, const KvRows& rows, int n_heads,
                          const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache, const Tensor& out);

// ---- launchers (cuda_attention.cu)
void launch_rope_kv_append(cudaStream_t stream, const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                           const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                           const Tensor& k_cache, const Tensor& v_cache);
// one_sequence: the rows are consecutive positions of one sequence (tiles of rows share keys).
void launch_attention(CudaBackend::Impl& impl, const Tensor& q, const KvRows& rows, int n_heads,
                      const KvCacheLayout& cache, const Tensor& k_cache, const Tensor& v_cache, const Tensor& out,
                      bool one_sequence);

}  // namespace voxtral
