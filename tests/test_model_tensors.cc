// The expected tensor list derived from params.json, and check_model_tensors on the tiny
// fixture models and on synthetic files with one thing wrong.
#include <gmock/gmock-matchers.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/json_util.h"
#include "core/mapped_file.h"
#include "core/model_tensors.h"
#include "core/safetensors.h"
#include "test_util.h"

namespace voxtral {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing::fixture;
using testing::TempDir;
using Shape = std::vector<std::int64_t>;

using testing::error_message;

// A verbatim copy of the real model's params.json.
ModelConfig real_config() { return ModelConfig::load(fixture("real/params.json")); }

std::map<std::string, Shape> by_name(const std::vector<TensorSpec>& specs) {
  std::map<std::string, Shape> out;
  for (const TensorSpec& spec : specs) out.emplace(spec.name, spec.shape);
  return out;
}

// A config small enough to write every tensor of it as zeros.
ModelConfig small_config() {
  ModelConfig c;
  c.audio.num_mel_bins = 4;
  c.encoder.dim = 8;
  c.encoder.n_layers = 2;
  c.encoder.n_heads = 2;
  c.encoder.n_kv_heads = 2;
  c.encoder.head_dim = 6;
  c.encoder.hidden_dim = 16;
  c.encoder.use_biases = true;
  c.downsample_factor = 2;
  c.decoder.dim = 10;
  c.decoder.n_layers = 2;
  c.decoder.n_heads = 4;
  c.decoder.n_kv_heads = 2;
  c.decoder.head_dim = 4;
  c.decoder.hidden_dim = 12;
  c.decoder.vocab_size = 7;
  c.decoder.ada_norm_dim = 3;
  return c;
}

struct FakeTensor {
  std::string name;
  std::string dtype;
  Shape shape;
};

// Writes zero-filled tensors with 8-byte aligned offsets into `dir`/weights.safetensors.
std::filesystem::path write_weights(const TempDir& dir, const std::vector<FakeTensor>& tensors) {
  static const std::map<std::string, std::size_t> kSizes = {{"F32", 4}, {"BF16", 2}, {"F16", 2},
                                                            {"I32", 4}, {"F64", 8}};
  Json header = Json::object();
  std::size_t offset = 0;
  for (const FakeTensor& t : tensors) {
    std::size_t bytes = kSizes.at(t.dtype);
    for (std::int64_t d : t.shape) bytes *= static_cast<std::size_t>(d);
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset = (offset + bytes + 7) / 8 * 8;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  return dir.write("weights.safetensors", testing::safetensors_bytes(text, std::string(offset, '\0')));
}

std::vector<FakeTensor> fake_model(const ModelConfig& config, const std::string& dtype) {
  std::vector<FakeTensor> out;
  for (const TensorSpec& spec : expected_tensors(config)) out.push_back({spec.name, dtype, spec.shape});
  return out;
}

TEST(TensorNames, MistralLayout) {
  EXPECT_EQ(tensor_names::encoder_layer(3, "attention.wq.weight"),
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.3.attention.wq.weight");
  EXPECT_EQ(tensor_names::encoder("conv_layers.0.conv.bias"),
            "mm_streams_embeddings.embedding_module.whisper_encoder.conv_layers.0.conv.bias");
  EXPECT_EQ(tensor_names::adapter("0.weight"),
            "mm_streams_embeddings.embedding_module.audio_language_projection.0.weight");
  EXPECT_EQ(tensor_names::decoder_layer(25, "ffn_norm.weight"), "layers.25.ffn_norm.weight");
}

TEST(ExpectedTensors, RealModelHas711WithTheDocumentedShapes) {
  const auto specs = expected_tensors(real_config());
  ASSERT_EQ(specs.size(), 711u);
  const auto shapes = by_name(specs);
  EXPECT_EQ(shapes.size(), 711u) << "names must be unique";

  const auto enc = [](int layer, const char* s) { return tensor_names::encoder_layer(layer, s); };
  const auto dec = [](int layer, const char* s) { return tensor_names::decoder_layer(layer, s); };
  const std::map<std::string, Shape> documented = {
      {tensor_names::kTokEmbeddings, {131072, 3072}},
      {tensor_names::encoder("conv_layers.0.conv.weight"), {1280, 128, 3}},
      {tensor_names::encoder("conv_layers.0.conv.bias"), {1280}},
      {tensor_names::encoder("conv_layers.1.conv.weight"), {1280, 1280, 3}},
      {tensor_names::encoder("conv_layers.1.conv.bias"), {1280}},
      {enc(0, "attention.wq.weight"), {2048, 1280}},
      {enc(0, "attention.wq.bias"), {2048}},
      {enc(0, "attention.wk.weight"), {2048, 1280}},
      {enc(7, "attention.wv.weight"), {2048, 1280}},
      {enc(7, "attention.wv.bias"), {2048}},
      {enc(31, "attention.wo.weight"), {1280, 2048}},
      {enc(31, "attention.wo.bias"), {1280}},
      {enc(31, "attention_norm.weight"), {1280}},
      {enc(12, "feed_forward.w1.weight"), {5120, 1280}},
      {enc(12, "feed_forward.w2.weight"), {1280, 5120}},
      {enc(12, "feed_forward.w2.bias"), {1280}},
      {enc(12, "feed_forward.w3.weight"), {5120, 1280}},
      {enc(12, "ffn_norm.weight"), {1280}},
      {tensor_names::encoder("transformer.norm.weight"), {1280}},
      {tensor_names::adapter("0.weight"), {3072, 5120}},
      {tensor_names::adapter("2.weight"), {3072, 3072}},
      {dec(0, "attention_norm.weight"), {3072}},
      {dec(0, "attention.wq.weight"), {4096, 3072}},
      {dec(0, "attention.wk.weight"), {1024, 3072}},
      {dec(0, "attention.wv.weight"), {1024, 3072}},
      {dec(0, "attention.wo.weight"), {3072, 4096}},
      {dec(25, "ffn_norm.weight"), {3072}},
      {dec(25, "feed_forward.w1.weight"), {9216, 3072}},
      {dec(25, "feed_forward.w2.weight"), {3072, 9216}},
      {dec(25, "feed_forward.w3.weight"), {9216, 3072}},
      {dec(25, "ada_rms_norm_t_cond.0.weight"), {32, 3072}},
      {dec(25, "ada_rms_norm_t_cond.2.weight"), {3072, 32}},
      {"norm.weight", {3072}},
  };
  for (const auto& [name, shape] : documented) {
    ASSERT_TRUE(shapes.contains(name)) << name;
    EXPECT_EQ(shapes.at(name), shape) << name;
  }
  // Biases only where the real encoder has them, none in the decoder, no extra layers.
  for (const char* absent : {"attention.wk.bias", "feed_forward.w1.bias", "feed_forward.w3.bias"}) {
    EXPECT_FALSE(shapes.contains(enc(0, absent))) << absent;
  }
  EXPECT_FALSE(shapes.contains(dec(0, "attention.wq.bias")));
  EXPECT_FALSE(shapes.contains(enc(32, "attention.wq.weight")));
  EXPECT_FALSE(shapes.contains(dec(26, "attention.wq.weight")));
}

TEST(ExpectedTensors, FollowsTheConfigSwitches) {
  ModelConfig config = real_config();
  config.decoder.ada_norm_dim = 0;
  EXPECT_EQ(expected_tensors(config).size(), 711u - 2 * 26);
  config.encoder.use_biases = false;
  EXPECT_EQ(expected_tensors(config).size(), 711u - 2 * 26 - 4 * 32);
}

TEST(CheckModelTensors, TinyModelsPass) {
  for (const char* model : {"tiny-a", "tiny-b"}) {
    SCOPED_TRACE(model);
    const auto config = ModelConfig::load(fixture(std::string(model) + "/params.json"));
    const auto weights = SafeTensors::open(fixture(std::string(model) + "/consolidated.safetensors"));
    EXPECT_NO_THROW(check_model_tensors(weights, config));
    const auto specs = expected_tensors(config);
    EXPECT_EQ(specs.size(), weights.tensors().size());
    for (const TensorSpec& spec : specs) {
      const TensorView* t = weights.find(spec.name);
      ASSERT_NE(t, nullptr) << spec.name;
      EXPECT_EQ(t->shape, spec.shape) << spec.name;
      EXPECT_EQ(t->dtype, DType::BF16) << spec.name;
    }
  }
}

TEST(CheckModelTensors, AcceptsF32AndF16) {
  TempDir dir;
  const ModelConfig config = small_config();
  for (const char* dtype : {"F32", "F16"}) {
    const auto weights = SafeTensors::open(write_weights(dir, fake_model(config, dtype)));
    EXPECT_NO_THROW(check_model_tensors(weights, config)) << dtype;
  }
}

TEST(CheckModelTensors, ReportsAMissingTensor) {
  TempDir dir;
  const ModelConfig config = small_config();
  auto tensors = fake_model(config, "BF16");
  const std::string removed = tensor_names::decoder_layer(1, "attention.wk.weight");
  std::erase_if(tensors, [&](const FakeTensor& t) { return t.name == removed; });
  const auto weights = SafeTensors::open(write_weights(dir, tensors));
  EXPECT_THAT(error_message([&] { check_model_tensors(weights, config); }),
              AllOf(HasSubstr("weights.safetensors"), HasSubstr("1 problem"),
                    HasSubstr("layers.1.attention.wk.weight: missing (expected shape [8, 10])")));
}

TEST(CheckModelTensors, ReportsANonFloatDType) {
  TempDir dir;
  const ModelConfig config = small_config();
  auto tensors = fake_model(config, "BF16");
  tensors[0].dtype = "I32";
  tensors[1].dtype = "F64";
  const auto weights = SafeTensors::open(write_weights(dir, tensors));
  EXPECT_THAT(error_message([&] { check_model_tensors(weights, config); }),
              AllOf(HasSubstr("weights.safetensors"), HasSubstr("2 problems"),
                    HasSubstr(tensors[0].name + ": expected dtype F16, BF16 or F32, found I32"),
                    HasSubstr(tensors[1].name + ": expected dtype F16, BF16 or F32, found F64")));
}

TEST(CheckModelTensors, ReportsWrongShapesFromADisagreeingParamsJson) {
  // tiny-a's params.json with the decoder width changed: hundreds of shapes disagree, the
  // list is capped.
  Json params = parse_json(read_text_file(fixture("tiny-a/params.json")), "params.json");
  params["dim"] = 128;
  TempDir dir;
  const auto config = ModelConfig::load(dir.write("params.json", params.dump(2)));
  const auto weights = SafeTensors::open(fixture("tiny-a/consolidated.safetensors"));
  const std::string message = error_message([&] { check_model_tensors(weights, config); });
  EXPECT_THAT(message, AllOf(HasSubstr("consolidated.safetensors"), HasSubstr("problems"),
                             HasSubstr(std::string(tensor_names::kTokEmbeddings) +
                                       ": expected shape [1515, 128], found [1515, 96]"),
                             HasSubstr("more")));
  EXPECT_LE(std::count(message.begin(), message.end(), '\n'), 21);

  // One layer fewer in the file than params.json asks for: only that layer is missing.
  params = parse_json(read_text_file(fixture("tiny-a/params.json")), "params.json");
  params["n_layers"] = 3;
  const auto deeper = ModelConfig::load(dir.write("params.json", params.dump(2)));
  EXPECT_THAT(error_message([&] { check_model_tensors(weights, deeper); }),
              AllOf(HasSubstr("layers.2.attention.wq.weight: missing"), Not(HasSubstr("layers.1."))));
}

TEST(CheckModelTensors, ReportsOneWrongShape) {
  TempDir dir;
  const ModelConfig config = small_config();
  auto tensors = fake_model(config, "BF16");
  const std::string changed = tensor_names::encoder_layer(1, "attention.wv.bias");
  for (FakeTensor& t : tensors) {
    if (t.name == changed) t.shape = {11};
  }
  const auto weights = SafeTensors::open(write_weights(dir, tensors));
  EXPECT_THAT(error_message([&] { check_model_tensors(weights, config); }),
              AllOf(HasSubstr("1 problem"), HasSubstr(changed + ": expected shape [12], found [11]"),
                    Not(HasSubstr("more"))));
}

TEST(CheckModelTensors, IgnoresExtraTensors) {
  TempDir dir;
  const ModelConfig config = small_config();
  auto tensors = fake_model(config, "BF16");
  tensors.push_back({"output.weight", "I32", {3}});
  const auto weights = SafeTensors::open(write_weights(dir, tensors));
  EXPECT_NO_THROW(check_model_tensors(weights, config));
}

}  // namespace
}  // namespace voxtral
