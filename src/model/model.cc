#include "model/model.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string_view>
#include <thread>

#include "backend/cpu/cpu_backend.h"
#include "backend/profiling_backend.h"
#include "core/error.h"
#include "core/model_tensors.h"
#include "model/decoder.h"

namespace voxtral {

namespace {

// params.json and tekken.json describe the same front end and vocabulary; a mismatch means
// files from different models were put together.
void check_consistent(const ModelConfig& c, const Tokenizer& t) {
  const auto& a = t.audio();
  auto mismatch = [&](const char* what, auto in_tokenizer, auto in_params) {
    fail(t.source(), cat("audio.", what, " = ", in_tokenizer, " disagrees with params.json (", in_params,
                         "): are these files from the same model?"));
  };
  if (a.sampling_rate != c.audio.sampling_rate) mismatch("sampling_rate", a.sampling_rate, c.audio.sampling_rate);
  if (a.hop_length != c.audio.hop_length) mismatch("hop_length", a.hop_length, c.audio.hop_length);
  if (a.window_size != c.audio.window_size) mismatch("window_size", a.window_size, c.audio.window_size);
  if (a.num_mel_bins != c.audio.num_mel_bins) mismatch("num_mel_bins", a.num_mel_bins, c.audio.num_mel_bins);
  if (std::fabs(a.frame_rate - c.audio.frame_rate) > 1e-9) mismatch("frame_rate", a.frame_rate, c.audio.frame_rate);
  if (t.vocab_size() != c.decoder.vocab_size) {
    fail(t.source(), cat("default_vocab_size ", t.vocab_size(), " disagrees with params.json vocab_size ",
                         c.decoder.vocab_size, ": are these files from the same model?"));
  }
}

}  // namespace

std::unique_ptr<Backend> make_backend(const ModelOptions& options) {
  std::unique_ptr<Backend> backend;
  if (options.backend == "cpu") {
    int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
    backend = std::make_unique<CpuBackend>(std::max(threads, 1));
  } else {
    fail("backend", cat("unknown backend \"", options.backend, "\" (available: cpu)"));
  }
  const char* profile = std::getenv("VOXTRAL_PROFILE");
  if (profile != nullptr && std::string_view(profile) == "1") {
    backend = std::make_unique<ProfilingBackend>(std::move(backend));
  }
  return backend;
}

std::unique_ptr<Model> Model::load(const std::filesystem::path& dir, const ModelOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (!std::filesystem::is_directory(dir)) {
    fail(dir.string(), std::filesystem::exists(dir) ? "is not a directory" : "no such model directory");
  }
  std::unique_ptr<Model> m(new Model());
  m->directory_ = dir;
  m->config_ = ModelConfig::load(dir / "params.json");
  m->tokenizer_ = Tokenizer::load(dir / "tekken.json");
  check_consistent(m->config_, m->tokenizer_);
  m->file_ = std::make_unique<SafeTensors>(SafeTensors::open(dir / "consolidated.safetensors"));
  check_model_tensors(*m->file_, m->config_);
  m->backend_ = make_backend(options);
  m->weights_ = ModelWeights::load(*m->backend_, *m->file_, m->config_);
  m->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

const std::vector<Weight>& Model::ffn_norms(int n_delay_tokens) {
  std::lock_guard lock(norms_mutex_);
  auto it = ffn_norms_.find(n_delay_tokens);
  if (it == ffn_norms_.end()) {
    std::vector<Weight> handles;
    for (const auto& norm : time_conditioned_ffn_norms(config_, weights_, n_delay_tokens)) {
      handles.push_back(backend_->load_vector(norm));
    }
    it = ffn_norms_.emplace(n_delay_tokens, std::move(handles)).first;
  }
  return it->second;
}

}  // namespace voxtral
