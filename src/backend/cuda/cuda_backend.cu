#include <algorithm>
#include <bit>
#include <cctype>
#include <climits>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/cuda_quant.cuh"

namespace voxtral {

namespace {
constexpr std::size_t kArenaAlignment = 256;  // each matrix in the weight arena starts on 256 bytes
}  // namespace

void throw_cuda_error(const char* what, cudaError_t error) {
  if (error == cudaErrorMemoryAllocation) {
    size_t free_bytes = 0, total = 0;
    cudaGetLastError();
    cudaMemGetInfo(&free_bytes, &total);
    fail("cuda", cat("out of GPU memory in ", what, " (", free_bytes >> 20, " MiB free of ", total >> 20, " MiB)"));
  }
  fail("cuda", cat(what, " failed: ", cudaGetErrorName(error), ": ", cudaGetErrorString(error)));
}

void throw_cublas_error(const char* what, cublasStatus_t status) {
  fail("cuda", cat(what, " failed: ", cublasLtGetStatusName(status), ": ", cublasLtGetStatusString(status)));
}

CudaKernelChoices parse_cuda_variants(const std::string& variants, CudaKernelChoices choices) {
  std::size_t at = 0;
  while (at < variants.size()) {
    const std::size_t comma = std::min(variants.find(',', at), variants.size());
    const std::string item = variants.substr(at, comma - at);
    at = comma + 1;
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    const std::string name = item.substr(0, eq), value = eq == std::string::npos ? "" : item.substr(eq + 1);
    auto number = [&](int lo, int hi) {
      char* end = nullptr;
      const long v = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || v < lo || v > hi) fail("variant", cat("\"", item, "\": want a number from ", lo, " to ", hi));
      return static_cast<int>(v);
    };
    if (name == "fused" && (value == "1" || value == "0" || value == "gemv")) {
      choices.fused_decode = value != "0";
      choices.fused_attention = value == "1";
    } else if (name == "mma_attention" && (value == "1" || value == "0")) {
      choices.mma_attention = value == "1";
    } else if (name == "streamed_rows") {
      choices.streamed_max_rows = number(0, 4096);
    } else if (name == "quantized_streamed_rows") {
      choices.quantized_streamed_max_rows = number(0, 4096);
    } else if (name == "attention_keys" && (value == "32" || value == "64" || value == "128")) {
      choices.attention_max_keys = number(32, 128);
    } else if (name == "attention_threads" && (value == "256" || value == "512" || value == "1024")) {
      choices.decode_attention_threads = number(256, 1024);
    } else if (name == "programmatic_launch" && (value == "1" || value == "0")) {
      choices.programmatic_launch = value == "1";
    } else if (name == "fp8_epilogue" && (value == "auto" || value == "library" || value == "kernel")) {
      using E = CudaKernelChoices::Fp8Epilogue;
      choices.fp8_epilogue = value == "auto" ? E::Auto : value == "library" ? E::Library : E::Kernel;
    } else if (name == "fp8_fast_accum" && (value == "1" || value == "0")) {
      choices.fp8_fast_accum = value == "1";
    } else {
      fail("variant", cat("\"", item, "\" is not one of fused=1|0|gemv, mma_attention=1|0, streamed_rows=N, "
                          "quantized_streamed_rows=N, attention_keys=32|64|128, attention_threads=256|512|1024, "
                          "programmatic_launch=1|0, "
                          "fp8_epilogue=auto|library|kernel, fp8_fast_accum=1|0"));
    }
  }
  return choices;
}

bool cuda_usable(std::string* reason) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    if (reason != nullptr) {
      *reason = err != cudaSuccess ? cat("no usable CUDA GPU (", cudaGetErrorString(err), ")") : "no CUDA GPU found";
    }
    cudaGetLastError();
    return false;
  }
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, 0) != cudaSuccess || props.major < 8) {
    if (reason != nullptr) {
      *reason = cat("GPU 0 (", props.name, ") has compute capability ", props.major, ".", props.minor,
                    "; voxtral needs 8.0 or newer (Ampere, Ada, Hopper)");
    }
    return false;
  }
  return true;
}

void* CudaBackend::Impl::device_alloc(std::size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, std::max<std::size_t>(bytes, 256));
  if (err != cudaSuccess) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    fail("cuda", cat("out of GPU memory: cannot allocate ", (bytes + (1 << 20) - 1) >> 20, " MiB (", free_bytes >> 20,
                     " MiB free of ", total >> 20, " MiB on ", props.name, ")"));
  }
  if (memory_log && bytes >= (std::size_t{1} << 20)) {
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    std::fprintf(stderr, "voxtral cuda: allocated %.1f MiB, device in use %.1f MiB\n", static_cast<double>(bytes) / 1048576.0,
                 static_cast<double>(total - free_bytes) / 1048576.0);
  }
  return p;
}

void CudaBackend::Impl::device_free(void* p) {
  if (p != nullptr) cudaFree(p);
}

void* CudaBackend::Impl::scratch(Scratch& s, std::size_t bytes) {
  if (bytes > s.bytes) {
    if (capturing) fail("cuda", "scratch memory must grow outside graph capture");
    if (s.data != nullptr) retired_scratch.push_back(s.data);
    s.bytes = std::max(bytes, s.bytes * 2);
    s.data = device_alloc(s.bytes);
  }
  return s.data;
}

CudaBackend::CudaBackend(const CudaOptions& options) : impl_(std::make_unique<Impl>()) {
  std::string reason;
  if (!cuda_usable(&reason)) fail("cuda", reason);
  impl_->options = options;
  impl_->memory_log = std::getenv("VOXTRAL_CUDA_MEMORY_LOG") != nullptr;
  impl_->device = options.device;
  limit_thread_stacks(options.device);
  VOXTRAL_CUDA_CHECK(cudaSetDevice(options.device));
  if (cudaDeviceSetLimit(cudaLimitStackSize, 64) != cudaSuccess) cudaGetLastError();
  VOXTRAL_CUDA_CHECK(cudaGetDeviceProperties(&impl_->props, options.device));
  VOXTRAL_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  impl_->matmul.init(*impl_);
  if (options.weight_type != ElemType::BF16 && options.weight_type != ElemType::F16) {
    fail("cuda", "weights must be stored as BF16 or FP16");
  }
  const CudaKernelChoices& k = options.kernels;
  if (k.streamed_max_rows < 0 || k.streamed_max_rows > 4096) fail("cuda", "streamed_max_rows out of range (0 to 4096)");
  if (k.quantized_streamed_max_rows < 0 || k.quantized_streamed_max_rows > 4096) {
    fail("cuda", "quantized_streamed_max_rows out of range (0 to 4096)");
  }
  if (k.attention_max_keys != 0 && k.attention_max_keys != 32 && k.attention_max_keys != 64 && k.attention_max_keys != 128) {
    fail("cuda", "attention_max_keys must be 32, 64 or 128 (or 0)");
  }
  if (k.decode_attention_threads != 256 && k.decode_attention_threads != 512 && k.decode_attention_threads != 1024) {
    fail("cuda", "decode_attention_threads must be 256, 512 or 1024");
  }
  impl_->fused_decode = k.fused_decode;
  impl_->fused_attention = k.fused_decode && k.fused_attention;
  impl_->mma_attention = k.mma_attention;
  impl_->streamed_max_rows = k.streamed_max_rows;
  impl_->quantized_streamed_max_rows = k.quantized_streamed_max_rows;
  if (k.attention_max_keys != 0) impl_->attention_policy.max_keys = k.attention_max_keys;
}

// The context reserves every resident thread's stack up front: the default 1 KB a thread is
// 264 MiB on an H100 (132 SMs x 2048 threads), and our kernels use at most 32 bytes, so the
// constructor asks for 64 (246 MiB less, measured: BENCHMARKS.md). A kernel that needs more
// still runs: the driver grows the reservation at its launch, and with LmemResizeToMax (set
// here, before the context exists) keeps it rather than shrinking it after every such launch.
// Both are requests: where another part of the program made the context first, the flag
// cannot be set, and nothing is lost but the saving.
void CudaBackend::limit_thread_stacks(int device) {
  if (cudaInitDevice(device, cudaDeviceLmemResizeToMax, 0) != cudaSuccess) cudaGetLastError();
}

CudaBackend::~CudaBackend() {
  if (!impl_) return;
  cudaStreamSynchronize(impl_->stream);
  for (auto& w : impl_->weights) {
    if (!w->in_arena) cudaFree(w->data);
  }
  cudaFree(impl_->weight_arena);
  for (Scratch* s : {&impl_->split_hi, &impl_->split_lo, &impl_->stacked_out, &impl_->attention_partials,
                     &impl_->argmax_keys, &impl_->attention_counters, &impl_->dequantized}) cudaFree(s->data);
  for (void* p : impl_->retired_scratch) cudaFree(p);
  impl_->matmul.release();
  cudaStreamDestroy(impl_->stream);
}

// The matrices' formats, the one holding most bytes first ("FP8 weights (the rest Q8, BF16)"),
// or the 16-bit type before any matrix is loaded.
std::string CudaBackend::name() const {
  const std::size_t* bytes = impl_->bytes_by_format;
  std::vector<WeightFormat> formats;
  for (const auto f : {WeightFormat::BF16, WeightFormat::F16, WeightFormat::Q8, WeightFormat::Q4, WeightFormat::FP8}) {
    if (bytes[static_cast<int>(f)] > 0) formats.push_back(f);
  }
  std::stable_sort(formats.begin(), formats.end(),
                   [&](WeightFormat a, WeightFormat b) { return bytes[static_cast<int>(a)] > bytes[static_cast<int>(b)]; });
  auto upper = [](WeightFormat f) {
    std::string s(weight_format_name(f));
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  };
  std::string weights = formats.empty() ? (impl_->options.weight_type == ElemType::BF16 ? "BF16" : "FP16")
                                        : upper(formats[0]);
  weights += " weights";
  for (std::size_t i = 1; i < formats.size(); ++i) weights += cat(i == 1 ? " (the rest " : ", ", upper(formats[i]));
  if (formats.size() > 1) weights += ")";
  const bool fp8_products = !impl_->options.exact_matmul && bytes[static_cast<int>(WeightFormat::FP8)] > 0;
  return cat("cuda (", impl_->props.name, ", sm_", impl_->props.major, impl_->props.minor, ", ", weights, ", ",
             impl_->options.exact_matmul ? "exact" : "fast", " matmul", fp8_products ? " (FP8 activations)" : "", ", ",
             impl_->options.kv_cache_type == ElemType::BF16 ? "BF16" : "F32", " KV cache)");
}

ElemType CudaBackend::default_kv_cache_type() const { return impl_->options.kv_cache_type; }


void* CudaBackend::allocate(std::size_t bytes) { return impl_->device_alloc(bytes); }
void CudaBackend::deallocate(void* data) {
  cudaStreamSynchronize(impl_->stream);
  impl_->device_free(data);
}

void CudaBackend::copy_to_device(const Tensor& dst, const void* host) {
  const std::size_t row = static_cast<std::size_t>(dst.cols) * elem_size(dst.type);
  VOXTRAL_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, static_cast<std::size_t>(dst.stride) * elem_size(dst.type), host, row, row,
                                       static_cast<std::size_t>(dst.rows), cudaMemcpyHostToDevice, impl_->stream));
}

void CudaBackend::copy_to_host(const Tensor& src, void* host) {
  const std::size_t row = static_cast<std::size_t>(src.cols) * elem_size(src.type);
  VOXTRAL_CUDA_CHECK(cudaMemcpy2DAsync(host, row, src.data, static_cast<std::size_t>(src.stride) * elem_size(src.type), row,
                                       static_cast<std::size_t>(src.rows), cudaMemcpyDeviceToHost, impl_->stream));
  VOXTRAL_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

void CudaBackend::fill_zero(const Tensor& dst) {
  VOXTRAL_CUDA_CHECK(cudaMemset2DAsync(dst.data, static_cast<std::size_t>(dst.stride) * elem_size(dst.type), 0,
                                       static_cast<std::size_t>(dst.cols) * elem_size(dst.type),
                                       static_cast<std::size_t>(dst.rows), impl_->stream));
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  if (src.rows != dst.rows || src.cols != dst.cols || src.type != dst.type) fail("cuda", "copy: shape mismatch");
  const std::size_t es = elem_size(src.type);
  VOXTRAL_CUDA_CHECK(cudaMemcpy2DAsync(dst.data, static_cast<std::size_t>(dst.stride) * es, src.data,
                                       static_cast<std::size_t>(src.stride) * es, static_cast<std::size_t>(src.cols) * es,
                                       static_cast<std::size_t>(src.rows), cudaMemcpyDeviceToDevice, impl_->stream));
}

namespace {

// The matrix's format: the parts' own (Q8, Q4), FP8 when they ask to be quantized, else the
// backend's 16-bit type. Throws unless all parts agree and the GPU can run it.
WeightFormat format_of(std::span<const WeightPart> parts, const cudaDeviceProp& props) {
  auto of = [](const WeightPart& p) { return p.quantize_at_load == WeightFormat::FP8 ? WeightFormat::FP8 : p.format(); };
  const WeightFormat format = of(parts[0]);
  for (const WeightPart& p : parts) {
    if (p.quantize_at_load != WeightFormat::BF16 && p.quantize_at_load != WeightFormat::FP8) {
      fail("cuda", cat(p.values->name, ": cannot quantize to ", weight_format_name(p.quantize_at_load), " at load"));
    }
    if (of(p) != format) fail(p.values->name, "cannot be stacked with tensors of another format");
  }
  if (format == WeightFormat::FP8 && props.major * 10 + props.minor < 89) {
    fail("cuda", cat(parts[0].values->name, ": fp8 weights need FP8 tensor cores (sm_89 or newer), but GPU ", props.name,
                     " is sm_", props.major, props.minor, "; use --weights q8, q4, bf16 or fp16 there"));
  }
  return format;
}

std::size_t round_up(std::size_t bytes) { return (bytes + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

// Memory for a weight of `bytes`: in the arena while it has room, else its own allocation.
void place_weight(CudaBackend::Impl& impl, CudaWeight& w, std::size_t bytes) {
  {
    std::lock_guard lock(impl.weights_mutex);
    if (impl.arena_used + bytes <= impl.arena_bytes) {
      w.data = impl.weight_arena + impl.arena_used;
      w.in_arena = true;
      impl.arena_used += round_up(bytes);
    }
  }
  if (!w.in_arena) w.data = impl.device_alloc(bytes);
}

std::size_t weight_footprint(const CudaWeight& w) {
  const auto rows = static_cast<std::size_t>(w.rows), cols = static_cast<std::size_t>(w.cols);
  switch (w.format) {
    case WeightFormat::Q8:
    case WeightFormat::Q4:
      return rows * (static_cast<std::size_t>(w.row_bytes) + static_cast<std::size_t>(device_scale_stride(w.format, w.cols)) * 2);
    case WeightFormat::FP8: return rows * (static_cast<std::size_t>(w.row_bytes) + sizeof(float));
    default: return rows * cols * elem_size(w.type);
  }
}

void load_plain(CudaBackend::Impl& impl, CudaWeight& w, std::span<const WeightPart> parts) {
  const std::size_t es = elem_size(w.type);
  place_weight(impl, w, static_cast<std::size_t>(w.rows * w.cols) * es);
  std::int64_t row = 0;
  for (const WeightPart& part : parts) {
    const TensorView* p = part.values;
    char* dst = static_cast<char*>(w.data) + static_cast<std::size_t>(row * w.cols) * es;
    const bool same = (p->dtype == DType::BF16 && w.type == ElemType::BF16) || (p->dtype == DType::F16 && w.type == ElemType::F16);
    if (same) {
      VOXTRAL_CUDA_CHECK(cudaMemcpyAsync(dst, p->data, p->nbytes, cudaMemcpyHostToDevice, impl.stream));
    } else {
      void* staging = impl.device_alloc(p->nbytes);
      VOXTRAL_CUDA_CHECK(cudaMemcpyAsync(staging, p->data, p->nbytes, cudaMemcpyHostToDevice, impl.stream));
      launch_convert_weights(impl.stream, staging, p->dtype, dst, w.type, p->numel());
      VOXTRAL_CUDA_CHECK(cudaStreamSynchronize(impl.stream));
      impl.device_free(staging);
    }
    row += part.rows();
  }
}

// The codes and the scales plane as stored (core/quant.h), each row padded with zeros to the
// device layout's whole stages (cuda_quant.cuh), parts stacked row-wise in each: codes first, the
// scales after them on a 256-byte boundary, in one placement.
void load_block_quantized(CudaBackend::Impl& impl, CudaWeight& w, std::span<const WeightPart> parts) {
  check_quantizable(parts[0].values->name, w.cols);
  const std::size_t row_bytes = quantized_row_bytes(w.format, w.cols);
  w.row_bytes = device_row_bytes(w.format, w.cols);
  const std::size_t scale_row_bytes = static_cast<std::size_t>(w.cols / kQuantBlock) * sizeof(std::uint16_t);
  const auto scale_pitch = static_cast<std::size_t>(device_scale_stride(w.format, w.cols)) * sizeof(std::uint16_t);
  const std::size_t codes_bytes = round_up(static_cast<std::size_t>(w.rows * w.row_bytes));
  const std::size_t bytes = codes_bytes + static_cast<std::size_t>(w.rows) * scale_pitch;
  place_weight(impl, w, bytes);
  VOXTRAL_CUDA_CHECK(cudaMemsetAsync(w.data, 0, bytes, impl.stream));
  char* scales = static_cast<char*>(w.data) + codes_bytes;
  w.scales = scales;
  std::int64_t row = 0;
  for (const WeightPart& p : parts) {
    const auto rows = static_cast<std::size_t>(p.rows());
    if (p.values->nbytes != rows * row_bytes || p.scales->nbytes != rows * scale_row_bytes || p.scales->dtype != DType::F16) {
      fail("cuda", cat(p.values->name, ": the codes and scales planes do not fit ", rows, " rows of ", w.cols, " ",
                       weight_format_name(w.format), " inputs"));
    }
    const auto at = static_cast<std::size_t>(row);
    if (rows > 0) {
      VOXTRAL_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(w.data) + at * static_cast<std::size_t>(w.row_bytes),
                                           static_cast<std::size_t>(w.row_bytes), p.values->data, row_bytes, row_bytes,
                                           rows, cudaMemcpyHostToDevice, impl.stream));
      VOXTRAL_CUDA_CHECK(cudaMemcpy2DAsync(scales + at * scale_pitch, scale_pitch, p.scales->data, scale_row_bytes,
                                           scale_row_bytes, rows, cudaMemcpyHostToDevice, impl.stream));
    }
    VOXTRAL_CUDA_CHECK(cudaStreamSynchronize(impl.stream));
    row += p.rows();
  }
}

// Each part uploaded as it is stored, then quantized row by row into the codes plane.
void load_fp8(CudaBackend::Impl& impl, CudaWeight& w, std::span<const WeightPart> parts) {
  check_quantizable(parts[0].values->name, w.cols);
  w.row_bytes = device_row_bytes(w.format, w.cols);
  const std::size_t codes_bytes = round_up(static_cast<std::size_t>(w.rows * w.row_bytes));
  place_weight(impl, w, codes_bytes + static_cast<std::size_t>(w.rows) * sizeof(float));
  auto* scales = reinterpret_cast<float*>(static_cast<char*>(w.data) + codes_bytes);
  w.scales = scales;
  // The bytes of a row that hold no input stay zero: the FP8 product runs over them
  // (MatmulPlans::multiply_fp8), and E4M3 0x7f would be a NaN.
  VOXTRAL_CUDA_CHECK(cudaMemsetAsync(w.data, 0, codes_bytes, impl.stream));
  int* bad = static_cast<int*>(impl.device_alloc(sizeof(int)));
  std::int64_t row = 0;
  for (const WeightPart& part : parts) {
    const TensorView* p = part.values;
    if (p->dtype != DType::BF16 && p->dtype != DType::F16 && p->dtype != DType::F32) {
      fail("cuda", cat(p->name, ": cannot quantize ", dtype_name(p->dtype), " values to fp8"));
    }
    const int none = INT_MAX;
    VOXTRAL_CUDA_CHECK(cudaMemcpyAsync(bad, &none, sizeof(int), cudaMemcpyHostToDevice, impl.stream));
    void* staging = impl.device_alloc(p->nbytes);
    VOXTRAL_CUDA_CHECK(cudaMemcpyAsync(staging, p->data, p->nbytes, cudaMemcpyHostToDevice, impl.stream));
    launch_quantize_fp8(impl.stream, staging, p->dtype, part.rows(), w.cols,
                        static_cast<char*>(w.data) + static_cast<std::size_t>(row * w.row_bytes), scales + row, bad);
    int first_bad = none;
    VOXTRAL_CUDA_CHECK(cudaMemcpyAsync(&first_bad, bad, sizeof(int), cudaMemcpyDeviceToHost, impl.stream));
    VOXTRAL_CUDA_CHECK(cudaStreamSynchronize(impl.stream));
    impl.device_free(staging);
    if (first_bad != none) {
      impl.device_free(bad);
      fail(p->name, cat("row ", first_bad, " holds a NaN or infinite weight: cannot quantize it to fp8"));
    }
    row += part.rows();
  }
  impl.device_free(bad);
}

}  // namespace

Weight CudaBackend::load_weight(std::span<const WeightPart> weight_parts, WeightUse) {
  if (weight_parts.empty()) fail("cuda", "load_weight: no tensors");
  auto owned = std::make_unique<CudaWeight>();
  CudaWeight& w = *owned;
  w.format = format_of(weight_parts, impl_->props);
  w.type = impl_->options.weight_type;
  w.cols = weight_parts[0].cols();
  for (const WeightPart& p : weight_parts) {
    if (p.cols() != w.cols) fail(p.values->name, "cannot be stacked with tensors of a different width");
    w.rows += p.rows();
  }
  {
    // Owned by the backend from here, so that a failed upload frees its memory with the rest.
    std::lock_guard lock(impl_->weights_mutex);
    impl_->weights.push_back(std::move(owned));
  }
  switch (w.format) {
    case WeightFormat::Q8:
    case WeightFormat::Q4: load_block_quantized(*impl_, w, weight_parts); break;
    case WeightFormat::FP8: load_fp8(*impl_, w, weight_parts); break;
    default: load_plain(*impl_, w, weight_parts); break;
  }
  VOXTRAL_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  std::lock_guard lock(impl_->weights_mutex);
  impl_->weight_bytes += weight_footprint(w);
  // A plain matrix is in the backend's 16-bit type.
  const WeightFormat stored = w.quantized() ? w.format : w.type == ElemType::F16 ? WeightFormat::F16 : WeightFormat::BF16;
  impl_->bytes_by_format[static_cast<int>(stored)] += weight_footprint(w);
  return Weight{w.rows, w.cols, &w};
}

void CudaBackend::reserve_weights(std::size_t matrices, std::int64_t elements) {
  std::lock_guard lock(impl_->weights_mutex);
  if (impl_->weight_arena != nullptr || matrices == 0) return;
  // Two planes (codes, scales) for a quantized matrix, each on its own boundary.
  impl_->arena_bytes = static_cast<std::size_t>(elements) * elem_size(impl_->options.weight_type) + 2 * matrices * kArenaAlignment;
  impl_->weight_arena = static_cast<char*>(impl_->device_alloc(impl_->arena_bytes));
}

Weight CudaBackend::load_vector(std::span<const float> values) {
  auto w = std::make_unique<CudaWeight>();
  w->type = ElemType::F32;
  w->rows = 1;
  w->cols = static_cast<std::int64_t>(values.size());
  w->data = impl_->device_alloc(values.size_bytes());
  VOXTRAL_CUDA_CHECK(cudaMemcpy(w->data, values.data(), values.size_bytes(), cudaMemcpyHostToDevice));
  std::lock_guard lock(impl_->weights_mutex);
  impl_->weight_bytes += values.size_bytes();
  Weight handle{w->rows, w->cols, w.get()};
  impl_->weights.push_back(std::move(w));
  return handle;
}

std::size_t CudaBackend::weight_bytes() const { return impl_->weight_bytes; }

namespace {

const float* vector_data(const Weight& w, std::int64_t expected, const char* op) {
  if (w.empty()) return nullptr;
  const CudaWeight& v = cuda_weight(w);
  if (v.type != ElemType::F32 || v.rows * v.cols != expected) fail("cuda", cat(op, ": vector width mismatch"));
  return static_cast<const float*>(v.data);
}

// Rows up to which an exact-mode product stacks its two 16-bit halves into one product of
// twice the rows, so the weights are read once (the batched decode step); above it the
// product is bound by arithmetic and the halves run as two products.
constexpr std::int64_t kStackedMaxRows = 256;

void check_linear_shapes(const char* op, const Tensor& x, const CudaWeight& w, const Tensor& y) {
  if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows || x.type != ElemType::F32 || y.type != ElemType::F32) {
    fail("cuda", cat(op, ": shapes do not fit: x [", x.rows, ", ", x.cols, "], W [", w.rows, ", ", w.cols, "], y [",
                     y.rows, ", ", y.cols, "]"));
  }
}

RowNorms one_norm(const Weight& norm, std::int64_t width, float eps) {
  return RowNorms{vector_data(norm, width, "rms_norm"), 0, nullptr, 1, eps};
}

RowNorms norms_per_row(const char* op, const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps) {
  if (norms.cols != x.cols || norms.type != ElemType::F32 || norms.rows < 1 || norm_rows.rows != x.rows ||
      norm_rows.cols != 1 || norm_rows.type != ElemType::I32) {
    fail("cuda", cat(op, ": want F32 norms [any, ", x.cols, "] and one I32 norm row for each of the ", x.rows, " rows"));
  }
  if (norm_rows.stride != 1) fail("cuda", cat(op, ": norm rows must be a contiguous column"));
  return RowNorms{norms.ptr<float>(), norms.stride, norm_rows.ptr<std::int32_t>(), norms.rows, eps};
}

}  // namespace

std::size_t CudaBackend::free_memory() const {
  std::size_t free_bytes = 0, total = 0;
  VOXTRAL_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return free_bytes;
}

CudaWeight CudaBackend::Impl::dense(const CudaWeight& w) {
  if (!w.quantized()) return w;
  CudaWeight d = w;
  d.format = WeightFormat::F16;
  d.type = ElemType::F16;
  d.scales = nullptr;
  d.in_arena = true;  // a view: never freed through it
  d.data = scratch(dequantized, static_cast<std::size_t>(w.rows * w.cols) * sizeof(__half));
  launch_dequantize(stream, w, static_cast<__half*>(d.data));
  return d;
}

template <typename Prepare, typename Finish>
bool CudaBackend::Impl::stacked_product(const CudaWeight& w, std::int64_t rows, Prepare&& prepare, Finish&& finish) {
  if (!options.exact_matmul || rows > kStackedMaxRows) return false;
  // hi in rows 0..rows-1, lo in rows..2 rows-1 of one input: one product, one read of W.
  const std::size_t bytes = static_cast<std::size_t>(rows * w.cols) * elem_size(w.type);
  auto* hi = static_cast<char*>(scratch(split_hi, 2 * bytes));
  auto* sums = static_cast<float*>(scratch(stacked_out, static_cast<std::size_t>(2 * rows * w.rows) * sizeof(float)));
  prepare(hi, hi + bytes);
  matmul.multiply(w, hi, 2 * rows, 0.0f, nullptr, sums, w.rows);
  finish(static_cast<const float*>(sums));
  return true;
}

// y = halves' product (+ y) (+ bias), then GELU if asked. `prepare` writes the 16-bit input
// halves (x as it is, or computed from it on the way).
template <typename Prepare>
void CudaBackend::Impl::product(const CudaWeight& w, std::int64_t rows, const float* bias, const Tensor& y, Epilogue epilogue,
                                Prepare&& prepare) {
  if (stacked_product(w, rows, prepare, [&](const float* sums) {
        launch_combine_halves(stream, sums, rows, w.rows, bias, epilogue, y.ptr<float>(), y.stride);
      })) {
    return;
  }
  const std::size_t bytes = static_cast<std::size_t>(rows * w.cols) * elem_size(w.type);
  void* hi = scratch(split_hi, bytes);
  void* lo = options.exact_matmul ? scratch(split_lo, bytes) : nullptr;
  prepare(hi, lo);
  // Exact mode adds the low halves' product on top; the bias goes with the last product.
  const float beta = epilogue == Epilogue::Add ? 1.0f : 0.0f;
  matmul.multiply(w, hi, rows, beta, lo != nullptr ? nullptr : bias, y.ptr<float>(), y.stride);
  if (lo != nullptr) matmul.multiply(w, lo, rows, 1.0f, bias, y.ptr<float>(), y.stride);
  if (epilogue == Epilogue::Gelu) launch_bias_activation(stream, y.ptr<float>(), y.stride, y.rows, y.cols, nullptr, true);
}

// Activation rows padded to 16 (the padding rows zeros) and, where our kernel applies the
// scales, the sums' stride to 16 floats: the sizes FP8 products are sure to find algorithms
// for. The scratch of the 16-bit inputs holds the codes and scales, that of the stacked
// product (exact precision only) the sums.
//
// Two ways to the same values (CudaKernelChoices::fp8_epilogue):
// - library: cuBLASLt's product applies both operands' per-row scales ("outer vector" scales)
//   and adds its sums to y. A bias with no GELU after it is put into y by the activations'
//   kernel ahead of the product (cuBLASLt has no such product with a bias on the H200, cuBLAS
//   13.0, and a kernel after it took another pass over y); GELU takes a kernel after it.
// - kernel: cuBLASLt's plain FP8 product into F32 sums, then our epilogue kernel.
// On the H200 the library's only algorithm with these scales has 128 x 128 tiles: a
// 1280-wide product of 256 rows keeps 20 of the 132 multiprocessors busy and takes 17.8 us
// where the plain product and our kernel take about 11 (BENCHMARKS.md, issue 17). So Auto
// times both once per shape and row bucket (outside graph capture) and keeps the faster.
bool CudaBackend::Impl::fp8_product(const CudaWeight& w, const Fp8Activations& in, const float* bias, const Tensor& y,
                                    Epilogue epilogue) {
  if (options.exact_matmul || w.format != WeightFormat::FP8) return false;
  const std::int64_t padded = (in.rows + 15) / 16 * 16, ld_sums = (w.rows + 15) / 16 * 16;
  if (padded == 0) return true;
  auto* codes = static_cast<unsigned char*>(scratch(split_hi, static_cast<std::size_t>(padded * w.row_bytes)));
  auto* x_scales = static_cast<float*>(scratch(split_lo, static_cast<std::size_t>(padded) * sizeof(float)));
  using E = CudaKernelChoices::Fp8Epilogue;
  const bool fast_accum = options.kernels.fp8_fast_accum;
  // Each way writes rows 0..in.rows-1 of `out` (stride ldo) as y; false, out untouched, where
  // cuBLASLt has no product for it. `own` takes its bias and epilogue: the library way's
  // fallback passes none and Add where the bias is already in out.
  auto own = [&](float* out, std::int64_t ldo, const float* own_bias, Epilogue own_epilogue) {
    auto* sums = static_cast<float*>(scratch(stacked_out, static_cast<std::size_t>(padded * ld_sums) * sizeof(float)));
    launch_fp8_activations(stream, in, padded, w.row_bytes, codes, x_scales);
    if (!matmul.multiply_fp8(w, codes, padded, sums, ld_sums, fast_accum)) return false;
    launch_fp8_epilogue(stream, sums, ld_sums, x_scales, static_cast<const float*>(w.scales), in.rows, w.rows, own_bias,
                        own_epilogue, out, ldo);
    return true;
  };
  auto library = [&](float* out, std::int64_t ldo) {
    const bool bias_first = bias != nullptr && epilogue != Epilogue::Gelu;
    const float beta = bias_first || epilogue == Epilogue::Add ? 1.0f : 0.0f;
    if (!matmul.can_multiply_fp8_scaled(w, codes, in.rows, x_scales, beta, nullptr, out, ldo, fast_accum)) return false;
    launch_fp8_activations(stream, in, padded, w.row_bytes, codes, x_scales,
                           bias_first ? BiasRows{bias, out, ldo, w.rows, epilogue == Epilogue::Add} : BiasRows{});
    if (!matmul.multiply_fp8_scaled(w, codes, in.rows, x_scales, beta, nullptr, out, ldo, fast_accum)) {
      // Refused at its launch though planned: our own product finishes the job from what out holds.
      if (own(out, ldo, bias_first ? nullptr : bias, bias_first ? Epilogue::Add : epilogue)) return true;
      if (bias_first) {
        fail("cuda", cat("cuBLASLt refused both FP8 products of a ", w.rows, "x", w.cols, " weight and ", in.rows,
                         " rows after the bias was written"));
      }
      return false;
    }
    if (epilogue == Epilogue::Gelu) launch_bias_activation(stream, out, ldo, in.rows, w.rows, bias, true);
    return true;
  };
  E mode = options.kernels.fp8_epilogue;
  if (mode == E::Auto) {
    const auto bucket = static_cast<std::int64_t>(std::bit_ceil(static_cast<std::uint64_t>(in.rows)));
    const auto key = std::make_tuple(w.rows, w.cols, bucket, y.stride, static_cast<int>(in.source),
                                     static_cast<int>(epilogue), bias != nullptr);
    auto chosen = fp8_ways.find(key);
    if (chosen == fp8_ways.end()) {
      if (capturing) fail("cuda", "an FP8 product of a new shape cannot be planned during graph capture");
      // Scratch output placed as y is within 256 bytes, so that the plans timed are y's.
      const auto trial_bytes = static_cast<std::size_t>((in.rows - 1) * y.stride + w.rows) * sizeof(float) + 256;
      auto* trial = reinterpret_cast<float*>(static_cast<char*>(scratch(fp8_trial, trial_bytes)) +
                                             reinterpret_cast<std::uintptr_t>(y.data) % 256);
      // ms of a run on scratch output (after one that plans it), -1 where it has no product
      auto time = [&](auto&& way) {
        if (!way(trial)) return -1.0f;
        return gpu_time_ms(stream, 5, [&] { way(trial); });
      };
      const float by_library = time([&](float* out) { return library(out, y.stride); });
      const float by_kernel = time([&](float* out) { return own(out, y.stride, bias, epilogue); });
      const bool kernel = by_library < 0.0f || (by_kernel >= 0.0f && by_kernel < by_library);
      chosen = fp8_ways.emplace(key, kernel ? E::Kernel : E::Library).first;
    }
    mode = chosen->second;
  }
  if (mode == E::Library) {
    if (library(y.ptr<float>(), y.stride)) return true;
    if (options.kernels.fp8_epilogue == E::Library) {
      fail("cuda", cat("cuBLASLt has no FP8 product with per-row scales for a ", w.rows, "x", w.cols, " weight and ",
                       in.rows, " rows (variant fp8_epilogue=library)"));
    }
  }
  return own(y.ptr<float>(), y.stride, bias, epilogue);
}

void CudaBackend::linear(const Tensor& x, const Weight& weight, const Weight& bias, const Tensor& y, Epilogue epilogue) {
  const CudaWeight& q = cuda_weight(weight);
  check_linear_shapes("linear", x, q, y);
  const float* b = vector_data(bias, q.rows, "linear bias");
  if (x.rows <= impl_->streamed_rows(q) &&
      launch_streamed_linear(*impl_, q, x.ptr<float>(), x.stride, x.rows, nullptr, b, y.ptr<float>(), y.stride, epilogue)) {
    return;
  }
  if (impl_->fp8_product(q, Fp8Activations{Fp8Source::Rows, x.ptr<float>(), x.stride, nullptr, x.rows, x.cols}, b, y,
                         epilogue)) {
    return;
  }
  const CudaWeight w = impl_->dense(q);
  impl_->product(w, x.rows, b, y, epilogue, [&](void* hi, void* lo) {
    launch_split_activations(impl_->stream, x.ptr<float>(), x.stride, x.rows, x.cols, w.type, hi, lo);
  });
}

void CudaBackend::norm_linear(const Tensor& x, const Weight& norm, float eps, const Weight& weight, const Weight& bias,
                              const Tensor& y, Epilogue epilogue, const Tensor& scratch) {
  const CudaWeight& q = cuda_weight(weight);
  check_linear_shapes("norm_linear", x, q, y);
  const RowNorms n = one_norm(norm, x.cols, eps);
  const float* b = vector_data(bias, q.rows, "linear bias");
  if (x.rows <= impl_->streamed_rows(q)) {
    // One row takes its norm on the way; more rows read x once per weight row pair, so
    // normalizing first halves what the product reads besides the weights.
    if (x.rows > 1 || !launch_streamed_linear(*impl_, q, x.ptr<float>(), x.stride, x.rows, &n, b, y.ptr<float>(), y.stride,
                                              epilogue)) {
      Backend::norm_linear(x, norm, eps, weight, bias, y, epilogue, scratch);
    }
    return;
  }
  if (impl_->fp8_product(q, Fp8Activations{Fp8Source::RmsNorm, x.ptr<float>(), x.stride, &n, x.rows, x.cols}, b, y,
                         epilogue)) {
    return;
  }
  const CudaWeight w = impl_->dense(q);
  impl_->product(w, x.rows, b, y, epilogue, [&](void* hi, void* lo) {
    launch_rms_norm_split(impl_->stream, x.ptr<float>(), x.stride, n, x.rows, x.cols, w.type, hi, lo);
  });
}

void CudaBackend::swiglu_linear(const Tensor& gate_up, const Weight& weight, const Weight& bias, const Tensor& y,
                                Epilogue epilogue, const Tensor& scratch) {
  const CudaWeight& q = cuda_weight(weight);
  const std::int64_t half = gate_up.cols / 2;
  if (gate_up.rows <= impl_->streamed_rows(q) || gate_up.cols % 2 != 0 || half != q.cols || y.rows != gate_up.rows ||
      y.cols != q.rows || gate_up.type != ElemType::F32 || y.type != ElemType::F32) {
    Backend::swiglu_linear(gate_up, weight, bias, y, epilogue, scratch);  // checks the shapes
    return;
  }
  const float* b = vector_data(bias, q.rows, "linear bias");
  if (impl_->fp8_product(q, Fp8Activations{Fp8Source::Silu, gate_up.ptr<float>(), gate_up.stride, nullptr, gate_up.rows, half},
                         b, y, epilogue)) {
    return;
  }
  const CudaWeight w = impl_->dense(q);
  impl_->product(w, gate_up.rows, b, y, epilogue, [&](void* hi, void* lo) {
    launch_silu_split(impl_->stream, gate_up.ptr<float>(), gate_up.stride, gate_up.rows, half, w.type, hi, lo);
  });
}

void CudaBackend::norm_qkv_rope(const Tensor& x, const Weight& norm, float eps, const Weight& w_qkv, const Tensor& qkv,
                                const Tensor& normed, const KvRows& rows, const RopeParams& q_rope,
                                const RopeParams& k_rope, const KvCacheLayout& cache, const Tensor& k_cache,
                                const Tensor& v_cache) {
  const CudaWeight& w = cuda_weight(w_qkv);
  check_linear_shapes("norm_qkv_rope", x, w, qkv);
  const std::int64_t q_width = static_cast<std::int64_t>(q_rope.n_heads) * q_rope.head_dim;
  const std::int64_t kv_width = static_cast<std::int64_t>(k_rope.n_heads) * k_rope.head_dim;
  if (qkv.cols != q_width + 2 * kv_width) fail("cuda", "norm_qkv_rope: q|k|v width does not match the heads");
  check_rope_kv_shapes("cuda", qkv.col_range(0, q_width), qkv.col_range(q_width, kv_width),
                       qkv.col_range(q_width + kv_width, kv_width), rows, q_rope, k_rope, cache, k_cache, v_cache);
  const bool same_rope = k_rope.theta == q_rope.theta && k_rope.head_dim == cache.head_dim && k_rope.n_heads == cache.n_kv_heads;
  if (x.rows <= impl_->streamed_rows(w) && same_rope) {
    const RowNorms n = one_norm(norm, x.cols, eps);
    if (x.rows == 1 && launch_streamed_norm_qkv_rope(*impl_, w, x.ptr<float>(), x.stride, 1, &n, qkv, rows, q_rope, cache,
                                                     k_cache, v_cache)) {
      return;
    }
    if (x.rows > 1 && normed.rows == x.rows && normed.cols == x.cols) {  // normalized first, as norm_linear does
      rms_norm(x, norm, eps, normed);
      if (launch_streamed_norm_qkv_rope(*impl_, w, normed.ptr<float>(), normed.stride, x.rows, nullptr, qkv, rows, q_rope,
                                        cache, k_cache, v_cache)) {
        return;
      }
    }
  }
  Backend::norm_qkv_rope(x, norm, eps, w_qkv, qkv, normed, rows, q_rope, k_rope, cache, k_cache, v_cache);
}

void CudaBackend::norm_swiglu(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps,
                              const Weight& w_gate_up, const Tensor& act, const Tensor& normed, const Tensor& gate_up) {
  const CudaWeight& q = cuda_weight(w_gate_up);
  check_linear_shapes("norm_swiglu", x, q, gate_up);
  if (act.rows != x.rows || act.cols * 2 != q.rows || act.type != ElemType::F32) fail("cuda", "norm_swiglu: shape mismatch");
  const RowNorms n = norms_per_row("norm_swiglu", x, norms, norm_rows, eps);
  if (x.rows <= impl_->streamed_rows(q)) {
    bool fused = false;
    if (x.rows == 1) {
      fused = launch_streamed_norm_swiglu(*impl_, q, x.ptr<float>(), x.stride, 1, &n, act.ptr<float>(), act.stride);
    } else if (normed.rows == x.rows && normed.cols == x.cols) {  // normalized first, as norm_linear does
      rms_norm_rows(x, norms, norm_rows, eps, normed);
      fused = launch_streamed_norm_swiglu(*impl_, q, normed.ptr<float>(), normed.stride, x.rows, nullptr, act.ptr<float>(),
                                          act.stride);
    }
    if (!fused) Backend::norm_swiglu(x, norms, norm_rows, eps, w_gate_up, act, normed, gate_up);
    return;
  }
  if (impl_->fp8_product(q, Fp8Activations{Fp8Source::RmsNorm, x.ptr<float>(), x.stride, &n, x.rows, x.cols}, nullptr,
                         gate_up, Epilogue::Store)) {
    silu_mul(gate_up, act);
    return;
  }
  const CudaWeight w = impl_->dense(q);
  auto prepare = [&](void* hi, void* lo) {
    launch_rms_norm_split(impl_->stream, x.ptr<float>(), x.stride, n, x.rows, x.cols, w.type, hi, lo);
  };
  // The SiLU-gate reads the two halves' products straight (gate_up is not written).
  if (impl_->stacked_product(w, x.rows, prepare, [&](const float* sums) {
        launch_combine_silu(impl_->stream, sums, x.rows, w.rows, act.ptr<float>(), act.stride);
      })) {
    return;
  }
  impl_->product(w, x.rows, nullptr, gate_up, Epilogue::Store, prepare);
  silu_mul(gate_up, act);
}

void CudaBackend::rms_norm(const Tensor& x, const Weight& weight, float eps, const Tensor& y) {
  if (y.rows != x.rows || y.cols != x.cols) fail("cuda", "rms_norm: shape mismatch");
  launch_rms_norm(impl_->stream, x.ptr<float>(), x.stride, one_norm(weight, x.cols, eps), y.ptr<float>(), y.stride, x.rows,
                  x.cols);
}

void CudaBackend::rms_norm_rows(const Tensor& x, const Tensor& norms, const Tensor& norm_rows, float eps, const Tensor& y) {
  if (y.rows != x.rows || y.cols != x.cols) fail("cuda", "rms_norm_rows: shape mismatch");
  launch_rms_norm(impl_->stream, x.ptr<float>(), x.stride, norms_per_row("rms_norm_rows", x, norms, norm_rows, eps),
                  y.ptr<float>(), y.stride, x.rows, x.cols);
}

void CudaBackend::gather_rows(const Tensor& src, const Tensor& indices, const Tensor& dst) {
  if (src.cols != dst.cols || src.type != ElemType::F32 || dst.type != ElemType::F32 || indices.rows != dst.rows ||
      indices.type != ElemType::I32) {
    fail("cuda", "gather_rows: shape mismatch");
  }
  launch_gather_rows(impl_->stream, src.ptr<float>(), src.stride, src.rows, indices.ptr<std::int32_t>(), indices.stride,
                     dst.ptr<float>(), dst.stride, dst.rows, dst.cols);
}

void CudaBackend::silu_mul(const Tensor& gate_up, const Tensor& y) {
  if (y.cols * 2 != gate_up.cols || y.rows != gate_up.rows) fail("cuda", "silu_mul: shape mismatch");
  launch_silu_mul(impl_->stream, gate_up.ptr<float>(), gate_up.stride, y.ptr<float>(), y.stride, y.rows, y.cols);
}

void CudaBackend::embed(const Weight& table, const Tensor& ids, const Tensor& add, const Tensor& out) {
  const CudaWeight& t = cuda_weight(table);
  if (out.cols != t.cols || ids.rows != out.rows) fail("cuda", "embed: shape mismatch");
  if (t.quantized()) {
    launch_embed_quantized(impl_->stream, t, ids.ptr<std::int32_t>(), ids.stride, add.ptr<float>(), add.stride,
                           out.ptr<float>(), out.stride, out.rows);
    return;
  }
  launch_embed(impl_->stream, t, ids.ptr<std::int32_t>(), ids.stride, add.ptr<float>(), add.stride, out.ptr<float>(),
               out.stride, out.rows);
}

void CudaBackend::im2col(const Tensor& in, const Tensor& rows, int kernel, const Tensor& out) {
  // The row indices are the encoder's own (checked on the host when it builds them).
  if (out.cols != in.cols * kernel || rows.type != ElemType::I32 || rows.rows != out.rows * kernel || !rows.contiguous()) {
    fail("cuda", "im2col: shape mismatch");
  }
  launch_im2col(impl_->stream, in.ptr<float>(), in.stride, in.cols, kernel, rows.ptr<int>(), out.ptr<float>(), out.stride,
                out.rows);
}

void CudaBackend::rope_kv_append(const Tensor& q, const Tensor& k, const Tensor& v, const KvRows& rows,
                                 const RopeParams& q_rope, const RopeParams& k_rope, const KvCacheLayout& cache,
                                 const Tensor& k_cache, const Tensor& v_cache) {
  launch_rope_kv_append(impl_->stream, q, k, v, rows, q_rope, k_rope, cache, k_cache, v_cache);
}

// Rows of one call are either distinct sequences (a decode step) or consecutive positions of
// one sequence (a prefill, the encoder). Only a page table of one sequence tells the host
// which: there, tiles of rows share their keys (the tensor-core kernel); otherwise every row
// attends on its own (the decode kernel, any number of rows).
void CudaBackend::attention(const Tensor& q, const KvRows& rows, int n_heads, const KvCacheLayout& cache,
                            const Tensor& k_cache, const Tensor& v_cache, const Tensor& out) {
  check_kv_rows("cuda", "attention", rows, q.rows, cache);
  const bool one_sequence = rows.page_table.rows == 1;
  if ((q.rows == 1 || !one_sequence) && launch_decode_attention(*impl_, q, rows, n_heads, cache, k_cache, v_cache, out)) {
    return;
  }
  launch_attention(*impl_, q, rows, n_heads, cache, k_cache, v_cache, out, one_sequence);
}

void CudaBackend::argmax(const Tensor& logits, const Tensor& ids) {
  const std::size_t bytes = 2 * static_cast<std::size_t>(logits.rows) * sizeof(unsigned long long);
  if (bytes > impl_->argmax_keys.bytes) {
    impl_->scratch(impl_->argmax_keys, bytes);
    VOXTRAL_CUDA_CHECK(cudaMemsetAsync(impl_->argmax_keys.data, 0, impl_->argmax_keys.bytes, impl_->stream));
  }
  launch_argmax(impl_->stream, logits.ptr<float>(), logits.stride, logits.rows, logits.cols, ids.ptr<std::int32_t>(),
                ids.stride, static_cast<unsigned long long*>(impl_->argmax_keys.data),
                programmatic_launch(*impl_));
}

namespace {
struct CudaRecording final : Recording {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ~CudaRecording() override {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
  }
};
}  // namespace

std::unique_ptr<Recording> CudaBackend::record(const std::function<void()>& ops) {
  // Run once eagerly (this also grows any scratch memory), then capture the same launches.
  ops();
  auto r = std::make_unique<CudaRecording>();
  VOXTRAL_CUDA_CHECK(cudaStreamBeginCapture(impl_->stream, cudaStreamCaptureModeThreadLocal));
  impl_->capturing = true;
  try {
    ops();
  } catch (...) {
    impl_->capturing = false;
    cudaGraph_t broken = nullptr;
    cudaStreamEndCapture(impl_->stream, &broken);
    if (broken != nullptr) cudaGraphDestroy(broken);
    throw;
  }
  impl_->capturing = false;
  VOXTRAL_CUDA_CHECK(cudaStreamEndCapture(impl_->stream, &r->graph));
  VOXTRAL_CUDA_CHECK(cudaGraphInstantiate(&r->exec, r->graph, 0));
  return r;
}

void CudaBackend::replay(Recording& recording) {
  VOXTRAL_CUDA_CHECK(cudaGraphLaunch(static_cast<CudaRecording&>(recording).exec, impl_->stream));
}

}  // namespace voxtral
