// ModelConfig: the real params.json, the tiny fixtures, and malformed variants that must
// each fail with a message naming params.json and the offending key.
#include <gmock/gmock-matchers.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/json_util.h"
#include "core/mapped_file.h"
#include "test_util.h"

namespace voxtral {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::fixture;
using testing::TempDir;

constexpr const char* kEncoderPath = "multimodal.whisper_model_args.encoder_args";
constexpr const char* kAudioPath = "multimodal.whisper_model_args.encoder_args.audio_encoding_args";

using testing::error_message;

Json load_json(const std::filesystem::path& path) { return parse_json(read_text_file(path), path.string()); }

Json real_params() { return load_json(fixture("real/params.json")); }

Json& encoder_args(Json& params) { return params["multimodal"]["whisper_model_args"]["encoder_args"]; }

TEST(Config, RealParamsJson) {
  const ModelConfig c = ModelConfig::load(fixture("real/params.json"));
  EXPECT_EQ(c.decoder.dim, 3072);
  EXPECT_EQ(c.decoder.n_layers, 26);
  EXPECT_EQ(c.decoder.n_heads, 32);
  EXPECT_EQ(c.decoder.n_kv_heads, 8);
  EXPECT_EQ(c.decoder.head_dim, 128);
  EXPECT_EQ(c.decoder.q_width(), 4096);
  EXPECT_EQ(c.decoder.kv_width(), 1024);
  EXPECT_EQ(c.decoder.hidden_dim, 9216);
  EXPECT_EQ(c.decoder.sliding_window, 8192);
  EXPECT_EQ(c.decoder.vocab_size, 131072);
  EXPECT_EQ(c.decoder.model_max_length, 131072);
  EXPECT_EQ(c.decoder.ada_norm_dim, 32);
  EXPECT_FALSE(c.decoder.use_biases);
  EXPECT_FLOAT_EQ(c.decoder.norm_eps, 1e-5f);
  EXPECT_DOUBLE_EQ(c.decoder.rope_theta, 1e6);

  EXPECT_EQ(c.encoder.dim, 1280);
  EXPECT_EQ(c.encoder.n_layers, 32);
  EXPECT_EQ(c.encoder.n_heads, 32);
  EXPECT_EQ(c.encoder.n_kv_heads, 32);
  EXPECT_EQ(c.encoder.head_dim, 64);
  EXPECT_EQ(c.encoder.q_width(), 2048);
  EXPECT_EQ(c.encoder.hidden_dim, 5120);
  EXPECT_EQ(c.encoder.sliding_window, 750);
  EXPECT_TRUE(c.encoder.use_biases);
  EXPECT_FLOAT_EQ(c.encoder.norm_eps, 1e-5f);
  EXPECT_DOUBLE_EQ(c.encoder.rope_theta, 1e6);

  EXPECT_EQ(c.audio.sampling_rate, 16000);
  EXPECT_EQ(c.audio.num_mel_bins, 128);
  EXPECT_EQ(c.audio.hop_length, 160);
  EXPECT_EQ(c.audio.window_size, 400);
  EXPECT_DOUBLE_EQ(c.audio.frame_rate, 12.5);
  EXPECT_FLOAT_EQ(c.audio.global_log_mel_max, 1.5f);
  EXPECT_EQ(c.downsample_factor, 4);
  EXPECT_EQ(c.mel_frames_per_position(), 8);
  EXPECT_EQ(c.samples_per_position(), 1280);
  EXPECT_EQ(c.adapter_input_dim(), 5120);
}

TEST(Config, FixtureCopyMatchesTheSharedModel) {
  const auto shared = std::filesystem::path(VOXTRAL_FIXTURES_DIR) / "../../../shared/model/params.json";
  if (!std::filesystem::exists(shared)) GTEST_SKIP() << "no shared model directory beside the checkout";
  EXPECT_EQ(load_json(shared), real_params());
}

void expect_transformer_matches(const TransformerConfig& t, const Json& j) {
  EXPECT_EQ(t.dim, j.at("dim").get<int>());
  EXPECT_EQ(t.n_layers, j.at("n_layers").get<int>());
  EXPECT_EQ(t.n_heads, j.at("n_heads").get<int>());
  EXPECT_EQ(t.n_kv_heads, j.at("n_kv_heads").get<int>());
  EXPECT_EQ(t.head_dim, j.at("head_dim").get<int>());
  EXPECT_EQ(t.hidden_dim, j.at("hidden_dim").get<int>());
  EXPECT_EQ(t.sliding_window, j.at("sliding_window").get<int>());
  EXPECT_FLOAT_EQ(t.norm_eps, j.at("norm_eps").get<float>());
  EXPECT_DOUBLE_EQ(t.rope_theta, j.at("rope_theta").get<double>());
  EXPECT_EQ(t.use_biases, j.at("use_biases").get<bool>());
}

TEST(Config, TinyModelsMatchTheirParamsJson) {
  for (const char* model : {"tiny-a", "tiny-b"}) {
    SCOPED_TRACE(model);
    const auto path = fixture(std::string(model) + "/params.json");
    const ModelConfig c = ModelConfig::load(path);
    Json j = load_json(path);
    expect_transformer_matches(c.decoder, j);
    EXPECT_EQ(c.decoder.vocab_size, j.at("vocab_size").get<int>());
    EXPECT_EQ(c.decoder.model_max_length, j.at("model_max_length").get<int>());
    EXPECT_EQ(c.decoder.ada_norm_dim, j.at("ada_rms_norm_t_cond_dim").get<int>());
    const Json& enc = encoder_args(j);
    expect_transformer_matches(c.encoder, enc);
    const Json& audio = enc.at("audio_encoding_args");
    EXPECT_EQ(c.audio.sampling_rate, audio.at("sampling_rate").get<int>());
    EXPECT_EQ(c.audio.num_mel_bins, audio.at("num_mel_bins").get<int>());
    EXPECT_EQ(c.audio.hop_length, audio.at("hop_length").get<int>());
    EXPECT_EQ(c.audio.window_size, audio.at("window_size").get<int>());
    EXPECT_DOUBLE_EQ(c.audio.frame_rate, audio.at("frame_rate").get<double>());
    EXPECT_FLOAT_EQ(c.audio.global_log_mel_max, audio.at("global_log_mel_max").get<float>());
    EXPECT_EQ(c.downsample_factor,
              j.at("multimodal").at("whisper_model_args").at("downsample_args").at("downsample_factor").get<int>());
  }
}

TEST(Config, NoAdaNormWhenTheFlagIsOff) {
  Json params = real_params();
  params["ada_rms_norm_t_cond"] = false;
  params.erase("ada_rms_norm_t_cond_dim");
  TempDir dir;
  EXPECT_EQ(ModelConfig::load(dir.write("params.json", params.dump())).decoder.ada_norm_dim, 0);
}

TEST(ConfigErrors, MissingFile) {
  TempDir dir;
  EXPECT_THAT(error_message([&] { ModelConfig::load(dir.path() / "params.json"); }),
              AllOf(HasSubstr("params.json"), HasSubstr("no such file")));
}

TEST(ConfigErrors, NotJson) {
  TempDir dir;
  for (const char* text : {"{\"dim\": 3072,", "", "dim = 3072"}) {
    SCOPED_TRACE(text);
    const auto path = dir.write("params.json", text);
    const std::string message = error_message([&] { ModelConfig::load(path); });
    EXPECT_THAT(message, HasSubstr("params.json"));
    EXPECT_TRUE(message.find("invalid JSON") != std::string::npos || message.find("empty file") != std::string::npos)
        << message;
  }
  const auto overflow = dir.write("params.json", R"({"dim": 1e999})");
  EXPECT_THAT(error_message([&] { ModelConfig::load(overflow); }),
              AllOf(HasSubstr("params.json"), HasSubstr("invalid JSON"), HasSubstr("number overflow")));
  const auto path = dir.write("params.json", "[1, 2]");
  EXPECT_THAT(error_message([&] { ModelConfig::load(path); }),
              AllOf(HasSubstr("params.json"), HasSubstr("expected an object")));
}

struct BadParams {
  std::string name;
  std::function<void(Json&)> edit;
  std::vector<std::string> expected;  // substrings of the message besides "params.json"
};

void PrintTo(const BadParams& p, std::ostream* os) { *os << p.name; }

class ConfigRejects : public ::testing::TestWithParam<BadParams> {};

TEST_P(ConfigRejects, NamingTheFileAndKey) {
  Json params = real_params();
  GetParam().edit(params);
  TempDir dir;
  const auto path = dir.write("params.json", params.dump(2));
  const std::string message = error_message([&] { ModelConfig::load(path); });
  EXPECT_THAT(message, HasSubstr(path.string() + ": "));
  for (const std::string& part : GetParam().expected) EXPECT_THAT(message, HasSubstr(part));
}

std::string enc_key(const char* key) { return std::string(kEncoderPath) + "." + key; }
std::string audio_key(const char* key) { return std::string(kAudioPath) + "." + key; }

INSTANTIATE_TEST_SUITE_P(
    Malformed, ConfigRejects,
    ::testing::Values(
        BadParams{"missing_dim", [](Json& p) { p.erase("dim"); }, {"dim: missing"}},
        BadParams{"missing_encoder_hidden", [](Json& p) { encoder_args(p).erase("hidden_dim"); },
                  {enc_key("hidden_dim") + ": missing"}},
        BadParams{"missing_multimodal", [](Json& p) { p.erase("multimodal"); }, {"multimodal: missing"}},
        BadParams{"missing_ada_dim", [](Json& p) { p.erase("ada_rms_norm_t_cond_dim"); },
                  {"ada_rms_norm_t_cond_dim: missing"}},
        BadParams{"dim_is_string", [](Json& p) { p["dim"] = "3072"; },
                  {"dim: expected an integer, found the string \"3072\""}},
        BadParams{"dim_is_fraction", [](Json& p) { p["dim"] = 3072.5; }, {"dim: expected an integer"}},
        BadParams{"use_biases_not_bool", [](Json& p) { p["use_biases"] = "no"; },
                  {"use_biases: expected true or false"}},
        BadParams{"norm_eps_string", [](Json& p) { p["norm_eps"] = "1e-5"; }, {"norm_eps: expected a number"}},
        BadParams{"audio_not_object", [](Json& p) { encoder_args(p)["audio_encoding_args"] = 3; },
                  {"audio_encoding_args: expected an object"}},
        BadParams{"zero_dim", [](Json& p) { p["dim"] = 0; }, {"dim: value 0 is outside the valid range"}},
        BadParams{"negative_layers", [](Json& p) { encoder_args(p)["n_layers"] = -2; },
                  {enc_key("n_layers") + ": value -2 is outside the valid range"}},
        BadParams{"negative_eps", [](Json& p) { p["norm_eps"] = -1e-5; }, {"norm_eps: must be positive"}},
        BadParams{"eps_infinite_as_float", [](Json& p) { p["norm_eps"] = 1e39; },
                  {"norm_eps: must be positive and finite"}},
        BadParams{"rope_theta_infinite_as_float", [](Json& p) { encoder_args(p)["rope_theta"] = 1e300; },
                  {enc_key("rope_theta") + ": must be positive and finite"}},
        BadParams{"kv_heads_not_dividing", [](Json& p) { p["n_kv_heads"] = 5; },
                  {"n_kv_heads: 5 does not divide n_heads = 32"}},
        BadParams{"odd_head_dim", [](Json& p) { p["head_dim"] = 127; }, {"head_dim: must be even", "127"}},
        BadParams{"zero_window", [](Json& p) { p["sliding_window"] = 0; },
                  {"sliding_window: value 0 is outside the valid range"}},
        BadParams{"zero_encoder_window", [](Json& p) { encoder_args(p)["sliding_window"] = 0; },
                  {enc_key("sliding_window") + ": value 0"}},
        BadParams{"frame_rate_inconsistent",
                  [](Json& p) { encoder_args(p)["audio_encoding_args"]["frame_rate"] = 25.0; },
                  {audio_key("frame_rate") + ": 25 disagrees", "12.5"}},
        BadParams{"hop_breaks_frame_rate",
                  [](Json& p) { encoder_args(p)["audio_encoding_args"]["hop_length"] = 200; },
                  {audio_key("frame_rate") + ": 12.5 disagrees"}},
        BadParams{"encoder_gqa", [](Json& p) { encoder_args(p)["n_kv_heads"] = 8; },
                  {enc_key("n_kv_heads") + ": the encoder uses full multi-head attention", "found 8"}},
        BadParams{"decoder_biases", [](Json& p) { p["use_biases"] = true; },
                  {"use_biases: this engine supports only false"}},
        BadParams{"untied_embeddings", [](Json& p) { p["tied_embeddings"] = false; },
                  {"tied_embeddings: this engine supports only true"}},
        BadParams{"odd_window_size",
                  [](Json& p) { encoder_args(p)["audio_encoding_args"]["window_size"] = 401; },
                  {audio_key("window_size") + ": must be even"}},
        BadParams{"not_streaming",
                  [](Json& p) { encoder_args(p)["audio_encoding_args"]["transcription_format"] = "offline"; },
                  {audio_key("transcription_format"), "\"offline\""}},
        BadParams{"huge_dim", [](Json& p) { p["dim"] = 1e15; }, {"dim: value", "outside the valid range"}}),
    [](const ::testing::TestParamInfo<BadParams>& param_info) { return param_info.param.name; });

}  // namespace
}  // namespace voxtral
