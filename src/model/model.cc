#include "model/model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <initializer_list>
#include <string_view>
#include <thread>

#include "backend/factory.h"
#include "backend/profiling_backend.h"
#include "core/error.h"
#include "core/model_tensors.h"
#include "model/decoder.h"
#include "model/encoder.h"
#include "model/schedule.h"
#include "model/usable.h"

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

std::string option_name(OptionNaming naming, std::string_view field) {
  switch (naming) {
    case OptionNaming::Flag: {
      std::string flag = cat("--", field);
      std::replace(flag.begin(), flag.end(), '_', '-');
      return flag;
    }
    case OptionNaming::CStruct: return cat("voxtral_model_options.", field);
    case OptionNaming::Field: break;
  }
  return std::string(field);
}

void validate(const ModelOptions& o) {
  const auto name = [&](std::string_view field) { return option_name(o.naming, field); };
  if (o.threads < 0 || o.threads > kMaxThreads) {
    fail(name("threads"), cat(o.threads, " is out of range (1 to ", kMaxThreads, ", or 0 for one per core)"));
  }
  const auto one_of = [&](std::string_view field, const std::string& value, std::initializer_list<std::string_view> allowed) {
    for (auto a : allowed) {
      if (value == a) return;
    }
    std::string list;
    for (auto a : allowed) list += cat(list.empty() ? "" : ", ", a);
    fail(name(field), cat("unknown value \"", value, "\" (use ", list, ")"));
  };
  one_of("backend", o.backend, {"auto", "cpu", "cuda"});
  one_of("precision", o.precision, {"auto", "exact", "fast"});
  one_of("kv_cache", o.kv_cache, {"auto", "f32", "bf16"});
  one_of("weights", o.weights, {"auto", "bf16", "fp16", "q8", "q4", "fp8"});
  if (o.max_streams < 0 || o.max_streams > kMaxStreams) {
    fail(name("max_streams"), cat(o.max_streams, " is out of range (1 to ", kMaxStreams, ", or 0 for the backend's default)"));
  }
  if (o.speculative_tokens < -1 || o.speculative_tokens > kMaxSpeculativeTokens) {
    fail(name("speculative_tokens"),
         cat(o.speculative_tokens, " is out of range (0 to ", kMaxSpeculativeTokens, ", or -1 for the backend's default)"));
  }
  if (o.kv_cache_mb < 0 || o.kv_cache_mb > (std::int64_t{1} << 30)) {
    fail(name("kv_cache_mb"), cat(o.kv_cache_mb, " is out of range (0 = from free memory)"));
  }
  // A cache larger than the machine could ever hold is a mistake (a GPU's share is checked
  // against its free memory when the pools are sized): refused before anything is allocated.
  const auto memory_mb = static_cast<std::int64_t>(physical_memory_bytes() >> 20);
  if (memory_mb > 0 && o.kv_cache_mb > memory_mb) {
    fail(name("kv_cache_mb"), cat(o.kv_cache_mb, " MiB is more than this machine's memory (", memory_mb, " MiB)"));
  }
}

namespace {

// The pools' geometry for this model and backend: how many streams, and K/V memory for them.
// Each stream holds its encoder window (taken at its start); the decoder's pages go to
// streams as their positions grow. Without sizes given: the backend's streams, fewer when
// memory would not give each its encoder window and ~2 minutes of decoder cache, within 90%
// of the GPU's free memory (or a quarter of a CPU machine's).
struct PoolOptions {
  EncoderPoolOptions encoder;
  DecoderPoolOptions decoder;
};

PoolOptions pool_options(const ModelOptions& o, const ModelConfig& config, const Tokenizer& tokenizer, Backend& backend,
                         ElemType kv_type, int speculative_tokens) {
  PoolOptions p;
  DecoderPoolOptions& d = p.decoder;
  EncoderPoolOptions& e = p.encoder;
  const auto& dec = config.decoder;
  d.kv_cache_type = e.kv_cache_type = kv_type;
  d.max_prefill_rows = tokenizer.audio().n_left_pad_tokens + 64;  // the prompt at the longest delay
  const std::int64_t page_bytes = static_cast<std::int64_t>(2) * dec.n_layers * d.page_size * dec.kv_width() *
                                  static_cast<std::int64_t>(elem_size(kv_type));
  const std::int64_t ring_pages = (dec.sliding_window + d.max_prefill_rows - 1 + d.page_size - 1) / d.page_size;
  const auto encoder_bytes = static_cast<std::int64_t>(EncoderPool::sequence_cache_bytes(config, e));
  const std::int64_t typical_decoder = (1500 + d.page_size - 1) / d.page_size * page_bytes;  // 2 minutes
  const auto free_memory = static_cast<std::int64_t>(backend.free_memory());  // 0: not a GPU
  if (o.kv_cache_mb > 0 && free_memory > 0 && (o.kv_cache_mb << 20) > free_memory) {
    fail(option_name(o.naming, "kv_cache_mb"),
         cat(o.kv_cache_mb, " MiB is more than the GPU's free memory (", free_memory >> 20, " MiB)"));
  }
  std::int64_t budget = o.kv_cache_mb > 0 ? (o.kv_cache_mb << 20) : free_memory / 10 * 9;
  if (budget <= 0) budget = static_cast<std::int64_t>(physical_memory_bytes() / 4);
  int streams = o.max_streams > 0 ? o.max_streams : backend.default_max_streams();
  if (o.max_streams == 0 && o.kv_cache_mb == 0) {
    streams = static_cast<int>(std::clamp<std::int64_t>(budget / (encoder_bytes + typical_decoder), 1, streams));
  }
  d.max_sequences = e.max_sequences = streams;
  // A step holds a row per stream, and a stream alone may bring its speculative rows.
  d.max_batch = std::max(streams, speculative_tokens + 1);
  // What the decoder pool holds besides its pages: audio rings, norms, step buffers, logits.
  const std::int64_t rows = std::max(d.max_sequences, d.max_prefill_rows);
  const std::int64_t other = 4 * ((d.max_sequences + 1) * (static_cast<std::int64_t>(d.audio_ring_positions) * dec.dim +
                                                          static_cast<std::int64_t>(dec.n_layers) * dec.dim) +
                                  rows * (4 * dec.dim + dec.q_width() + 2 * dec.kv_width() + 3 * dec.hidden_dim) +
                                  static_cast<std::int64_t>(d.max_batch) * dec.vocab_size);
  const std::int64_t for_decoder = budget - streams * encoder_bytes - (o.kv_cache_mb > 0 ? 0 : other);
  // Every stream must at least hold 30 s (and its prompt) of decoder cache beside its encoder
  // window; else streams would fail mid-way ("K/V cache is full") instead of being refused here.
  const std::int64_t least_decoder = (375 + d.max_prefill_rows + d.page_size - 1) / d.page_size * page_bytes;
  if (for_decoder < streams * least_decoder) {
    const std::int64_t need = streams * (encoder_bytes + least_decoder) + (o.kv_cache_mb > 0 ? 0 : other);
    const std::string max_streams = option_name(o.naming, "max_streams");
    const std::string kv_cache_mb = option_name(o.naming, "kv_cache_mb");
    fail(o.kv_cache_mb > 0 ? kv_cache_mb : max_streams,
         cat(streams, " streams need ", (need + (1 << 20) - 1) >> 20, " MiB of K/V cache (each its encoder window and 30 s of "
             "decoder cache) but ", o.kv_cache_mb > 0 ? kv_cache_mb + " gives " : "the memory gives ", budget >> 20,
             " MiB: lower ", max_streams, o.kv_cache_mb > 0 ? " or raise " + kv_cache_mb : ""));
  }
  d.pages = std::clamp<std::int64_t>(for_decoder / page_bytes, 1, ring_pages * d.max_sequences);
  return p;
}

}  // namespace

namespace {

// Q8 or Q4 when the options ask to quantize a BF16 model at load, else BF16. A quantized file
// runs as it is stored: another format would need the BF16 values it no longer has.
WeightFormat format_to_quantize(const ModelOptions& options, const ModelConfig& config, const std::filesystem::path& dir) {
  const std::string& weights = options.weights;
  if (config.stored_weights != WeightFormat::BF16) {
    const auto stored = weight_format_name(config.stored_weights);
    if (weights != "auto" && weights != stored) {
      fail(option_name(options.naming, "weights"), cat(dir.string(), " is stored in ", stored, ", so it runs as ", stored, " only; for ", weights,
                          ", load the BF16 model", weights == "q8" || weights == "q4" ? " (or quantize it to that)" : ""));
    }
    return WeightFormat::BF16;
  }
  return weights == "q8" || weights == "q4" || weights == "fp8" ? parse_weight_format(weights) : WeightFormat::BF16;
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::filesystem::path& dir, const ModelOptions& options) {
  validate(options);
  const auto start = std::chrono::steady_clock::now();
  // The error_code form: a symlink loop or an unreadable parent is an Error, not a
  // filesystem_error that nobody expects.
  std::error_code ec;
  const auto status = std::filesystem::status(dir, ec);
  if (status.type() == std::filesystem::file_type::not_found) fail(dir.string(), "no such model directory");
  if (ec) fail(dir.string(), cat("cannot read the model directory: ", ec.message()));
  if (!std::filesystem::is_directory(status)) fail(dir.string(), "is not a directory");
  std::unique_ptr<Model> m(new Model());
  m->directory_ = dir;
  m->config_ = ModelConfig::load(dir / "params.json");
  m->tokenizer_ = Tokenizer::load(dir / "tekken.json");
  check_consistent(m->config_, m->tokenizer_);
  check_model_usable(m->config_, m->tokenizer_, (dir / "params.json").string(), physical_memory_bytes());
  m->file_ = std::make_unique<SafeTensors>(SafeTensors::open(dir / "consolidated.safetensors"));
  check_model_tensors(*m->file_, m->config_);
  const WeightFormat quantize_to = format_to_quantize(options, m->config_, dir);
  m->weight_format_ = quantize_to != WeightFormat::BF16 ? quantize_to : m->config_.stored_weights;
  ModelOptions resolved = options;  // "auto" decided once: the GPU probe and its notice run once
  resolved.backend = resolve_backend(options);
  m->backend_ = make_backend(resolved);
  m->backend_kind_ = resolved.backend;
  m->quantized_ = std::make_unique<QuantizedStore>();
  const int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
  m->weights_ = ModelWeights::load(*m->backend_, *m->file_, m->config_, quantize_to, m->quantized_.get(), threads);
  if (options.kv_cache == "auto") {
    m->kv_cache_type_ = m->backend_->default_kv_cache_type();
  } else if (options.kv_cache == "f32" || options.kv_cache == "bf16") {
    m->kv_cache_type_ = options.kv_cache == "f32" ? ElemType::F32 : ElemType::BF16;
  } else {
    fail("kv cache", cat("unknown type \"", options.kv_cache, "\" (use f32, bf16 or auto)"));
  }
  m->speculative_tokens_ = options.speculative_tokens >= 0 ? options.speculative_tokens
                          : resolved.backend == "cpu"      ? kDefaultCpuSpeculativeTokens
                                                           : 0;
  const PoolOptions pools =
      pool_options(options, m->config_, m->tokenizer_, *m->backend_, m->kv_cache_type_, m->speculative_tokens_);
  m->encoder_ = std::make_unique<EncoderPool>(*m->backend_, m->config_, m->weights_, pools.encoder);
  m->decoder_ = std::make_unique<DecoderPool>(*m->backend_, m->config_, m->weights_, pools.decoder);
  if (m->backend_->slow_first_use()) m->warm_up();
  if (auto* profiling = dynamic_cast<ProfilingBackend*>(m->backend_.get())) profiling->clear();
  m->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return m;
}

// A GPU library loads a kernel the first time it runs it, 5-20 ms each on the H100
// (BENCHMARKS.md): that landed in transcriptions' encoder time and first-token latency. The
// CUDA backend keeps one kernel per power-of-two bucket of rows for each product shape, so
// running the encoder on silence in passes of every bucket up to a full pass (several
// streams' requests of up to 64 positions), the adapter, and one prefill meets them all at
// load time. Nothing here is kept.
void Model::warm_up() {
  const int n_delay = delay_positions(tokenizer_.audio().transcription_delay_ms, config_);
  const std::vector<int> prompt = prompt_ids(tokenizer_, n_delay);
  const int prompt_rows = static_cast<int>(prompt.size()) - 1;
  const EncoderPoolOptions& eo = encoder_->options();
  const int per_request = eo.max_positions_per_sequence;
  const int requests = std::min(eo.max_sequences, eo.max_positions_per_call / per_request);
  DeviceBuffer audio(*backend_, ElemType::F32, std::max(per_request * requests, prompt_rows), config_.decoder.dim);
  const std::vector<float> mel(static_cast<std::size_t>(per_request) * config_.mel_frames_per_position() *
                                   config_.audio.num_mel_bins, 0.0f);
  const auto per_position = static_cast<std::size_t>(config_.mel_frames_per_position()) * config_.audio.num_mel_bins;
  for (int total = per_request * requests; total >= 4; total /= 2) {
    std::vector<EncodeRequest> batch;
    for (int r = 0, left = total; left > 0; ++r) {
      const int n = std::min(left, per_request);
      encoder_->reset(r);
      batch.push_back({r, std::span(mel).first(static_cast<std::size_t>(n) * per_position), n,
                       audio.view().row_range(static_cast<std::int64_t>(r) * per_request, n)});
      left -= n;
    }
    encoder_->encode(batch);
  }
  for (int r = 0; r < requests; ++r) encoder_->release(r);
  const int sequence = decoder_->acquire();
  decoder_->start(sequence, ffn_norms(n_delay));
  decoder_->prefill(sequence, std::span(prompt).first(static_cast<std::size_t>(prompt_rows)),
                    audio.view().row_range(0, prompt_rows), 0);
  float sink = 0;
  backend_->copy_to_host(audio.view().row_range(0, 1).col_range(0, 1), &sink);
  decoder_->release(sequence);
}

const std::vector<std::vector<float>>& Model::ffn_norms(int n_delay_tokens) {
  std::lock_guard lock(norms_mutex_);
  auto it = ffn_norms_.find(n_delay_tokens);
  if (it == ffn_norms_.end()) {
    it = ffn_norms_.emplace(n_delay_tokens, time_conditioned_ffn_norms(config_, weights_, n_delay_tokens)).first;
  }
  return it->second;
}

}  // namespace voxtral
