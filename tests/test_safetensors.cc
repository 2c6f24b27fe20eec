// SafeTensors: loading the committed fixtures, and one test per kind of malformed file, each
// checking that the error names the file (or tensor) and the problem.
#include <gmock/gmock-matchers.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/json_util.h"
#include "core/mapped_file.h"
#include "core/safetensors.h"
#include "test_util.h"

namespace voxtral {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::fixture;
using testing::TempDir;

using testing::error_message;

// Pads the header with spaces so the data section starts 8-byte aligned, as real writers do.
std::string aligned_file(std::string header, const std::string& data) {
  while (header.size() % 8 != 0) header += ' ';
  return testing::safetensors_bytes(header, data);
}

// Writes a file with `header` and `data_size` zero bytes of data; opening it must fail.
std::string open_error(const std::string& header, std::size_t data_size, std::string* path_out = nullptr) {
  TempDir dir;
  const auto path = dir.write("bad.safetensors", aligned_file(header, std::string(data_size, '\0')));
  if (path_out != nullptr) *path_out = path.string();
  return error_message([&] { SafeTensors::open(path); });
}

std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(DType, SizesNamesAndKinds) {
  EXPECT_EQ(dtype_size(DType::Bool), 1u);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_EQ(dtype_size(DType::F16), 2u);
  EXPECT_EQ(dtype_size(DType::I32), 4u);
  EXPECT_EQ(dtype_size(DType::F32), 4u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::U64), 8u);
  EXPECT_EQ(dtype_name(DType::BF16), "BF16");
  EXPECT_EQ(dtype_name(DType::Bool), "BOOL");
  EXPECT_EQ(dtype_name(DType::U16), "U16");
  EXPECT_TRUE(is_float_dtype(DType::F16));
  EXPECT_TRUE(is_float_dtype(DType::BF16));
  EXPECT_TRUE(is_float_dtype(DType::F32));
  EXPECT_TRUE(is_float_dtype(DType::F64));
  EXPECT_FALSE(is_float_dtype(DType::I32));
  EXPECT_FALSE(is_float_dtype(DType::Bool));
}

TEST(DType, ShapeString) {
  const std::vector<std::int64_t> matrix{3072, 4096};
  EXPECT_EQ(shape_string(matrix), "[3072, 4096]");
  EXPECT_EQ(shape_string(std::vector<std::int64_t>{7}), "[7]");
  EXPECT_EQ(shape_string(std::vector<std::int64_t>{}), "[]");
}

TEST(SafeTensors, LoadsTinyModels) {
  for (const char* model : {"tiny-a", "tiny-b"}) {
    SCOPED_TRACE(model);
    const auto st = SafeTensors::open(fixture(std::string(model) + "/consolidated.safetensors"));
    EXPECT_FALSE(st.tensors().empty());
    EXPECT_EQ(st.metadata().at("format"), "pt");
    EXPECT_TRUE(std::is_sorted(st.tensors().begin(), st.tensors().end(),
                               [](const TensorView& a, const TensorView& b) { return a.name < b.name; }));
    for (const TensorView& t : st.tensors()) {
      EXPECT_EQ(st.find(t.name), &t);
      EXPECT_EQ(t.dtype, DType::BF16) << t.name;
      EXPECT_EQ(t.nbytes, static_cast<std::size_t>(t.numel()) * 2) << t.name;
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data) % 2, 0u) << t.name;
    }
    const auto config = ModelConfig::load(fixture(std::string(model) + "/params.json"));
    const TensorView& norm = st.get("norm.weight");
    EXPECT_EQ(norm.shape, std::vector<std::int64_t>{config.decoder.dim});
    EXPECT_EQ(st.find("no.such.tensor"), nullptr);
    EXPECT_THAT(error_message([&] { st.get("no.such.tensor"); }),
                AllOf(HasSubstr("consolidated.safetensors"), HasSubstr("no tensor named 'no.such.tensor'")));
  }
}

TEST(SafeTensors, ReferenceTensorsHaveTheirShapes) {
  const std::string text = read_text_file(fixture("tiny-a.json"));
  const Json doc = parse_json(text, "tiny-a.json");
  const Json* clip = nullptr;
  for (const Json& c : doc.at("clips")) {
    if (c.at("tag") == "tiny-a_speech_short_480ms") clip = &c;
  }
  ASSERT_NE(clip, nullptr);
  const std::int64_t positions = clip->at("n_positions").get<std::int64_t>();
  const std::int64_t mel_frames = clip->at("n_mel_frames").get<std::int64_t>();
  const std::int64_t encoder_frames = clip->at("n_encoder_frames").get<std::int64_t>();
  const std::vector<std::int64_t> greedy = clip->at("greedy_ids").get<std::vector<std::int64_t>>();
  const auto config = ModelConfig::load(fixture("tiny-a/params.json"));

  const auto st = SafeTensors::open(fixture("tiny-a_speech_short_480ms.safetensors"));
  using Shape = std::vector<std::int64_t>;
  const auto expect_tensor = [&](const char* name, DType dtype, const Shape& shape) {
    const TensorView& t = st.get(name);
    EXPECT_EQ(t.dtype, dtype) << name;
    EXPECT_EQ(t.shape, shape) << name;
  };
  expect_tensor("mel", DType::F32, Shape{config.audio.num_mel_bins, mel_frames});
  expect_tensor("encoder_out", DType::F32, Shape{encoder_frames, config.encoder.dim});
  expect_tensor("adapter_out", DType::F32, Shape{positions, config.decoder.dim});
  expect_tensor("logits", DType::F32, Shape{positions, config.decoder.vocab_size});
  expect_tensor("input_ids", DType::I32, Shape{positions});
  expect_tensor("greedy_ids", DType::I32, Shape{static_cast<std::int64_t>(greedy.size())});
  EXPECT_EQ(testing::to_ints(st.get("greedy_ids")), greedy);

  const auto filters = SafeTensors::open(fixture("mel_filters.safetensors"));
  const TensorView& mel_filters = filters.get("mel_filters");
  EXPECT_EQ(mel_filters.dtype, DType::F32);
  EXPECT_EQ(mel_filters.shape, (Shape{201, 128}));
  EXPECT_EQ(mel_filters.as<float>(DType::F32).size(), 201u * 128u);
}

TEST(SafeTensors, TypedAccessChecksTheDType) {
  const auto st = SafeTensors::open(fixture("tiny-a/consolidated.safetensors"));
  const TensorView& norm = st.get("norm.weight");
  EXPECT_EQ(norm.as<std::uint16_t>(DType::BF16).size(), static_cast<std::size_t>(norm.numel()));
  EXPECT_THAT(error_message([&] { norm.as<float>(DType::F32); }),
              AllOf(HasSubstr("norm.weight"), HasSubstr("expected dtype F32, found BF16")));
  EXPECT_THAT(error_message([&] { norm.as<float>(DType::BF16); }), HasSubstr("norm.weight"));
}

TEST(SafeTensors, FromBufferParsesEveryDTypeAndKeepsMetadata) {
  const std::string header =
      R"({"__metadata__":{"format":"pt","note":"x"},)"
      R"("f64":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
      R"("f32":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("bf16":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]},)"
      R"("b":{"dtype":"BOOL","shape":[1,1],"data_offsets":[20,21]},)"
      R"("empty":{"dtype":"I64","shape":[0,5],"data_offsets":[21,21]},)"
      R"("also_empty":{"dtype":"U8","shape":[0],"data_offsets":[21,21]},)"
      R"("scalar":{"dtype":"I32","shape":[],"data_offsets":[24,28]}})";
  std::string data(28, '\0');
  const float values[2] = {1.5f, -2.0f};
  std::memcpy(data.data() + 8, values, sizeof values);
  const std::string file = aligned_file(header, data);
  const auto st = SafeTensors::from_buffer(as_bytes(file), "buffer");
  EXPECT_EQ(st.source(), "buffer");
  EXPECT_EQ(st.tensors().size(), 7u);
  EXPECT_EQ(st.data_bytes(), 28u);
  EXPECT_EQ(st.metadata().size(), 2u);
  EXPECT_EQ(st.metadata().at("note"), "x");
  EXPECT_EQ(testing::to_floats(st.get("f32")), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(st.get("empty").numel(), 0);
  EXPECT_EQ(st.get("empty").nbytes, 0u);
  EXPECT_EQ(st.get("scalar").numel(), 1);
  EXPECT_EQ(st.get("b").dtype, DType::Bool);
}

TEST(SafeTensors, EmptyHeaderObjectIsValid) {
  const std::string file = aligned_file("{}", "");
  const auto st = SafeTensors::from_buffer(as_bytes(file), "buffer");
  EXPECT_TRUE(st.tensors().empty());
  EXPECT_TRUE(st.metadata().empty());
}

TEST(SafeTensors, FuzzSeedsAreValid) {
  const auto seeds = std::filesystem::path(VOXTRAL_FIXTURES_DIR) / "../../fuzz/seeds/fuzz_safetensors";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(seeds)) {
    SCOPED_TRACE(entry.path().string());
    EXPECT_NO_THROW(SafeTensors::open(entry.path()));
    ++count;
  }
  EXPECT_GE(count, 3);
}

// --- malformed files -------------------------------------------------------------------

TEST(SafeTensorsErrors, MissingFile) {
  TempDir dir;
  const auto path = dir.path() / "absent.safetensors";
  EXPECT_THAT(error_message([&] { SafeTensors::open(path); }),
              AllOf(HasSubstr("absent.safetensors"), HasSubstr("no such file")));
}

TEST(SafeTensorsErrors, DirectoryInsteadOfFile) {
  TempDir dir;
  EXPECT_THAT(error_message([&] { SafeTensors::open(dir.path()); }),
              AllOf(HasSubstr(dir.path().string()), HasSubstr("is a directory")));
}

TEST(SafeTensorsErrors, FileShorterThanEightBytes) {
  TempDir dir;
  for (const std::string& content : {std::string(), std::string("\x05\0\0\0\0", 5)}) {
    const auto path = dir.write("short.safetensors", content);
    EXPECT_THAT(error_message([&] { SafeTensors::open(path); }),
                AllOf(HasSubstr("short.safetensors"), HasSubstr(std::to_string(content.size()) + " bytes"),
                      HasSubstr("too short")));
  }
}

TEST(SafeTensorsErrors, HeaderLengthZero) {
  TempDir dir;
  const auto path = dir.write("zero.safetensors", std::string(16, '\0'));
  EXPECT_THAT(error_message([&] { SafeTensors::open(path); }),
              AllOf(HasSubstr("zero.safetensors"), HasSubstr("header length is 0")));
}

TEST(SafeTensorsErrors, HeaderLengthPastTheEnd) {
  TempDir dir;
  std::string file = testing::safetensors_bytes("{}", "");
  file[0] = 100;  // claims a 100-byte header in a 10-byte file
  const auto path = dir.write("truncated.safetensors", file);
  EXPECT_THAT(error_message([&] { SafeTensors::open(path); }),
              AllOf(HasSubstr("truncated.safetensors"), HasSubstr("header length 100"),
                    HasSubstr("past the end of the file (10 bytes)")));
}

TEST(SafeTensorsErrors, HugeHeaderLength) {
  TempDir dir;
  std::string file = testing::safetensors_bytes("{}", "");
  file[5] = 1;  // 2^40 bytes
  const auto path = dir.write("huge.safetensors", file);
  EXPECT_THAT(error_message([&] { SafeTensors::open(path); }),
              AllOf(HasSubstr("huge.safetensors"), HasSubstr("1099511627778"), HasSubstr("100 MiB")));
  std::string all_ones(16, '\xff');
  EXPECT_THAT(error_message([&] { SafeTensors::from_buffer(as_bytes(all_ones), "ones"); }),
              AllOf(HasSubstr("ones"), HasSubstr("100 MiB")));
}

TEST(SafeTensorsErrors, HeaderNotJson) {
  std::string path;
  EXPECT_THAT(open_error(R"({"x": {"dtype": "F32", )", 0, &path),
              AllOf(HasSubstr(path), HasSubstr("header"), HasSubstr("invalid JSON")));
}

TEST(SafeTensorsErrors, NumberOverflowInHeaderIsAnError) {
  // nlohmann reports this as out_of_range, not parse_error (found by the fuzzer).
  std::string path;
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [54e55555555], "data_offsets": [0, 4]}})", 8, &path),
              AllOf(HasSubstr(path), HasSubstr("invalid JSON"), HasSubstr("number overflow")));
}

TEST(SafeTensorsErrors, HeaderNotAnObject) {
  std::string path;
  EXPECT_THAT(open_error("[1, 2, 3]", 0, &path),
              AllOf(HasSubstr(path), HasSubstr("header must be a JSON object, found an array")));
}

TEST(SafeTensorsErrors, UnsupportedDType) {
  std::string path;
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})", 8, &path),
              AllOf(HasSubstr(path), HasSubstr("tensor 'w'"), HasSubstr("unsupported dtype \"F8_E4M3\"")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("dtype must be a string")));
}

TEST(SafeTensorsErrors, NegativeOrNonIntegerShape) {
  std::string path;
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 8]}})", 8, &path),
              AllOf(HasSubstr(path), HasSubstr("tensor 'w'"), HasSubstr("non-negative integer"),
                    HasSubstr("-3")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("non-negative integer"), HasSubstr("2.5")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("shape must be an array")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("9 dimensions")));
}

TEST(SafeTensorsErrors, ShapeProductOverflows) {
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 2],)"
                         R"( "data_offsets": [0, 0]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("too many elements")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F64", "shape": [4611686018427387904],)"
                         R"( "data_offsets": [0, 0]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("too many elements")));
}

TEST(SafeTensorsErrors, OffsetsOutsideTheData) {
  std::string path;
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})", 16, &path),
              AllOf(HasSubstr(path), HasSubstr("tensor 'w'"), HasSubstr("[8, 24]"),
                    HasSubstr("past the end of the data section (16 bytes)")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "U8", "shape": [0],)"
                         R"( "data_offsets": [18446744073709551615, 18446744073709551615]}})", 16),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("past the end of the data section")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})", 16),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("data_offsets must hold 2 numbers")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})", 16),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("data_offsets begin must be a non-negative integer")));
}

TEST(SafeTensorsErrors, BeginAfterEnd) {
  std::string path;
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 16, &path),
              AllOf(HasSubstr(path), HasSubstr("tensor 'w'"), HasSubstr("[8, 4] have begin after end")));
}

TEST(SafeTensorsErrors, ByteSizeDisagreesWithShape) {
  std::string path;
  EXPECT_THAT(open_error(R"({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})", 24, &path),
              AllOf(HasSubstr(path),
                    HasSubstr("tensor 'x': shape [2, 3] x F32 needs 24 bytes, data_offsets give 20")));
}

TEST(SafeTensorsErrors, OverlappingTensors) {
  std::string path;
  EXPECT_THAT(open_error(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                         R"( "b": {"dtype": "F32", "shape": [4], "data_offsets": [12, 28]},)"
                         R"( "c": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                         32, &path),
              AllOf(HasSubstr(path), HasSubstr("'a' (bytes 0..16)"), HasSubstr("'b' (bytes 12..28)"),
                    HasSubstr("overlap")));
  // Zero-size tensors inside another tensor's bytes do not count as overlapping.
  const std::string file = aligned_file(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                                        R"( "c": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                                        std::string(16, '\0'));
  EXPECT_EQ(SafeTensors::from_buffer(as_bytes(file), "ok").tensors().size(), 2u);
}

TEST(SafeTensorsErrors, DuplicateNames) {
  std::string path;
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                         R"( "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                         8, &path),
              AllOf(HasSubstr(path), HasSubstr("duplicate tensor name 'w'")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("duplicate key 'dtype'")));
}

TEST(SafeTensorsErrors, MisalignedData) {
  std::string path;
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}})", 8, &path),
              AllOf(HasSubstr(path), HasSubstr("tensor 'w'"), HasSubstr("not aligned"), HasSubstr("F32")));
  // A header whose length leaves the data section itself misaligned.
  TempDir dir;
  const std::string unpadded = R"({"w":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}})";
  ASSERT_EQ(unpadded.size() % 2, 1u);
  const auto odd = dir.write("odd.safetensors", testing::safetensors_bytes(unpadded, std::string(2, '\0')));
  EXPECT_THAT(error_message([&] { SafeTensors::open(odd); }),
              AllOf(HasSubstr("odd.safetensors"), HasSubstr("tensor 'w'"), HasSubstr("not aligned")));
}

TEST(SafeTensorsErrors, BadMetadata) {
  std::string path;
  EXPECT_THAT(open_error(R"({"__metadata__": ["pt"]})", 0, &path),
              AllOf(HasSubstr(path), HasSubstr("__metadata__ must be an object")));
  EXPECT_THAT(open_error(R"({"__metadata__": {"format": "pt", "version": 2}})", 0),
              AllOf(HasSubstr("__metadata__"), HasSubstr("'version' must be a string")));
  EXPECT_THAT(open_error(R"({"__metadata__": {"a": "1"}, "__metadata__": {"a": "2"}})", 0),
              HasSubstr("two __metadata__ entries"));
}

TEST(SafeTensorsErrors, MalformedTensorEntry) {
  EXPECT_THAT(open_error(R"({"w": [1, 2]})", 0), AllOf(HasSubstr("tensor 'w'"), HasSubstr("must be an object")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1]}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("missing 'data_offsets'")));
  EXPECT_THAT(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}})", 8),
              AllOf(HasSubstr("tensor 'w'"), HasSubstr("unknown key 'extra'")));
}

}  // namespace
}  // namespace voxtral
