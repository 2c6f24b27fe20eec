#include "core/safetensors.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/json_util.h"
#include "core/mapped_file.h"

namespace voxtral {

namespace {

// A corrupt length field must not turn into a giant allocation or parse; real headers
// (711 tensors) are well under 100 KiB.
constexpr std::uint64_t kMaxHeaderBytes = 100ull << 20;
constexpr std::size_t kMaxDims = 8;
constexpr std::string_view kMetadataKey = "__metadata__";

struct DTypeInfo {
  DType dtype;
  std::string_view name;
  std::size_t size;
  bool is_float;
};

constexpr std::array<DTypeInfo, 13> kDTypes = {{
    {DType::Bool, "BOOL", 1, false},
    {DType::U8, "U8", 1, false},
    {DType::I8, "I8", 1, false},
    {DType::I16, "I16", 2, false},
    {DType::U16, "U16", 2, false},
    {DType::F16, "F16", 2, true},
    {DType::BF16, "BF16", 2, true},
    {DType::I32, "I32", 4, false},
    {DType::U32, "U32", 4, false},
    {DType::F32, "F32", 4, true},
    {DType::F64, "F64", 8, true},
    {DType::I64, "I64", 8, false},
    {DType::U64, "U64", 8, false},
}};

const DTypeInfo& info(DType dtype) {
  for (const DTypeInfo& entry : kDTypes) {
    if (entry.dtype == dtype) return entry;
  }
  fail("safetensors", cat("invalid DType value ", static_cast<int>(dtype)));
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const DTypeInfo& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

std::uint64_t read_le64(const std::byte* p) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<std::uint64_t>(p[i]);
  return value;
}

// nlohmann keeps only one of two equal keys, so duplicates are found in a separate SAX
// pass over the header text, before the DOM has collapsed them.
class DuplicateKeyFinder : public nlohmann::json_sax<Json> {
 public:
  explicit DuplicateKeyFinder(const std::string& source) : source_(source) {}

  bool key(string_t& name) override {
    if (open_objects_.empty()) return true;
    if (open_objects_.size() == 1) current_entry_ = name;
    if (!open_objects_.back().insert(name).second) {
      if (open_objects_.size() == 1) {
        if (name == kMetadataKey) fail(source_, "header has two __metadata__ entries");
        fail(source_, cat("duplicate tensor name '", name, "'"));
      }
      fail(source_, cat(current_entry_ == kMetadataKey ? std::string("__metadata__")
                                                      : cat("tensor '", current_entry_, "'"),
                        ": duplicate key '", name, "'"));
    }
    return true;
  }
  bool start_object(std::size_t) override {
    open_objects_.emplace_back();
    return true;
  }
  bool end_object() override {
    open_objects_.pop_back();
    return true;
  }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_array(std::size_t) override { return true; }
  bool end_array() override { return true; }
  // The DOM parse before this pass already reported malformed JSON.
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;
  }

 private:
  const std::string& source_;
  std::vector<std::set<std::string>> open_objects_;
  std::string current_entry_;
};

std::string tensor_label(std::string_view name) { return cat("tensor '", name, "'"); }

// Reads a JSON value that must be a non-negative integer (shape dims, offsets).
std::uint64_t non_negative_integer(const Json& value, const std::string& source, std::string_view what) {
  if (value.is_number_unsigned()) return value.get<std::uint64_t>();
  fail(source, cat(what, " must be a non-negative integer, found ", json_type_name(value)));
}

std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

struct TensorSlice {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

void read_metadata(const Json& entry, const std::string& source, std::map<std::string, std::string>& out) {
  if (!entry.is_object()) fail(source, cat("__metadata__ must be an object, found ", json_type_name(entry)));
  for (const auto& [key, value] : entry.items()) {
    if (!value.is_string()) {
      fail(source, cat("__metadata__: value of '", key, "' must be a string, found ", json_type_name(value)));
    }
    out.emplace(key, value.get<std::string>());
  }
}

DType read_dtype(const Json& entry, const std::string& where) {
  const Json& value = entry["dtype"];
  if (!value.is_string()) fail(where, cat("dtype must be a string, found ", json_type_name(value)));
  const std::string& text = value.get_ref<const std::string&>();
  const auto dtype = parse_dtype(text);
  if (!dtype) {
    fail(where, cat("unsupported dtype \"", text.substr(0, 40),
                    "\" (expected one of BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64)"));
  }
  return *dtype;
}

// Fills view.shape and returns the tensor's byte size; rejects shapes whose element or
// byte count overflows (numel() relies on that).
std::uint64_t read_shape(const Json& entry, const std::string& where, TensorView& view) {
  const Json& value = entry["shape"];
  if (!value.is_array()) fail(where, cat("shape must be an array, found ", json_type_name(value)));
  if (value.size() > kMaxDims) {
    fail(where, cat("shape has ", value.size(), " dimensions, at most ", kMaxDims, " are supported"));
  }
  constexpr auto kInt64Max = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::optional<std::uint64_t> numel = 1;
  for (const Json& dim_json : value) {
    const std::uint64_t dim = non_negative_integer(dim_json, where, "shape dimension");
    if (dim > kInt64Max) fail(where, cat("shape dimension ", dim, " is too large"));
    view.shape.push_back(static_cast<std::int64_t>(dim));
    if (numel) numel = checked_mul(*numel, dim);
  }
  const auto byte_count = numel ? checked_mul(*numel, dtype_size(view.dtype)) : std::nullopt;
  if (!byte_count || *numel > kInt64Max) {
    fail(where, cat("shape ", shape_string(view.shape), " has too many elements"));
  }
  return *byte_count;
}

TensorSlice read_offsets(const Json& entry, const std::string& where, std::uint64_t data_bytes) {
  const Json& value = entry["data_offsets"];
  if (!value.is_array()) {
    fail(where, cat("data_offsets must be an array [begin, end], found ", json_type_name(value)));
  }
  if (value.size() != 2) {
    fail(where, cat("data_offsets must hold 2 numbers [begin, end], found ", value.size()));
  }
  TensorSlice slice;
  slice.begin = non_negative_integer(value[0], where, "data_offsets begin");
  slice.end = non_negative_integer(value[1], where, "data_offsets end");
  if (slice.begin > slice.end) {
    fail(where, cat("data_offsets [", slice.begin, ", ", slice.end, "] have begin after end"));
  }
  if (slice.end > data_bytes) {
    fail(where, cat("data_offsets [", slice.begin, ", ", slice.end,
                    "] run past the end of the data section (", data_bytes, " bytes)"));
  }
  return slice;
}

void check_entry_keys(const Json& entry, const std::string& where) {
  if (!entry.is_object()) fail(where, cat("entry must be an object, found ", json_type_name(entry)));
  for (const auto& item : entry.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      fail(where, cat("unknown key '", item.key(), "' (expected dtype, shape and data_offsets)"));
    }
  }
  for (const char* required : {"dtype", "shape", "data_offsets"}) {
    if (!entry.contains(required)) fail(where, cat("missing '", required, "'"));
  }
}

// Sorted by start, each non-empty slice must begin at or after the end of the one before.
void check_no_overlap(const std::vector<TensorSlice>& slices, const std::vector<TensorView>& tensors,
                      const std::string& source) {
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < slices.size(); ++i) {
    if (slices[i].end > slices[i].begin) order.push_back(i);
  }
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return slices[a].begin < slices[b].begin; });
  for (std::size_t k = 1; k < order.size(); ++k) {
    const TensorSlice& prev = slices[order[k - 1]];
    const TensorSlice& next = slices[order[k]];
    if (next.begin < prev.end) {
      fail(source, cat("tensors '", tensors[order[k - 1]].name, "' (bytes ", prev.begin, "..", prev.end,
                       ") and '", tensors[order[k]].name, "' (bytes ", next.begin, "..", next.end,
                       ") overlap"));
    }
  }
}

}  // namespace

std::size_t dtype_size(DType dtype) { return info(dtype).size; }
std::string_view dtype_name(DType dtype) { return info(dtype).name; }
bool is_float_dtype(DType dtype) { return info(dtype).is_float; }

std::string shape_string(std::span<const std::int64_t> shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::int64_t TensorView::numel() const {
  std::int64_t count = 1;
  for (std::int64_t dim : shape) count *= dim;  // validated against overflow at load time
  return count;
}

void throw_dtype_mismatch(const TensorView& tensor, DType expected) {
  if (tensor.dtype == expected) {
    fail(tensor_label(tensor.name), cat("dtype ", dtype_name(expected),
                                        " read through an element type of a different size"));
  }
  fail(tensor_label(tensor.name),
       cat("expected dtype ", dtype_name(expected), ", found ", dtype_name(tensor.dtype)));
}

SafeTensors SafeTensors::open(const std::filesystem::path& path) {
  auto file = std::make_shared<const MappedFile>(path);
  SafeTensors result;
  result.file_ = file;
  result.source_ = path.string();
  result.parse(file->bytes());
  return result;
}

SafeTensors SafeTensors::from_buffer(std::span<const std::byte> bytes, std::string source) {
  SafeTensors result;
  result.source_ = std::move(source);
  result.parse(bytes);
  return result;
}

const TensorView* SafeTensors::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorView& t, std::string_view n) { return t.name < n; });
  if (it == tensors_.end() || it->name != name) return nullptr;
  return &*it;
}

const TensorView& SafeTensors::get(std::string_view name) const {
  const TensorView* tensor = find(name);
  if (tensor == nullptr) fail(source_, cat("no tensor named '", name, "'"));
  return *tensor;
}

void SafeTensors::parse(std::span<const std::byte> bytes) {
  const std::string& src = source_;
  if (bytes.size() < 8) {
    fail(src, cat("file is ", bytes.size(),
                  " bytes, too short for the 8-byte header length of a safetensors file"));
  }
  const std::uint64_t header_len = read_le64(bytes.data());
  if (header_len == 0) fail(src, "header length is 0, expected a JSON header");
  if (header_len > kMaxHeaderBytes) {
    fail(src, cat("header length ", header_len, " exceeds the limit of 100 MiB (corrupt file?)"));
  }
  if (header_len > bytes.size() - 8) {
    fail(src, cat("header length ", header_len, " runs past the end of the file (", bytes.size(), " bytes)"));
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  const std::byte* data_start = bytes.data() + 8 + header_len;
  data_bytes_ = bytes.size() - 8 - header_len;

  const Json header = parse_json(header_text, cat(src, ": header"));
  if (!header.is_object()) fail(src, cat("header must be a JSON object, found ", json_type_name(header)));
  DuplicateKeyFinder duplicates(src);
  Json::sax_parse(header_text.begin(), header_text.end(), &duplicates);

  std::vector<TensorSlice> slices;
  tensors_.reserve(header.size());
  slices.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      read_metadata(entry, src, metadata_);
      continue;
    }
    const std::string where = cat(src, ": ", tensor_label(name));
    check_entry_keys(entry, where);
    TensorView view;
    view.name = name;
    view.dtype = read_dtype(entry, where);
    const std::uint64_t byte_count = read_shape(entry, where, view);
    const TensorSlice slice = read_offsets(entry, where, data_bytes_);
    if (slice.end - slice.begin != byte_count) {
      fail(where, cat("shape ", shape_string(view.shape), " x ", dtype_name(view.dtype), " needs ",
                      byte_count, " bytes, data_offsets give ", slice.end - slice.begin));
    }
    view.data = data_start + slice.begin;
    view.nbytes = static_cast<std::size_t>(byte_count);
    // Typed spans over misaligned data would be undefined behaviour; empty tensors are never read.
    const std::size_t alignment = dtype_size(view.dtype);
    if (view.nbytes > 0 && std::bit_cast<std::uintptr_t>(view.data) % alignment != 0) {
      fail(where, cat("data at offset ", slice.begin, " is not aligned to its ", alignment, "-byte ",
                      dtype_name(view.dtype), " elements"));
    }
    tensors_.push_back(std::move(view));
    slices.push_back(slice);
  }
  check_no_overlap(slices, tensors_, src);
  std::sort(tensors_.begin(), tensors_.end(),
            [](const TensorView& a, const TensorView& b) { return a.name < b.name; });
}

void SafeTensors::release(const TensorView& tensor) const {
  if (file_ != nullptr) release_mapped_pages(tensor.data, tensor.nbytes);
}

}  // namespace voxtral
