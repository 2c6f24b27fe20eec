#include "backend/cpu/cpu_backend.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>

#include "backend/cpu/simd.h"
#include "core/error.h"
#include "core/tensor_values.h"

namespace voxtral {

namespace {

// Reads one byte per page so that the memory map is paged in during loading rather than
// during the first decode step (which would otherwise look slow).
void prefault(ThreadPool& pool, const void* data, std::size_t bytes) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  auto begin = reinterpret_cast<std::uintptr_t>(data) & ~(page - 1);
  auto end = reinterpret_cast<std::uintptr_t>(data) + bytes;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_WILLNEED);
  const auto pages = static_cast<std::int64_t>((end - begin + page - 1) / page);
  std::atomic<unsigned> sink{0};
  const auto first = reinterpret_cast<std::uintptr_t>(data);
  pool.parallel_for(pages, 1024, [&](std::int64_t lo, std::int64_t hi) {
    unsigned sum = 0;
    for (std::int64_t p = lo; p < hi; ++p) {
      // The first page's byte is the data's own: the page may begin before it (heap memory).
      const std::uintptr_t at = std::max(begin + static_cast<std::size_t>(p) * page, first);
      sum += *reinterpret_cast<const volatile unsigned char*>(at);
    }
    sink.fetch_add(sum, std::memory_order_relaxed);
  });
}

}  // namespace

CpuBackend::CpuBackend(int threads, CpuPrecision precision) : pool_(threads), precision_(precision) {}
CpuBackend::~CpuBackend() = default;

std::string CpuBackend::name() const {
  return cat("cpu (", pool_.size(), " threads, ", simd::kernels().name, simd::kernels().amx ? "+amx" : "", " kernels",
             precision_ == CpuPrecision::Fast ? ", fast precision (BF16 or, with Q8/Q4 weights, int8 activations)" : "",
             ")");
}

void* CpuBackend::allocate(std::size_t bytes) {
  // 64-byte alignment suits every vector width the kernels use.
  const std::size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p == nullptr) fail("cpu backend", cat("out of memory allocating ", bytes, " bytes"));
  return p;
}

void CpuBackend::deallocate(void* data) { std::free(data); }

void CpuBackend::copy_to_device(const Tensor& dst, const void* host) {
  for (std::int64_t r = 0; r < dst.rows; ++r) {
    const std::size_t row_bytes = static_cast<std::size_t>(dst.cols) * elem_size(dst.type);
    std::memcpy(static_cast<char*>(dst.data) + static_cast<std::size_t>(r * dst.stride) * elem_size(dst.type),
                static_cast<const char*>(host) + static_cast<std::size_t>(r) * row_bytes, row_bytes);
  }
}

void CpuBackend::copy_to_host(const Tensor& src, void* host) {
  for (std::int64_t r = 0; r < src.rows; ++r) {
    const std::size_t row_bytes = static_cast<std::size_t>(src.cols) * elem_size(src.type);
    std::memcpy(static_cast<char*>(host) + static_cast<std::size_t>(r) * row_bytes,
                static_cast<const char*>(src.data) + static_cast<std::size_t>(r * src.stride) * elem_size(src.type),
                row_bytes);
  }
}

void CpuBackend::fill_zero(const Tensor& dst) {
  for (std::int64_t r = 0; r < dst.rows; ++r) {
    std::memset(static_cast<char*>(dst.data) + static_cast<std::size_t>(r * dst.stride) * elem_size(dst.type), 0,
                static_cast<std::size_t>(dst.cols) * elem_size(dst.type));
  }
}

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  if (src.rows != dst.rows || src.cols != dst.cols || src.type != dst.type) fail("cpu backend", "copy: shape mismatch");
  const std::size_t row_bytes = static_cast<std::size_t>(src.cols) * elem_size(src.type);
  for (std::int64_t r = 0; r < src.rows; ++r) {
    std::memmove(static_cast<char*>(dst.data) + static_cast<std::size_t>(r * dst.stride) * elem_size(dst.type),
                 static_cast<const char*>(src.data) + static_cast<std::size_t>(r * src.stride) * elem_size(src.type),
                 row_bytes);
  }
}

Weight CpuBackend::keep(std::unique_ptr<CpuWeight> weight) {
  Weight w{weight->rows, weight->cols, weight.get()};
  std::lock_guard lock(weights_mutex_);
  weights_.push_back(std::move(weight));
  return w;
}

Weight CpuBackend::load_weight(std::span<const WeightPart> parts, WeightUse use) {
  if (parts.empty()) fail("cpu backend", "load_weight: no tensors");
  auto w = std::make_unique<CpuWeight>();
  w->cols = parts[0].cols();
  w->format = parts[0].format();
  bool all_bf16 = true, all_f32 = true;
  for (const WeightPart& p : parts) {
    if (p.cols() != w->cols) fail(p.values->name, "cannot be stacked with tensors of a different width");
    if (p.format() != w->format) fail(p.values->name, "cannot be stacked with tensors of another format");
    w->rows += p.rows();
    all_bf16 = all_bf16 && p.values->dtype == DType::BF16;
    all_f32 = all_f32 && p.values->dtype == DType::F32;
  }
  w->use = use;
  if (w->quantized() || all_bf16 || all_f32) {
    // Used in place (the memory map, or the model's quantized planes): no copy, no conversion.
    if (!w->quantized()) w->type = all_bf16 ? ElemType::BF16 : ElemType::F32;
    for (const WeightPart& p : parts) {
      const std::uint16_t* scales = w->quantized() ? p.scales->as<std::uint16_t>(DType::F16).data() : nullptr;
      w->segments.push_back({p.values->data, p.rows(), scales});
      prefault(pool_, p.values->data, p.values->nbytes);
      weight_bytes_ += p.values->nbytes;
      if (scales != nullptr) {
        prefault(pool_, p.scales->data, p.scales->nbytes);
        weight_bytes_ += p.scales->nbytes;
      }
    }
  } else {
    w->type = ElemType::F32;
    w->f32_storage.reserve(static_cast<std::size_t>(w->rows * w->cols));
    for (const WeightPart& p : parts) {
      const auto values = read_floats(*p.values);
      w->f32_storage.insert(w->f32_storage.end(), values.begin(), values.end());
    }
    w->segments.push_back({w->f32_storage.data(), w->rows});
    weight_bytes_ += w->f32_storage.size() * sizeof(float);
  }
  return keep(std::move(w));
}

Weight CpuBackend::load_vector(std::span<const float> values) {
  auto w = std::make_unique<CpuWeight>();
  w->type = ElemType::F32;
  w->rows = 1;
  w->cols = static_cast<std::int64_t>(values.size());
  w->f32_storage.assign(values.begin(), values.end());
  w->segments.push_back({w->f32_storage.data(), 1});
  weight_bytes_ += values.size() * sizeof(float);
  return keep(std::move(w));
}

void CpuBackend::linear(const Tensor& x, const Weight& w, const Weight& bias, const Tensor& y, Epilogue epilogue) {
  cpu_linear(*this, x, w, bias, y, epilogue);
}

namespace {
struct CpuRecording final : Recording {
  std::function<void()> ops;
};
}  // namespace

std::unique_ptr<Recording> CpuBackend::record(const std::function<void()>& ops) {
  auto r = std::make_unique<CpuRecording>();
  r->ops = ops;
  ops();
  return r;
}

void CpuBackend::replay(Recording& recording) { static_cast<CpuRecording&>(recording).ops(); }

}  // namespace voxtral
