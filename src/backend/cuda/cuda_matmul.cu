// Matrix products of many rows (the encoder, the adapter, the prefill) on cuBLASLt.
//
// cublasGemmEx chose a kernel for every new row count, and the first launch of a kernel loads
// it: 5-20 ms on the H100, which the last, odd-sized encoder run of every file paid for each
// of its products (BENCHMARKS.md). Here a product takes one algorithm per power-of-two bucket
// of row counts, chosen by the heuristic for the bucket's largest count and kept for every
// count in it, so the kernels a transcription meets are those the load's warm-up already ran
// (Model::warm_up runs every bucket). The bias rides in the epilogue: one pass less over the
// output.
#include <algorithm>
#include <bit>
#include <span>
#include <tuple>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_quant.cuh"

namespace voxtral {

namespace {

constexpr std::size_t kWorkspaceBytes = std::size_t{32} << 20;  // what cuBLAS asks for on Hopper
constexpr std::int64_t kMinBucket = 16;
constexpr std::int64_t kTimedMaxRows = 512;  // products up to this many rows time the heuristic's candidates

int alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  return a == 0 ? 256 : static_cast<int>(std::min<std::uintptr_t>(a & (~a + 1), 256));
}

struct LayoutDeleter {
  void operator()(cublasLtMatrixLayout_t l) const { cublasLtMatrixLayoutDestroy(l); }
};
using Layout = std::unique_ptr<std::remove_pointer_t<cublasLtMatrixLayout_t>, LayoutDeleter>;

Layout make_layout(cudaDataType_t type, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
  cublasLtMatrixLayout_t l = nullptr;
  VOXTRAL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, type, static_cast<std::uint64_t>(rows),
                                                  static_cast<std::uint64_t>(cols), ld));
  return Layout(l);
}

}  // namespace

// One product shape (weight rows and columns, output stride and alignment, with or without a
// bias, input type): its descriptors and the algorithm of each row bucket (none: cuBLASLt has
// no algorithm for it).
struct MatmulPlans::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  std::map<std::int64_t, Algo> by_bucket;
  std::map<std::int64_t, Algo> by_rows;  // the bucket's, checked for this row count
  bool refused = false;  // cuBLASLt refused the descriptor's FP8 settings
  ~Plan() {
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

MatmulPlans::MatmulPlans() = default;

MatmulPlans::~MatmulPlans() {
  plans_.clear();
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

void MatmulPlans::init(CudaBackend::Impl& impl) {
  VOXTRAL_CUBLAS_CHECK(cublasLtCreate(&handle_));
  workspace_ = impl.device_alloc(kWorkspaceBytes);
  impl_ = &impl;
}

void MatmulPlans::release() {
  if (workspace_ != nullptr) impl_->device_free(workspace_);
  workspace_ = nullptr;
}

MatmulPlans::Algo MatmulPlans::choose(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, const Operands& in,
                                      const CudaWeight& w, std::int64_t n, std::int64_t ldy, int y_align,
                                      const Trial* trial) {
  const Layout b = make_layout(in.type, in.depth, n, in.ld);
  const Layout d = make_layout(CUDA_R_32F, w.rows, n, ldy);
  cublasLtMatmulPreference_t pref = nullptr;
  VOXTRAL_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const std::uint64_t workspace = kWorkspaceBytes;
  const auto align = static_cast<std::uint32_t>(y_align);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align, sizeof(align));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align, sizeof(align));
  constexpr int kCandidates = 8;
  cublasLtMatmulHeuristicResult_t results[kCandidates]{};
  int count = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle_, desc, a, b.get(), d.get(), d.get(), pref,
                                                               trial != nullptr ? kCandidates : 1, results, &count);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status != CUBLAS_STATUS_SUCCESS || count == 0) return {};
  if (trial == nullptr || count == 1) return {results[0].algo, true};
  return {fastest(desc, a, in, w, ldy, *trial, std::span(results, static_cast<std::size_t>(count))), true};
}

// The heuristic's first choice for products of a few rows (the batched decode step) reads the
// weights at well under the memory's bandwidth: its candidates are timed on the call's own
// operands (the output is written again by the real product), three runs each. (Timed by the
// GPU's clock alone, gpu_time_ms, the choices made the BF16 encoder 1 ms slower on the H200, so
// the host's launches stay in these times: BENCHMARKS.md, issue 17.)
cublasLtMatmulAlgo_t MatmulPlans::fastest(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a, const Operands& in,
                                          const CudaWeight& w, std::int64_t ldy, const Trial& trial,
                                          std::span<const cublasLtMatmulHeuristicResult_t> candidates) {
  const Layout b = make_layout(in.type, in.depth, trial.n, in.ld);
  const Layout d = make_layout(CUDA_R_32F, w.rows, trial.n, ldy);
  cudaEvent_t start = nullptr, stop = nullptr;
  VOXTRAL_CUDA_CHECK(cudaEventCreate(&start));
  VOXTRAL_CUDA_CHECK(cudaEventCreate(&stop));
  const float one = 1.0f, zero = 0.0f;
  cublasLtMatmulAlgo_t best = candidates[0].algo;
  float best_ms = 0;
  for (const auto& candidate : candidates) {
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(handle_, desc, a, b.get(), d.get(), d.get(), &candidate.algo, &check) !=
            CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > kWorkspaceBytes) {
      continue;
    }
    auto run = [&] {
      return cublasLtMatmul(handle_, desc, &one, w.data, a, trial.x, b.get(), &zero, trial.y, d.get(), trial.y, d.get(),
                            &candidate.algo, workspace_, kWorkspaceBytes, impl_->stream);
    };
    if (run() != CUBLAS_STATUS_SUCCESS) continue;  // the first run also loads the kernel
    VOXTRAL_CUDA_CHECK(cudaEventRecord(start, impl_->stream));
    for (int i = 0; i < 3; ++i) run();
    VOXTRAL_CUDA_CHECK(cudaEventRecord(stop, impl_->stream));
    VOXTRAL_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    VOXTRAL_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (best_ms == 0 || ms < best_ms) best_ms = ms, best = candidate.algo;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

// y[n, m] (+)= x[n, k] W[m, k]^T (+ bias): in cuBLAS's column-major terms D = op(A) B with A the
// stored weights (k x m, transposed), B the activations (k x n) and D the output (m x n).
void MatmulPlans::multiply(const CudaWeight& w, const void* x, std::int64_t n, float beta, const float* bias, float* y,
                           std::int64_t ldy) {
  const cudaDataType_t type = w.type == ElemType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  if (!run(w, Operands{type, w.cols, w.cols}, x, n, beta, bias, y, ldy)) {
    fail("cuda", cat("cuBLASLt has no algorithm for a ", w.rows, "x", w.cols, " product of ", n, " rows"));
  }
}

// The FP8 codes of both operands sit at the same places of rows of w.row_bytes bytes
// (cuda_quant.cuh), zeros elsewhere: the product runs over the bytes up to the last one an
// input occupies (rounded up to the 16 that FP8 products need), whatever the order of the
// inputs in them.
std::int64_t MatmulPlans::fp8_depth(const CudaWeight& w) {
  auto depth = fp8_depths_.find(w.cols);
  if (depth == fp8_depths_.end()) {
    long long last = 0;
    for (long long i = 0; i < w.cols; ++i) last = std::max(last, code_place(WeightFormat::FP8, i).byte);
    depth = fp8_depths_.emplace(w.cols, std::min<std::int64_t>((last + 16) / 16 * 16, w.row_bytes)).first;
  }
  return depth->second;
}

bool MatmulPlans::multiply_fp8(const CudaWeight& w, const void* codes, std::int64_t n, float* sums, std::int64_t ld_sums,
                               bool fast_accum) {
  Operands in{CUDA_R_8F_E4M3, fp8_depth(w), w.row_bytes};
  in.fast_accum = fast_accum;
  return run(w, in, codes, n, 0.0f, nullptr, sums, ld_sums);
}

bool MatmulPlans::multiply_fp8_scaled(const CudaWeight& w, const void* codes, std::int64_t n, const float* x_scales,
                                      float beta, const float* bias, float* y, std::int64_t ldy, bool fast_accum) {
  Operands in{CUDA_R_8F_E4M3, fp8_depth(w), w.row_bytes, static_cast<const float*>(w.scales), x_scales, fast_accum};
  return run(w, in, codes, n, beta, bias, y, ldy);
}

bool MatmulPlans::can_multiply_fp8_scaled(const CudaWeight& w, const void* codes, std::int64_t n, const float* x_scales,
                                          float beta, const float* bias, float* y, std::int64_t ldy, bool fast_accum) {
  Operands in{CUDA_R_8F_E4M3, fp8_depth(w), w.row_bytes, static_cast<const float*>(w.scales), x_scales, fast_accum};
  return run(w, in, codes, n, beta, bias, y, ldy, false);
}

namespace {

// The FP8 settings of a new plan's descriptor; false where this cuBLASLt refuses one.
bool set_fp8_modes(cublasLtMatmulDesc_t desc, bool scaled, bool fast_accum, bool bias) {
  bool ok = true;
  if (scaled) {
    const std::int32_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    ok = ok && cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer, sizeof(outer)) == CUBLAS_STATUS_SUCCESS;
    ok = ok && cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer, sizeof(outer)) == CUBLAS_STATUS_SUCCESS;
  }
  if (fast_accum) {
    const std::int8_t on = 1;
    ok = ok && cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &on, sizeof(on)) == CUBLAS_STATUS_SUCCESS;
  }
  if (bias) {  // an F32 bias (with FP8 inputs cuBLASLt's default for an F32 output is BF16)
    const std::int32_t f32 = CUDA_R_32F;
    ok = ok && cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &f32, sizeof(f32)) == CUBLAS_STATUS_SUCCESS;
  }
  return ok;
}

}  // namespace

// FP8 products report a shape cuBLASLt cannot run (false, y untouched) rather than failing:
// the caller has another way.
bool MatmulPlans::run(const CudaWeight& w, const Operands& in, const void* x, std::int64_t n, float beta, const float* bias,
                      float* y, std::int64_t ldy, bool launch) {
  const bool fp8 = in.type == CUDA_R_8F_E4M3, scaled = in.a_scales != nullptr;
  const int y_align = alignment_of(y);
  const int fp8_mode = (scaled ? 1 : 0) | (in.fast_accum ? 2 : 0);
  const auto key = std::make_tuple(w.rows, w.cols, ldy, y_align, bias != nullptr, static_cast<int>(in.type), fp8_mode);
  auto& slot = plans_[key];
  if (!slot) {
    slot = std::make_unique<Plan>();
    VOXTRAL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&slot->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
    VOXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(slot->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
    VOXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(slot->desc, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)));
    const cublasLtEpilogue_t epilogue = bias != nullptr ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    VOXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(slot->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (fp8 && !set_fp8_modes(slot->desc, scaled, in.fast_accum, bias != nullptr)) slot->refused = true;
  }
  Plan& plan = *slot;
  if (plan.refused) return false;
  if (bias != nullptr) {
    VOXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
  }
  if (scaled) {
    const void* a_scales = in.a_scales;
    const void* b_scales = in.b_scales;
    VOXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scales, sizeof(a_scales)));
    VOXTRAL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scales, sizeof(b_scales)));
  }
  const Layout a = make_layout(in.type, in.depth, w.rows, in.ld);
  const Layout b = make_layout(in.type, in.depth, n, in.ld);
  const Layout d = make_layout(CUDA_R_32F, w.rows, n, ldy);

  auto found = plan.by_rows.find(n);
  if (found == plan.by_rows.end()) {
    if (impl_->capturing) fail("cuda", "a matrix product of a new shape cannot be planned during graph capture");
    const std::int64_t bucket = std::max(kMinBucket, static_cast<std::int64_t>(std::bit_ceil(static_cast<std::uint64_t>(n))));
    auto in_bucket = plan.by_bucket.find(bucket);
    // Products of up to kTimedMaxRows rows are timed (fastest) on their own output where they
    // overwrite it; FP8 products that add to it, or are only planned, on scratch of its size.
    // (Timing the 16-bit products that add made the BF16 encoder slower: 44 against 42-43 ms,
    // BENCHMARKS.md.)
    float* trial_y = beta == 0.0f && launch ? y : nullptr;
    if (trial_y == nullptr && fp8 && n <= kTimedMaxRows) {
      const auto floats = static_cast<std::size_t>(ldy * (n - 1) + w.rows);
      trial_y = static_cast<float*>(impl_->scratch(impl_->matmul_trial, floats * sizeof(float)));
    }
    const Trial trial{x, trial_y, n};
    const Trial* timed = trial_y != nullptr && n <= kTimedMaxRows ? &trial : nullptr;
    if (in_bucket == plan.by_bucket.end()) {
      in_bucket = plan.by_bucket.emplace(bucket, choose(plan.desc, a.get(), in, w, bucket, ldy, y_align, timed)).first;
    }
    Algo algo = in_bucket->second;
    cublasLtMatmulHeuristicResult_t check{};
    if (!algo.usable || cublasLtMatmulAlgoCheck(handle_, plan.desc, a.get(), b.get(), d.get(), d.get(), &algo.value,
                                                &check) != CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > kWorkspaceBytes) {
      algo = choose(plan.desc, a.get(), in, w, n, ldy, y_align, timed);  // the bucket's does not fit this count
    }
    found = plan.by_rows.emplace(n, algo).first;
  }
  if (!found->second.usable) return false;
  if (!launch) return true;
  const float one = 1.0f;
  const cublasStatus_t status = cublasLtMatmul(handle_, plan.desc, &one, w.data, a.get(), x, b.get(), &beta, y, d.get(), y,
                                               d.get(), &found->second.value, workspace_, kWorkspaceBytes, impl_->stream);
  if (status != CUBLAS_STATUS_SUCCESS) {
    if (!fp8) throw_cublas_error("cublasLtMatmul", status);
    found->second.usable = false;  // refused before any launch: y untouched
    return false;
  }
  return true;
}

}  // namespace voxtral
