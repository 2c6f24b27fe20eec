// Parity with transformers on the committed fixtures (tools/reference/make_fixtures.py):
// encoder and adapter outputs, decoder logits at every position with teacher forcing, and
// the greedy ids. Runs on every CPU kernel set this machine supports.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/audio.h"
#include "core/mel.h"
#include "model/decoder.h"
#include "model/encoder.h"
#include "model/model.h"
#include "model/schedule.h"
#include "core/model_tensors.h"
#include "runtime/transcriber.h"
#include "test_util.h"

namespace voxtral {
namespace {

using voxtral::testing::fixture;
using voxtral::testing::download;
using voxtral::testing::relative_error;
using voxtral::testing::to_floats;

// Tolerances, relative to the largest magnitude of the reference tensor. The reference is
// float32 math too, so differences come from summation order alone (~1e-6); a wrong RoPE
// layout, a missing bias or an off-by-one window moves these outputs by 1e-2 or more
// (tests/test_parity_sensitivity.cc shows each of those failing).
constexpr double kEncoderTolerance = 2e-5;
constexpr double kAdapterTolerance = 2e-5;
constexpr double kLogitTolerance = 5e-5;
// The CPU's fast precision rounds the activations of the products with 16-bit weights to
// BF16 (8 significant bits): 3.8e-3 to 7.2e-3 on these clips (every kernel set), bounded
// here with a margin of two.
constexpr double kFastTolerance = 1.5e-2;

using Clip = voxtral::testing::FixtureClip;
using voxtral::testing::test_model_options;

std::vector<Clip> all_clips() { return voxtral::testing::fixture_clips(); }

struct Errors {
  double encoder = 0, adapter = 0, logits = 0;
};

// Runs the encoder, adapter and teacher-forced decoder of the model in `model_dir` on a
// fixture clip and returns the relative max errors against the recorded reference.
Errors measure(const std::filesystem::path& model_dir, const Clip& clip,
               const ModelOptions& options = test_model_options()) {
  auto model = Model::load(model_dir, options);
  const auto& config = model->config();
  Backend& backend = model->backend();
  const auto reference = SafeTensors::open(fixture(clip.info["tag"].get<std::string>() + ".safetensors"));
  const int n_delay = delay_positions(clip.info["delay_ms"], config);

  const auto samples = load_audio_file(fixture(clip.info["audio"]), 16000);
  const auto padded = pad_offline(samples, config, 32, n_delay);
  const auto mel = MelSpectrogram(config.audio).compute(padded);
  const std::int64_t n = clip.info["n_positions"];
  EXPECT_EQ(static_cast<std::int64_t>(padded.size()) / config.samples_per_position(), n);

  // Encode in uneven pieces (1..7 positions) to exercise the conv context and the ring cache.
  EncoderPool& encoder = model->encoder();
  const int encoder_sequence = model->encoder().options().max_sequences - 1;
  encoder.reset(encoder_sequence);
  DeviceBuffer audio(backend, ElemType::F32, n, config.decoder.dim);
  DeviceBuffer frames(backend, ElemType::F32, n * config.downsample_factor, config.encoder.dim);
  const std::size_t per_position = static_cast<std::size_t>(config.mel_frames_per_position()) * config.audio.num_mel_bins;
  for (std::int64_t p = 0, piece = 1; p < n; p += piece, piece = piece % 7 + 1) {
    const int count = static_cast<int>(std::min<std::int64_t>(piece, n - p));
    const Tensor enc_rows = frames.view().row_range(p * config.downsample_factor, count * config.downsample_factor);
    const EncodeRequest request{encoder_sequence,
                                std::span(mel).subspan(static_cast<std::size_t>(p) * per_position, count * per_position),
                                count, audio.view().row_range(p, count), &enc_rows};
    encoder.encode(std::span(&request, 1));
  }
  encoder.release(encoder_sequence);
  Errors e;
  e.encoder = relative_error(download(backend, frames.view()), to_floats(reference.get("encoder_out")));
  e.adapter = relative_error(download(backend, audio.view()), to_floats(reference.get("adapter_out")));

  // Teacher forcing: the recorded input ids, prefill of the prompt, then single steps.
  std::vector<int> ids;
  for (auto id : voxtral::testing::to_ints(reference.get("input_ids"))) ids.push_back(static_cast<int>(id));
  const auto prompt_len = static_cast<std::int64_t>(prompt_ids(model->tokenizer(), n_delay).size());
  DecoderPool& decoder = model->decoder();
  const int sequence = decoder.acquire();
  decoder.start(sequence, model->ffn_norms(n_delay));
  DeviceBuffer prefill_logits(backend, ElemType::F32, prompt_len - 1, config.decoder.vocab_size);
  decoder.prefill(sequence, std::span(ids).first(static_cast<std::size_t>(prompt_len - 1)),
                  audio.view().row_range(0, prompt_len - 1), 0, &prefill_logits.view());
  std::vector<float> logits = download(backend, prefill_logits.view());
  const Tensor ring = decoder.audio_ring(sequence);
  for (std::int64_t p = prompt_len - 1; p < n; ++p) {
    const std::int64_t ring_row = p % ring.rows;
    backend.copy(audio.view().row_range(p, 1), ring.row_range(ring_row, 1));
    const DecodeRow row{sequence, ids[static_cast<std::size_t>(p)], p, ring_row};
    int next = 0;
    decoder.step(std::span(&row, 1), std::span(&next, 1));
    const auto step_row = download(backend, decoder.step_logits(1));
    logits.insert(logits.end(), step_row.begin(), step_row.end());
  }
  decoder.release(sequence);
  EXPECT_EQ(logits.size(), static_cast<std::size_t>(n * config.decoder.vocab_size));
  e.logits = relative_error(logits, to_floats(reference.get("logits")));
  return e;
}

class Parity : public ::testing::TestWithParam<Clip> {};

TEST_P(Parity, EncoderAdapterAndTeacherForcedLogits) {
  const Clip& clip = GetParam();
  const Errors e = measure(fixture(clip.model), clip);
  EXPECT_LE(e.encoder, kEncoderTolerance);
  EXPECT_LE(e.adapter, kAdapterTolerance);
  EXPECT_LE(e.logits, kLogitTolerance);
  std::printf("[ %s ] encoder %.2e, adapter %.2e, logits %.2e (relative max errors)\n",
              clip.info["tag"].get<std::string>().c_str(), e.encoder, e.adapter, e.logits);
}

TEST_P(Parity, GreedyIdsAndText) {
  const Clip& clip = GetParam();
  auto model = Model::load(fixture(clip.model), test_model_options());
  StreamOptions options;
  options.delay_ms = clip.info["delay_ms"];
  const auto samples = load_audio_file(fixture(clip.info["audio"]), 16000);
  const auto transcript = transcribe(*model, samples, options);
  EXPECT_EQ(transcript.ids, clip.info["greedy_ids"].get<std::vector<int>>());
  EXPECT_EQ(transcript.text, clip.info["text"].get<std::string>());
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Parity, ::testing::ValuesIn(all_clips()),
                         [](const ::testing::TestParamInfo<Clip>& param) {
                           std::string name = param.param.info["tag"];
                           for (auto& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

// The same on the CPU in the fast precision (the GPU's fast precision has tests of its own).
class FastParity : public ::testing::TestWithParam<Clip> {};

TEST_P(FastParity, CpuEncoderAdapterAndLogitsStayNearTheReference) {
  const Clip& clip = GetParam();
  ModelOptions options = test_model_options();
  options.backend = "cpu";
  options.precision = "fast";
  const Errors e = measure(fixture(clip.model), clip, options);
  EXPECT_LE(e.encoder, kFastTolerance);
  EXPECT_LE(e.adapter, kFastTolerance);
  EXPECT_LE(e.logits, kFastTolerance);
  std::printf("[ %s ] fast: encoder %.2e, adapter %.2e, logits %.2e (relative max errors)\n",
              clip.info["tag"].get<std::string>().c_str(), e.encoder, e.adapter, e.logits);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FastParity, ::testing::ValuesIn(all_clips()),
                         [](const ::testing::TestParamInfo<Clip>& param) {
                           std::string name = param.param.info["tag"];
                           for (auto& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace voxtral

namespace voxtral {
namespace {

// The tolerances above must be able to fail: each of these faults, injected into a copy of
// tiny-a, must push the error far past them.
class ParitySensitivity : public ::testing::Test {
 protected:
  Clip clip = all_clips()[1];  // tiny-a, speech_long: longer than both attention windows
  voxtral::testing::TempDir dir;
  std::string weights = read_file(fixture("tiny-a/consolidated.safetensors"));
  nlohmann::json params = nlohmann::json::parse(read_file(fixture("tiny-a/params.json")));

  static std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  // A writable view of one tensor's bytes inside `weights`.
  std::span<char> bytes_of(const std::string& name) {
    const auto st = SafeTensors::from_buffer(std::as_bytes(std::span(weights)), "copy");
    const auto& t = st.get(name);
    const auto offset = reinterpret_cast<const char*>(t.data) - weights.data();
    return {weights.data() + offset, t.nbytes};
  }
  Errors run() {
    dir.write("params.json", params.dump());
    dir.write("tekken.json", read_file(fixture("tiny-a/tekken.json")));
    dir.write("consolidated.safetensors", weights);
    return measure(dir.path(), clip);
  }
};

TEST_F(ParitySensitivity, RotateHalfInsteadOfInterleavedRopeIsCaught) {
  // Put every q/k row in the half-split order transformers uses internally.
  const int head_dim = params["multimodal"]["whisper_model_args"]["encoder_args"]["head_dim"];
  const int dim = params["multimodal"]["whisper_model_args"]["encoder_args"]["dim"];
  for (int layer = 0; layer < 2; ++layer) {
    for (const char* w : {"attention.wq.weight", "attention.wk.weight"}) {
      auto bytes = bytes_of(tensor_names::encoder_layer(layer, w));
      const std::size_t row = static_cast<std::size_t>(dim) * 2;
      std::string copy(bytes.begin(), bytes.end());
      const std::size_t heads = bytes.size() / row / static_cast<std::size_t>(head_dim);
      for (std::size_t h = 0; h < heads; ++h) {
        for (int j = 0; j < head_dim / 2; ++j) {
          const std::size_t base = h * static_cast<std::size_t>(head_dim);
          std::memcpy(bytes.data() + (base + static_cast<std::size_t>(j)) * row, copy.data() + (base + 2 * static_cast<std::size_t>(j)) * row, row);
          std::memcpy(bytes.data() + (base + static_cast<std::size_t>(head_dim / 2 + j)) * row,
                      copy.data() + (base + 2 * static_cast<std::size_t>(j) + 1) * row, row);
        }
      }
    }
  }
  const Errors e = run();
  EXPECT_GT(e.encoder, 100 * kEncoderTolerance);
}

TEST_F(ParitySensitivity, MissingValueBiasIsCaught) {
  for (int layer = 0; layer < 2; ++layer) {
    auto bytes = bytes_of(tensor_names::encoder_layer(layer, "attention.wv.bias"));
    std::fill(bytes.begin(), bytes.end(), 0);
  }
  const Errors e = run();
  EXPECT_GT(e.encoder, 100 * kEncoderTolerance);
}

TEST_F(ParitySensitivity, EncoderWindowOffByOneIsCaught) {
  auto& window = params["multimodal"]["whisper_model_args"]["encoder_args"]["sliding_window"];
  window = window.get<int>() - 1;
  const Errors e = run();
  EXPECT_GT(e.encoder, 100 * kEncoderTolerance);
}

TEST_F(ParitySensitivity, DecoderWindowOffByOneIsCaught) {
  params["sliding_window"] = params["sliding_window"].get<int>() + 1;
  const Errors e = run();
  EXPECT_LE(e.encoder, kEncoderTolerance);
  EXPECT_GT(e.logits, 100 * kLogitTolerance);
}

}  // namespace
}  // namespace voxtral
