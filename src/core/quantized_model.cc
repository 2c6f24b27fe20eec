#include "core/quantized_model.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/safetensors.h"
#include "core/tensor_values.h"

namespace voxtral {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool is_linear_matrix(std::string_view name) {
  static constexpr std::string_view kLinear[] = {
      "attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "attention.wo.weight",
      "feed_forward.w1.weight", "feed_forward.w2.weight", "feed_forward.w3.weight",
      "audio_language_projection.0.weight", "audio_language_projection.2.weight", "tok_embeddings.weight"};
  return std::any_of(std::begin(kLinear), std::end(kLinear), [&](std::string_view s) { return ends_with(name, s); });
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), cat("cannot read: ", std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}


// One tensor of the output: where its bytes come from.
struct OutputTensor {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t bytes = 0;
  const TensorView* source = nullptr;
  WeightFormat format = WeightFormat::BF16;  // BF16: copy; Q8/Q4: values or scales
  bool scales = false;
};

class OutputFile {
 public:
  // Created, never opened: an existing file or link there is an error ("x": O_EXCL).
  explicit OutputFile(std::filesystem::path path)
      : path_(std::move(path)), file_(std::fopen(path_.string().c_str(), "wbx"), std::fclose) {
    if (!file_) fail(path_.string(), cat("cannot create: ", std::strerror(errno)));
  }
  void write(const void* data, std::size_t bytes) {
    if (bytes > 0 && std::fwrite(data, 1, bytes, file_.get()) != bytes) fail(path_.string(), "write failed (disk full?)");
  }
  void close() {
    if (std::fclose(file_.release()) != 0) fail(path_.string(), "write failed (disk full?)");
  }

 private:
  std::filesystem::path path_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_;
};

void write_text(const std::filesystem::path& path, const std::string& text) {
  OutputFile out(path);
  out.write(text.data(), text.size());
  out.close();
}

// Moves `from` to `to` unless `to` exists (a concurrent run, or a link placed there).
void rename_new(const std::filesystem::path& from, const std::filesystem::path& to) {
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    fail(to.string(), cat("cannot be written: ", std::strerror(errno)));
  }
}

// Quantizes the source row by row: values and scales planes are written as two tensors, so
// each pass writes one of them (quantizing twice costs less than holding a whole matrix).
void write_quantized(OutputFile& out, const OutputTensor& t) {
  const std::int64_t rows = t.source->shape[0], cols = t.source->shape[1];
  std::vector<float> row(static_cast<std::size_t>(cols));
  std::vector<std::uint8_t> values(quantized_row_bytes(t.format, cols));
  std::vector<std::uint16_t> scales(static_cast<std::size_t>(cols / kQuantBlock));
  for (std::int64_t r = 0; r < rows; ++r) {
    quantize_tensor_row(*t.source, t.format, r, row, values, scales);
    if (t.scales) {
      out.write(scales.data(), scales.size() * sizeof(std::uint16_t));
    } else {
      out.write(values.data(), values.size());
    }
  }
}

}  // namespace

WeightFormat stored_format(std::string_view name, std::span<const std::int64_t> shape, WeightFormat requested) {
  if (!is_block_quantized(requested) && requested != WeightFormat::FP8) {
    fail("quantize", cat("format ", weight_format_name(requested), " is not Q8, Q4 or FP8"));
  }
  if (shape.size() != 2 || shape[1] % kQuantBlock != 0 || !is_linear_matrix(name)) return WeightFormat::BF16;
  return ends_with(name, "tok_embeddings.weight") ? WeightFormat::Q8 : requested;
}

std::string scale_tensor_name(std::string_view name) { return std::string(name) + "_scale"; }

void quantize_tensor_row(const TensorView& source, WeightFormat format, std::int64_t r, std::span<float> scratch,
                         std::span<std::uint8_t> codes, std::span<std::uint16_t> scales) {
  read_floats(source, r * static_cast<std::int64_t>(scratch.size()), scratch);
  try {
    quantize_row(format, scratch, codes, scales);
  } catch (const Error& e) {
    fail(source.name, cat("row ", r, ": ", e.what()));
  }
}

QuantizeSummary write_quantized_model(const std::filesystem::path& in, const std::filesystem::path& out,
                                      WeightFormat format) {
  if (!is_block_quantized(format)) fail("quantize", cat("format ", weight_format_name(format), " is not q8 or q4"));
  std::error_code ec;
  if (std::filesystem::equivalent(in, out, ec)) fail(out.string(), "is the source directory; choose another output");
  const auto out_file = out / "consolidated.safetensors";
  for (const char* name : {"consolidated.safetensors", "params.json", "tekken.json"}) {
    if (std::filesystem::exists(std::filesystem::symlink_status(out / name, ec))) {
      fail((out / name).string(), "already exists; remove it or choose another output");
    }
  }

  auto params = nlohmann::json::parse(read_text(in / "params.json"), nullptr, false);
  if (!params.is_object()) fail((in / "params.json").string(), "is not a JSON object");
  if (params.contains("quantization") && !params["quantization"].is_null()) {
    fail((in / "params.json").string(), "describes a quantized model already");
  }
  const std::string tekken = read_text(in / "tekken.json");
  const SafeTensors source = SafeTensors::open(in / "consolidated.safetensors");
  if (source.metadata().count("quantization") > 0) fail(source.source(), "is quantized already");

  QuantizeSummary summary;
  std::vector<OutputTensor> tensors;
  for (const TensorView& t : source.tensors()) {
    const WeightFormat f = stored_format(t.name, t.shape, format);
    if (f == WeightFormat::BF16) {
      tensors.push_back({t.name, t.dtype, t.shape, t.nbytes, &t, f, false});
      ++summary.copied;
      continue;
    }
    const std::int64_t rows = t.shape[0], cols = t.shape[1];
    const auto row_bytes = static_cast<std::int64_t>(quantized_row_bytes(f, cols));
    tensors.push_back({t.name, f == WeightFormat::Q8 ? DType::I8 : DType::U8, {rows, row_bytes},
                       static_cast<std::uint64_t>(rows * row_bytes), &t, f, false});
    tensors.push_back({scale_tensor_name(t.name), DType::F16, {rows, cols / kQuantBlock},
                       static_cast<std::uint64_t>(rows * (cols / kQuantBlock)) * 2, &t, f, true});
    ++summary.quantized;
  }
  // Wider elements first: every tensor then starts aligned to its element size, with no gaps.
  std::stable_sort(tensors.begin(), tensors.end(),
                   [](const auto& a, const auto& b) { return dtype_size(a.dtype) > dtype_size(b.dtype); });

  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}, {"quantization", std::string(weight_format_name(format))},
                            {"quantization_block", std::to_string(kQuantBlock)}, {"generator", "voxtral-quantize"}};
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes}}};
    offset += t.bytes;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::filesystem::create_directories(out, ec);
  if (ec) fail(out.string(), cat("cannot create the directory: ", ec.message()));
  // Every file is written under a name of this run's own, then moved in place; the weights
  // last, so a directory holds a loadable model only once all of it is there.
  const std::string suffix = cat(".partial-", ::getpid());
  const auto partial = out / ("consolidated.safetensors" + suffix);
  const auto params_partial = out / ("params.json" + suffix), tekken_partial = out / ("tekken.json" + suffix);
  std::vector<std::filesystem::path> placed;
  params["quantization"] = {{"format", std::string(weight_format_name(format))}, {"block_size", kQuantBlock}};
  try {
    write_text(params_partial, params.dump(2) + "\n");
    write_text(tekken_partial, tekken);
    OutputFile file(partial);
    std::uint8_t length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>((header_text.size() >> (8 * i)) & 0xff);
    file.write(length, 8);
    file.write(header_text.data(), header_text.size());
    for (const auto& t : tensors) {
      if (t.format == WeightFormat::BF16) {
        file.write(t.source->data, t.source->nbytes);
      } else {
        write_quantized(file, t);
      }
    }
    file.close();
    rename_new(params_partial, out / "params.json");
    placed.push_back(out / "params.json");
    rename_new(tekken_partial, out / "tekken.json");
    placed.push_back(out / "tekken.json");
    rename_new(partial, out_file);
  } catch (...) {
    for (const auto& p : {partial, params_partial, tekken_partial}) std::filesystem::remove(p, ec);
    for (const auto& p : placed) std::filesystem::remove(p, ec);
    throw;
  }
  summary.bytes_in = std::filesystem::file_size(in / "consolidated.safetensors");
  summary.bytes_out = 8 + header_text.size() + offset;
  return summary;
}

}  // namespace voxtral
