// voxtral-quantize's writer (src/core/quantized_model.h) on the tiny fixtures. The stored
// planes are read back here with the layout the header documents, written out again in this
// test (not through dequantize_row), and compared with the source's BF16 values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/bf16.h"
#include "core/quantized_model.h"
#include "core/safetensors.h"
#include "model/model.h"
#include "test_util.h"

namespace voxtral {
namespace {

using ::testing::HasSubstr;
using testing::error_message;
using testing::fixture;
using testing::TempDir;
using testing::to_floats;

std::string file_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Weight (r, i) of a stored Q8 or Q4 matrix, decoded from the documented layout.
float stored_weight(const TensorView& values, const TensorView& scales, bool q4, std::int64_t r, std::int64_t i) {
  const std::int64_t blocks = scales.shape[1];
  const float d = f16_to_float(scales.as<std::uint16_t>(DType::F16)[static_cast<std::size_t>(r * blocks + i / 32)]);
  const auto* row = reinterpret_cast<const std::uint8_t*>(values.data) + r * values.shape[1];
  if (!q4) return d * static_cast<float>(static_cast<std::int8_t>(row[i]));
  const std::uint8_t byte = row[(i / 32) * 16 + (i % 32) % 16];
  const int code = (i % 32) < 16 ? (byte & 0x0f) : (byte >> 4);
  return d * static_cast<float>(code - 8);
}

// Every weight within its step of the source value (Q8: half a step; Q4: one, at the clamp).
void expect_close_to_source(const SafeTensors& out, const SafeTensors& in, const std::string& name, bool q4) {
  const TensorView& values = out.get(name);
  const TensorView& scales = out.get(name + "_scale");
  const TensorView& source = in.get(name);
  EXPECT_EQ(values.dtype, q4 ? DType::U8 : DType::I8) << name;
  EXPECT_EQ(values.shape, (std::vector<std::int64_t>{source.shape[0], q4 ? source.shape[1] / 2 : source.shape[1]}));
  EXPECT_EQ(scales.shape, (std::vector<std::int64_t>{source.shape[0], source.shape[1] / 32})) << name;
  const auto want = to_floats(source);
  for (std::int64_t r = 0; r < source.shape[0]; ++r) {
    float amax = 0;
    for (std::int64_t i = 0; i < source.shape[1]; ++i) {
      amax = std::max(amax, std::fabs(want[static_cast<std::size_t>(r * source.shape[1] + i)]));
    }
    for (std::int64_t i = 0; i < source.shape[1]; ++i) {
      const float w = want[static_cast<std::size_t>(r * source.shape[1] + i)];
      const float step = amax / (q4 ? 8.0f : 127.0f) * 1.001f;  // a row's blocks never exceed its max
      ASSERT_LE(std::fabs(stored_weight(values, scales, q4, r, i) - w), q4 ? step : step / 2) << name << " " << r << "," << i;
    }
  }
}

TEST(QuantizedModel, Q4OfTinyAStoresTheDocumentedPlanesAndCopiesTheRest) {
  TempDir dir;
  const auto in = fixture("tiny-a");
  const auto summary = write_quantized_model(in, dir.path() / "q4", WeightFormat::Q4);
  const SafeTensors source = SafeTensors::open(in / "consolidated.safetensors");
  const SafeTensors out = SafeTensors::open(dir.path() / "q4" / "consolidated.safetensors");
  EXPECT_EQ(out.metadata().at("quantization"), "q4");
  EXPECT_EQ(out.metadata().at("quantization_block"), "32");
  expect_close_to_source(out, source, "layers.0.attention.wq.weight", true);
  expect_close_to_source(out, source, "layers.1.feed_forward.w2.weight", true);
  expect_close_to_source(out, source, "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.0.attention.wv.weight", true);
  // The LM head stays Q8 in a Q4 model.
  expect_close_to_source(out, source, "mm_streams_embeddings.embedding_module.tok_embeddings.weight", false);
  // Convolutions and norms are copied byte for byte.
  for (const char* name : {"mm_streams_embeddings.embedding_module.whisper_encoder.conv_layers.0.conv.weight",
                           "layers.0.attention_norm.weight", "norm.weight"}) {
    const TensorView& a = source.get(name);
    const TensorView& b = out.get(name);
    ASSERT_EQ(a.nbytes, b.nbytes) << name;
    EXPECT_EQ(std::memcmp(a.data, b.data, a.nbytes), 0) << name;
    EXPECT_EQ(b.dtype, a.dtype) << name;
  }
  EXPECT_EQ(out.find("norm.weight_scale"), nullptr);
  const auto params = nlohmann::json::parse(file_text(dir.path() / "q4" / "params.json"));
  EXPECT_EQ(params["quantization"], (nlohmann::json{{"format", "q4"}, {"block_size", 32}}));
  EXPECT_EQ(params["dim"], 96);
  EXPECT_EQ(file_text(dir.path() / "q4" / "tekken.json"), file_text(in / "tekken.json"));
  EXPECT_EQ(summary.bytes_out, std::filesystem::file_size(dir.path() / "q4" / "consolidated.safetensors"));
  EXPECT_LT(summary.bytes_out, summary.bytes_in);
  EXPECT_EQ(summary.quantized + summary.copied, static_cast<int>(source.tensors().size()));
}

TEST(QuantizedModel, Q8QuantizesEveryLinearMatrixAndKeepsMatricesOffTheBlockInBf16) {
  TempDir dir;
  write_quantized_model(fixture("tiny-b"), dir.path() / "q8", WeightFormat::Q8);
  const SafeTensors source = SafeTensors::open(fixture("tiny-b") / "consolidated.safetensors");
  const SafeTensors out = SafeTensors::open(dir.path() / "q8" / "consolidated.safetensors");
  expect_close_to_source(out, source, "layers.0.attention.wo.weight", false);
  // tiny-b's encoder has 48 inputs, not a multiple of 32: those matrices stay as they are.
  const std::string enc_wq = "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.0.attention.wq.weight";
  EXPECT_EQ(out.get(enc_wq).dtype, source.get(enc_wq).dtype);
  EXPECT_EQ(out.find(enc_wq + "_scale"), nullptr);
}

TEST(QuantizedModel, RefusesAQuantizedSourceAnExistingOutputAndTheSourceItself) {
  TempDir dir;
  write_quantized_model(fixture("tiny-a"), dir.path() / "q8", WeightFormat::Q8);
  EXPECT_THAT(error_message([&] { write_quantized_model(dir.path() / "q8", dir.path() / "again", WeightFormat::Q4); }),
              HasSubstr("describes a quantized model already"));
  EXPECT_THAT(error_message([&] { write_quantized_model(fixture("tiny-a"), dir.path() / "q8", WeightFormat::Q4); }),
              HasSubstr("already exists; remove it or choose another output"));
  EXPECT_THAT(error_message([&] { write_quantized_model(fixture("tiny-a"), fixture("tiny-a"), WeightFormat::Q4); }),
              HasSubstr("is the source directory"));
  EXPECT_THAT(error_message([&] { write_quantized_model(dir.path() / "missing", dir.path() / "x", WeightFormat::Q4); }),
              HasSubstr("params.json: cannot read"));
  EXPECT_THAT(error_message([&] { write_quantized_model(fixture("tiny-a"), dir.path() / "y", WeightFormat::BF16); }),
              HasSubstr("is not q8 or q4"));
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "y" / "consolidated.safetensors.partial"));
}

// Some exporters write "quantization": null for an unquantized model: that is BF16.
TEST(QuantizedModel, ANullQuantizationEntryIsAnUnquantizedSource) {
  TempDir dir;
  const auto src = dir.path() / "src";
  std::filesystem::create_directory(src);
  for (const char* f : {"consolidated.safetensors", "tekken.json"}) std::filesystem::copy(fixture("tiny-a") / f, src / f);
  auto params = nlohmann::json::parse(file_text(fixture("tiny-a") / "params.json"));
  params["quantization"] = nullptr;
  std::ofstream(src / "params.json") << params.dump();
  EXPECT_EQ(Model::load(src, testing::test_model_options())->weight_format(), WeightFormat::BF16);
  const auto summary = write_quantized_model(src, dir.path() / "q8", WeightFormat::Q8);
  EXPECT_GT(summary.quantized, 0);
  EXPECT_EQ(Model::load(dir.path() / "q8", testing::test_model_options())->weight_format(), WeightFormat::Q8);
}

// Overwrites the first F16 value of tensor `name` in a safetensors file with `bits`.
void poke_f16(const std::filesystem::path& file, const std::string& name, std::uint16_t bits) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  std::uint64_t header_size = 0;
  f.read(reinterpret_cast<char*>(&header_size), 8);
  std::string header(header_size, '\0');
  f.read(header.data(), static_cast<std::streamsize>(header_size));
  const auto begin = nlohmann::json::parse(header)[name]["data_offsets"][0].get<std::uint64_t>();
  f.seekp(static_cast<std::streamoff>(8 + header_size + begin));
  f.write(reinterpret_cast<const char*>(&bits), 2);
}

TEST(QuantizedModel, ANonFiniteScaleIsRefusedAtLoadNamingTheTensor) {
  TempDir dir;
  write_quantized_model(fixture("tiny-a"), dir.path() / "q8", WeightFormat::Q8);
  poke_f16(dir.path() / "q8" / "consolidated.safetensors", "layers.1.feed_forward.w2.weight_scale", 0x7e00);
  EXPECT_THAT(error_message([&] { Model::load(dir.path() / "q8", testing::test_model_options()); }),
              HasSubstr("layers.1.feed_forward.w2.weight_scale: block scale 0 is NaN or infinite"));
}

TEST(QuantizedModel, ParamsThatDisagreeWithTheFileAreOneLineNamingBoth) {
  TempDir dir;
  write_quantized_model(fixture("tiny-a"), dir.path() / "q4", WeightFormat::Q4);
  auto params = nlohmann::json::parse(file_text(dir.path() / "q4" / "params.json"));
  params["quantization"]["format"] = "q8";
  std::ofstream(dir.path() / "q4" / "params.json") << params.dump();
  EXPECT_THAT(error_message([&] { Model::load(dir.path() / "q4", testing::test_model_options()); }),
              HasSubstr("holds q4 weights but params.json says q8"));
  params.erase("quantization");
  std::ofstream(dir.path() / "q4" / "params.json") << params.dump();
  EXPECT_THAT(error_message([&] { Model::load(dir.path() / "q4", testing::test_model_options()); }),
              HasSubstr("holds q4 weights but params.json says unquantized"));
}

TEST(QuantizedModel, ANanWeightIsRefusedNamingTheTensorAndRow) {
  TempDir dir;
  std::filesystem::copy(fixture("tiny-a"), dir.path() / "src");
  poke_f16(dir.path() / "src" / "consolidated.safetensors", "layers.0.attention.wo.weight", 0x7fc0);  // BF16 NaN
  EXPECT_THAT(error_message([&] { write_quantized_model(dir.path() / "src", dir.path() / "q4", WeightFormat::Q4); }),
              HasSubstr("layers.0.attention.wo.weight: row 0: quantize: input 0 is NaN"));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path() / "q4"));  // nothing half-written is left
}

TEST(QuantizedModel, AFileOrLinkAlreadyInTheOutputIsNeverWrittenThrough) {
  TempDir dir;
  std::filesystem::copy(fixture("tiny-a"), dir.path() / "src");
  const std::string params_before = file_text(dir.path() / "src" / "params.json");
  std::filesystem::create_directories(dir.path() / "out");
  std::filesystem::create_symlink(dir.path() / "src" / "params.json", dir.path() / "out" / "params.json");
  EXPECT_THAT(error_message([&] { write_quantized_model(dir.path() / "src", dir.path() / "out", WeightFormat::Q4); }),
              HasSubstr("params.json: already exists"));
  EXPECT_EQ(file_text(dir.path() / "src" / "params.json"), params_before);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "out" / "consolidated.safetensors"));
}

}  // namespace
}  // namespace voxtral
