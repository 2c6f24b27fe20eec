#include "bench/step_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "bench/memory_bandwidth.h"
#include "core/error.h"
#include "model/schedule.h"
#ifdef VOXTRAL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace voxtral {

double decoder_bytes_per_step(const ModelConfig& c, WeightFormat format) {
  const auto& d = c.decoder;
  const double per_layer = static_cast<double>(d.q_width() + 2 * d.kv_width()) * d.dim +
                           static_cast<double>(d.dim) * d.q_width() + 3.0 * d.hidden_dim * d.dim;
  // Bytes a weight: BF16/FP16 2; Q8 1 and Q4 0.5, plus an F16 scale per 32; FP8 1, plus an F32
  // scale per row (negligible). The LM head stays Q8 in Q4 and FP8.
  const double scale = 2.0 / kQuantBlock;
  const double matrix = format == WeightFormat::Q8    ? 1.0 + scale
                        : format == WeightFormat::Q4  ? 0.5 + scale
                        : format == WeightFormat::FP8 ? 1.0
                                                      : 2.0;
  const double head = is_block_quantized(format) || format == WeightFormat::FP8 ? 1.0 + scale : 2.0;
  return per_layer * d.n_layers * matrix + static_cast<double>(d.vocab_size) * d.dim * head;
}

int run_step_bench(const StepBenchOptions& o) {
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  const int max_context = *std::max_element(o.contexts.begin(), o.contexts.end());
  if (*std::min_element(o.batches.begin(), o.batches.end()) < 1 || max_batch > kMaxStreams ||
      *std::min_element(o.contexts.begin(), o.contexts.end()) < 0 || o.steps < 1 || o.warmup < 1) {
    fail("voxtral-bench step", "batches must be 1 to 4096 rows, contexts 0 or more, steps and warm-up 1 or more");
  }
  // The bandwidth first, while the GPU's memory is still free for its buffer.
  const bool gpu = o.model.backend == "cuda";
  double bandwidth = 0;
  if (!o.skip_bandwidth) {
#ifdef VOXTRAL_HAVE_CUDA
    if (gpu) bandwidth = measure_device_read_bandwidth(std::size_t{4} << 30);
#endif
    if (!gpu) bandwidth = measure_read_bandwidth(o.model.threads > 0 ? o.model.threads
                                                                     : static_cast<int>(std::thread::hardware_concurrency()));
  }
  // The model with one stream of its own, and a decoder pool of the bench's: N sequences
  // with K/V pages for positions 0..max_context each, and no more (the default sizing would
  // give every stream a whole window and an encoder cache).
  ModelOptions mo = o.model;
  mo.max_streams = 1;
  auto model = Model::load(o.model_dir, mo);
  const ModelConfig& config = model->config();
  DecoderPoolOptions po;
  po.max_sequences = max_batch;
  po.kv_cache_type = model->kv_cache_type();
  po.max_prefill_rows = model->decoder().options().max_prefill_rows;
  po.pages = static_cast<std::int64_t>(max_batch) * ((max_context + po.page_size) / po.page_size + 1);
  DecoderPool pool(model->backend(), config, model->weights(), po);
  const auto& norms = model->ffn_norms(delay_positions(model->tokenizer().audio().transcription_delay_ms, config));
  std::vector<int> sequences;
  for (int i = 0; i < max_batch; ++i) {
    sequences.push_back(pool.acquire());
    pool.start(sequences.back(), norms);
    pool.reserve(sequences.back(), 0, max_context);
  }
  const double weight_bytes = decoder_bytes_per_step(config, model->weight_format());
  const double kv_bytes_per_position = 2.0 * config.decoder.n_layers * config.decoder.kv_width() *
                                       static_cast<double>(elem_size(model->kv_cache_type()));
  nlohmann::json results = nlohmann::json::array();
  if (!o.json) {
    std::printf("decoder step of N streams on %s, %.2f GB of weights per step, %s\n", model->backend().name().c_str(),
                weight_bytes / 1e9,
                bandwidth > 0 ? cat(bandwidth / 1e9, " GB/s measured read bandwidth").c_str() : "bandwidth not measured");
    std::printf("%8s %8s %10s %12s %12s %14s\n", "streams", "context", "ms/step", "tokens/s", "floor frac", "floor+kv frac");
  }
  for (int context : o.contexts) {
    for (int n : o.batches) {
      std::vector<DecodeRow> rows;
      for (int i = 0; i < n; ++i) {
        rows.push_back({sequences[static_cast<std::size_t>(i)], 1000 + i, context,
                        context % pool.options().audio_ring_positions});
      }
      std::vector<int> next(static_cast<std::size_t>(n));
      for (int i = 0; i < o.warmup; ++i) pool.step(rows, next);
      std::vector<double> ms;
      for (int i = 0; i < o.steps; ++i) {
        const auto start = std::chrono::steady_clock::now();
        pool.step(rows, next);
        ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
      }
      std::sort(ms.begin(), ms.end());
      const double median = ms[ms.size() / 2];
      // Each row reads its keys and values at positions max(0, C - window + 1)..C.
      const double keys = std::min<double>(context + 1, config.decoder.sliding_window);
      const double kv_bytes = n * keys * kv_bytes_per_position;
      const double floor_ms = bandwidth > 0 ? weight_bytes / bandwidth * 1000.0 : 0.0;
      const double floor_kv_ms = bandwidth > 0 ? (weight_bytes + kv_bytes) / bandwidth * 1000.0 : 0.0;
      const nlohmann::json r = {{"streams", n},
                                {"context", context},
                                {"step_ms_median", median},
                                {"step_ms_min", ms.front()},
                                {"step_ms_max", ms.back()},
                                {"steps", o.steps},
                                {"tokens_per_s", n * 1000.0 / median},
                                {"weight_bytes_per_step", weight_bytes},
                                {"kv_bytes_per_step", kv_bytes},
                                {"memory_bandwidth_gb_s", bandwidth / 1e9},
                                {"floor_ms", floor_ms},
                                {"floor_fraction", floor_ms / median},
                                {"floor_with_kv_fraction", floor_kv_ms / median}};
      results.push_back(r);
      if (!o.json) {
        std::printf("%8d %8d %10.3f %12.1f %12.2f %14.2f\n", n, context, median, n * 1000.0 / median, floor_ms / median,
                    floor_kv_ms / median);
        std::fflush(stdout);
      }
    }
  }
  for (int s : sequences) pool.release(s);
  if (o.json) {
    const nlohmann::json out = {{"model", o.model_dir}, {"backend", model->backend().name()}, {"results", results}};
    std::printf("%s\n", out.dump(2).c_str());
  }
  return 0;
}

}  // namespace voxtral
