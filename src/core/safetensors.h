// safetensors files: an 8-byte little-endian header length, a JSON header, then the data.
// Tensors are zero-copy views into a memory map. The header is fully validated before any
// view is handed out: its length, the JSON, every dtype, shape and offset, byte sizes equal
// to shape x dtype size, all data inside the file, no two tensors overlapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace voxtral {

class MappedFile;

enum class DType { Bool, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

std::size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // the safetensors spelling: "BF16", "F32", ...
bool is_float_dtype(DType dtype);          // F16, BF16, F32, F64

// "[3072, 4096]"
std::string shape_string(std::span<const std::int64_t> shape);

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  const std::byte* data = nullptr;  // aligned to dtype_size(dtype)
  std::size_t nbytes = 0;

  std::int64_t numel() const;
  // Typed access; the caller has checked dtype. Throws Error on a dtype mismatch.
  template <typename T>
  std::span<const T> as(DType expected) const;
};

class SafeTensors {
 public:
  // Maps the file and validates its header. Errors name the path.
  static SafeTensors open(const std::filesystem::path& path);
  // Parses a buffer the caller keeps alive (used by tests and the fuzzer).
  static SafeTensors from_buffer(std::span<const std::byte> bytes, std::string source);

  const TensorView* find(std::string_view name) const;
  const TensorView& get(std::string_view name) const;  // throws "<source>: no tensor named 'x'"
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  std::size_t data_bytes() const { return data_bytes_; }  // size of the data section
  // The tensor's pages leave resident memory (read again if touched) when this file is a
  // memory map; nothing for a buffer. For tensors a model no longer reads (quantized at load).
  void release(const TensorView& tensor) const;

 private:
  SafeTensors() = default;
  void parse(std::span<const std::byte> bytes);

  std::shared_ptr<const MappedFile> file_;  // keeps the map alive when opened from a path
  std::string source_;
  std::vector<TensorView> tensors_;         // sorted by name
  std::map<std::string, std::string> metadata_;
  std::size_t data_bytes_ = 0;
};

[[noreturn]] void throw_dtype_mismatch(const TensorView& tensor, DType expected);

template <typename T>
std::span<const T> TensorView::as(DType expected) const {
  if (dtype != expected || dtype_size(dtype) != sizeof(T)) throw_dtype_mismatch(*this, expected);
  return {reinterpret_cast<const T*>(data), nbytes / sizeof(T)};
}

}  // namespace voxtral
