// A loaded model: the files of a model directory, checked against each other, and the
// weights on a backend. Shared by every transcription that runs on it.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"
#include "core/config.h"
#include "core/safetensors.h"
#include "core/tokenizer.h"
#include "model/decoder.h"
#include "model/encoder.h"
#include "model/left_pad.h"
#include "model/quantized_store.h"
#include "model/weights.h"

namespace voxtral {

// How messages name the options below, so that each front end's users read their own names.
enum class OptionNaming {
  Field,    // max_streams: the fields of ModelOptions (the C++ API)
  Flag,     // --max-streams: the command line's flags
  CStruct,  // voxtral_model_options.max_streams: the C API's fields
};

// `field` (a ModelOptions field, e.g. "kv_cache_mb") as `naming` writes it.
std::string option_name(OptionNaming naming, std::string_view field);

struct ModelOptions {
  std::string backend = "cpu";  // "cpu", "cuda", or "auto" (CUDA when a GPU is usable, else CPU)
  int threads = 0;              // CPU threads; 0 = one per core
  std::string kv_cache = "auto";  // "f32", "bf16", or "auto" (the backend's default)
  std::string precision = "auto"; // decode matrix products: "exact" (near-F32), "fast" (BF16 activations; int8 with Q8/Q4 weights on the CPU), "auto" (exact)
  // Matrix storage: "auto" (as the file stores them), "bf16", "fp16" (GPU), "q8" / "q4" (a
  // BF16 model quantized at load, core/quantized_model.h; CPU and CUDA), or "fp8" (E4M3 with a
  // scale per output row, quantized at load on GPUs with FP8 tensor cores: sm_89 or newer).
  std::string weights = "auto";
  bool quiet = false;             // no notices on stderr (e.g. the CPU fallback of "auto")
  int max_streams = 0;            // streams decoding at once (K/V sequences); 0: the backend's default
  std::int64_t kv_cache_mb = 0;   // K/V cache of all streams (encoder windows, decoder pages); 0: from free memory
  // Speculative decoding (runtime/speculation.h): the most rows a stream's step may carry
  // behind its next position, 0 (off) to 7; -1: the backend's default (7 on the CPU, where
  // it gives the same bits; 0 on a GPU, where rows take other kernels than a single row).
  int speculative_tokens = -1;
  // Benchmarks only: kernel variants to compare against the defaults ("fused=gemv,streamed_rows=4",
  // see parse_cuda_variants in backend/cuda/cuda_backend.h); empty in normal use.
  std::string kernel_variants = "";
  OptionNaming naming = OptionNaming::Field;  // how errors name these options
};

// Speculative rows (ModelOptions::speculative_tokens): at most 7 behind a stream's next
// position (a step of 8 rows); the CPU allows all 7 by default and its policy takes 8-row
// steps only where they pay (measured: 10% faster on an AVX-512 Xeon, BENCHMARKS.md).
inline constexpr int kMaxSpeculativeTokens = 7;
inline constexpr int kDefaultCpuSpeculativeTokens = 7;

// The most streams one model may be asked to hold at once.
inline constexpr int kMaxStreams = 4096;

// The most CPU threads a model may be given: far beyond any machine's cores, far below what
// would exhaust memory with thread stacks.
inline constexpr int kMaxThreads = 1024;

// Throws Error naming the option ("threads: ...", as options.naming writes it) when an option
// is out of range or unknown, or when kv_cache_mb is more than the machine's memory.
// Model::load calls it, so every front end (CLI, server, C API) gets the same checks.
void validate(const ModelOptions& options);

class Model {
 public:
  // Loads params.json, tekken.json and consolidated.safetensors from `dir`; every problem
  // is an Error naming the file.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const ModelOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return tokenizer_; }
  Backend& backend() { return *backend_; }
  // "cpu" or "cuda": the backend it runs on, "auto" decided (Backend::name() describes it).
  const std::string& backend_kind() const { return backend_kind_; }
  const ModelWeights& weights() const { return weights_; }
  // How the matrices are held: the file's format, or Q8/Q4 when quantized at load.
  WeightFormat weight_format() const { return weight_format_; }
  double load_seconds() const { return load_seconds_; }  // warm-up included
  // ModelOptions::speculative_tokens with the default decided (the decoder's steps hold that
  // many rows more than one, even with a single stream).
  int speculative_tokens() const { return speculative_tokens_; }
  ElemType kv_cache_type() const { return kv_cache_type_; }
  const std::filesystem::path& directory() const { return directory_; }

  // The decoder's FFN norms conditioned on a delay (computed once per delay value).
  const std::vector<std::vector<float>>& ffn_norms(int n_delay_tokens);
  // The decoder shared by every stream of this model (K/V sequences, batched steps).
  DecoderPool& decoder() { return *decoder_; }
  // The encoder shared by every stream (sequence numbers are the decoder's).
  EncoderPool& encoder() { return *encoder_; }
  // The state after the left padding, shared by every stream (model/left_pad.h).
  LeftPadCache& left_pad() { return left_pad_; }

 private:
  Model() = default;
  void warm_up();

  std::filesystem::path directory_;
  ModelConfig config_;
  Tokenizer tokenizer_;
  std::unique_ptr<SafeTensors> file_;      // declared before the backend: weights may view it
  std::unique_ptr<QuantizedStore> quantized_;  // likewise: planes quantized at load
  std::unique_ptr<Backend> backend_;
  std::string backend_kind_;
  ModelWeights weights_;
  std::mutex norms_mutex_;
  std::map<int, std::vector<std::vector<float>>> ffn_norms_;
  std::unique_ptr<EncoderPool> encoder_;  // after the weights they read
  std::unique_ptr<DecoderPool> decoder_;
  LeftPadCache left_pad_;  // after the backend: its buffers go first
  double load_seconds_ = 0;
  int speculative_tokens_ = 0;
  ElemType kv_cache_type_ = ElemType::F32;
  WeightFormat weight_format_ = WeightFormat::BF16;
};

}  // namespace voxtral
