#include "bench/random_model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "core/bf16.h"
#include "core/config.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/model_tensors.h"

namespace voxtral {

namespace {

constexpr std::int64_t kChunk = 1 << 20;  // values per independently seeded chunk

std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t hash_name(const std::string& name) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

// How a tensor's values are drawn: uniform in [centre - half_width, centre + half_width].
struct Distribution {
  float centre;
  float half_width;
};

Distribution distribution_for(const TensorSpec& spec) {
  const std::string& n = spec.name;
  const bool vector = spec.shape.size() == 1;
  if (vector && n.find("norm") != std::string::npos) return {1.0f, 0.2f};
  if (vector) return {0.0f, 0.2f};  // biases
  if (n == tensor_names::kTokEmbeddings) return {0.0f, 0.1f};
  std::int64_t fan_in = 1;
  for (std::size_t d = 1; d < spec.shape.size(); ++d) fan_in *= spec.shape[d];
  float gain = 1.0f;
  if (n.find("ada_rms_norm_t_cond.2") != std::string::npos) gain = 0.5f;
  // Uniform with the variance of N(0, gain^2 / fan_in).
  return {0.0f, gain * std::sqrt(3.0f / static_cast<float>(fan_in))};
}

void fill_chunk(std::uint16_t* out, std::int64_t count, std::uint64_t seed, Distribution d) {
  std::uint64_t state = seed;
  for (std::int64_t i = 0; i < count; ++i) {
    const double u = static_cast<double>(splitmix(state) >> 11) * (1.0 / 9007199254740992.0);  // [0, 1)
    out[i] = float_to_bf16(d.centre + d.half_width * static_cast<float>(2.0 * u - 1.0));
  }
}

void write_tekken(const std::filesystem::path& path, int vocab_size) {
  constexpr int kSpecial = 1000;
  nlohmann::json vocab = nlohmann::json::array();
  const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto encode = [&](const std::string& bytes) {
    std::string out;
    for (std::size_t i = 0; i < bytes.size(); i += 3) {
      std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
      if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
      if (i + 2 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 2]);
      out += b64[(v >> 18) & 63];
      out += b64[(v >> 12) & 63];
      out += i + 1 < bytes.size() ? b64[(v >> 6) & 63] : '=';
      out += i + 2 < bytes.size() ? b64[v & 63] : '=';
    }
    return out;
  };
  for (int rank = 0; rank < vocab_size - kSpecial; ++rank) {
    const std::string bytes = rank < 256 ? std::string(1, static_cast<char>(rank)) : " w" + std::to_string(rank);
    vocab.push_back({{"rank", rank}, {"token_bytes", encode(bytes)}, {"token_str", nullptr}});
  }
  nlohmann::json specials = nlohmann::json::array();
  for (int i = 0; i < kSpecial; ++i) {
    std::string name = "<SPECIAL_" + std::to_string(i) + ">";
    if (i == 0) name = "<unk>";
    if (i == 1) name = "<s>";
    if (i == 2) name = "</s>";
    if (i == 24) name = "[AUDIO]";
    if (i == 25) name = "[BEGIN_AUDIO]";
    if (i == 32) name = "[STREAMING_PAD]";
    if (i == 33) name = "[STREAMING_WORD]";
    specials.push_back({{"rank", i}, {"token_str", name}, {"is_control", true}});
  }
  nlohmann::json doc = {
      {"config", {{"pattern", ""}, {"num_vocab_tokens", vocab_size - kSpecial}, {"default_vocab_size", vocab_size},
                  {"default_num_special_tokens", kSpecial}, {"version", "v13"}}},
      {"vocab", vocab},
      {"special_tokens", specials},
      {"audio", {{"sampling_rate", 16000}, {"frame_rate", 12.5},
                 {"audio_encoding_config", {{"num_mel_bins", 128}, {"hop_length", 160}, {"window_size", 400}}},
                 {"transcription_delay_ms", 480}, {"streaming_n_left_pad_tokens", 32},
                 {"streaming_look_ahead_ms", 2.5}, {"streaming_look_back_ms", 52.5}}}};
  std::ofstream out(path);
  out << doc.dump();
  if (!out) fail(path.string(), "cannot write");
}

}  // namespace

std::uint64_t write_random_model(const RandomModelOptions& options) {
  const std::string params_text = read_text_file(options.params_json);
  const ModelConfig config = ModelConfig::from_json_text(params_text, options.params_json.string());
  std::filesystem::create_directories(options.out_dir);
  {
    std::ofstream out(options.out_dir / "params.json");
    out << params_text;
    if (!out) fail((options.out_dir / "params.json").string(), "cannot write");
  }
  write_tekken(options.out_dir / "tekken.json", config.decoder.vocab_size);

  auto specs = expected_tensors(config);
  std::sort(specs.begin(), specs.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = {{"format", "pt"}, {"generator", "voxtral-bench make-model"},
                            {"seed", std::to_string(options.seed)}};
  std::uint64_t offset = 0;
  for (const auto& s : specs) {
    std::uint64_t n = 1;
    for (auto d : s.shape) n *= static_cast<std::uint64_t>(d);
    header[s.name] = {{"dtype", "BF16"}, {"shape", s.shape}, {"data_offsets", {offset, offset + 2 * n}}};
    offset += 2 * n;
  }
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // keeps the data 8-byte aligned

  const auto path = options.out_dir / "consolidated.safetensors";
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.string().c_str(), "wb"), std::fclose);
  if (!file) fail(path.string(), "cannot create");
  std::uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<std::uint8_t>((header_text.size() >> (8 * i)) & 0xff);
  std::fwrite(length, 1, 8, file.get());
  std::fwrite(header_text.data(), 1, header_text.size(), file.get());

  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::uint16_t> buffer;
  for (const auto& s : specs) {
    std::int64_t n = 1;
    for (auto d : s.shape) n *= d;
    buffer.resize(static_cast<std::size_t>(n));
    const Distribution dist = distribution_for(s);
    const std::int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (std::int64_t c = t; c < chunks; c += threads) {
          const std::int64_t begin = c * kChunk;
          fill_chunk(buffer.data() + begin, std::min(kChunk, n - begin),
                     options.seed * 0x100000001B3ull ^ hash_name(s.name) ^ static_cast<std::uint64_t>(c) * 0x9E3779B97F4A7C15ull,
                     dist);
        }
      });
    }
    for (auto& w : workers) w.join();
    if (std::fwrite(buffer.data(), 2, buffer.size(), file.get()) != buffer.size()) fail(path.string(), "write failed (disk full?)");
  }
  if (std::fflush(file.get()) != 0) fail(path.string(), "write failed (disk full?)");
  return 8 + header_text.size() + offset;
}

}  // namespace voxtral
