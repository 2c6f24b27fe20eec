#include "cli/model_options.h"

#include "cli/option_checks.h"
#include "runtime/stream.h"

namespace voxtral {

void add_model_options(CLI::App& app, ModelOptions& o) {
  o.naming = OptionNaming::Flag;  // the engine's messages name --max-streams, not max_streams
  app.add_option("-t,--threads", o.threads, "CPU threads (default: one per core)")->check(whole_range(1, kMaxThreads));
  app.add_option("--backend", o.backend,
                 cat("cpu, cuda, or auto: the GPU when this build has CUDA and a GPU is usable, otherwise the CPU "
                     "with a warning (default ", o.backend, ")"))
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  app.add_option("--precision", o.precision,
                 "Matrix products: exact (near-F32: two BF16 passes on the GPU, F32 activations on the CPU) or fast "
                 "(activations rounded to BF16; on the CPU the decode step's BF16 products, the encoder, the adapter and "
                 "a prefill then use AVX512_BF16 where the CPU has it, and with q8/q4 weights the decode step uses int8 "
                 "activations per block of 32 and integer products, AVX512-VNNI where the CPU has it; on the GPU the "
                 "decode step's q8/q4 products use int8 activations (dp4a) and fp8 ones F16 products, and with fp8 "
                 "weights the many-row products quantize each activation row to E4M3 and run on FP8 tensor cores); "
                 "default exact")
      ->check(CLI::IsMember({"auto", "exact", "fast"}));
  app.add_option("--kv-cache", o.kv_cache, "K/V cache type: f32 or bf16 (default: f32 on the CPU, bf16 on the GPU)")
      ->check(CLI::IsMember({"auto", "f32", "bf16"}));
  app.add_option("--weights", o.weights,
                 "matrix storage: auto (as the model stores them, default), bf16, fp16 (GPU), q8 / q4 (a BF16 "
                 "model quantized at load; CPU and GPU), or fp8 (E4M3 with a scale per output row, quantized at "
                 "load; GPUs with FP8 tensor cores, sm_89 or newer)")
      ->check(CLI::IsMember({"auto", "bf16", "fp16", "q8", "q4", "fp8"}));
  app.add_option("--max-streams", o.max_streams,
                 cat("Streams the model transcribes at once (default: the backend's, 256 on a GPU and 8 on the CPU, "
                     "fewer when memory would not give each its encoder window and ~2 minutes of decoder cache); "
                     "more streams than this wait or are refused"))
      ->check(whole_range(1, kMaxStreams));
  app.add_option("--speculative-tokens", o.speculative_tokens,
                 cat("Speculative decoding: the most extra rows a stream's decoder step may carry, each guessing that "
                     "the position before it emits the streaming pad token (most positions of speech do), when the "
                     "audio of those positions is already encoded (offline, or a live stream that fell behind); the "
                     "text is the same as without. A step holds 1, 2, 4 or 8 rows, so 2 acts as 1 and 4 to 6 as 3. "
                     "0 turns it off (default: ",
                     kDefaultCpuSpeculativeTokens, " on the CPU, 0 on a GPU; at most ", kMaxSpeculativeTokens, ")"))
      ->check(whole_range(0, kMaxSpeculativeTokens));
  app.add_option("--kv-cache-mb", o.kv_cache_mb,
                 "MiB of K/V cache for all streams: each stream's encoder window, the rest decoder pages taken as "
                 "streams grow (default: 90% of the GPU's free memory or a quarter of the machine's, at most every "
                 "stream's full window)")
      ->check(whole_range(1, std::int64_t{1} << 30));
}

CLI::Option* add_delay_option(CLI::App& app, int& delay_ms) {
  return app
      .add_option("--delay", delay_ms,
                  "Transcription delay in ms: a multiple of 80 from 80 to 1200, or 2400 (default: the model's, 480)")
      ->check(whole_range(1, 100000));
}

CLI::Option* add_interval_option(CLI::App& app, double& seconds) {
  return app
      .add_option("-I,--interval", seconds,
                  "Processing interval in seconds: how much new audio to gather before running the encoder "
                  "(default 0: every 80 ms; larger is more efficient, later)")
      ->check(finite_range(0.0, kMaxProcessingIntervalSeconds));
}

void add_turn_detection_options(CLI::App& app, bool& enabled, TurnDetectionOptions& o, const std::string& what_vad_does) {
  app.add_flag("--vad", enabled, "Turn detection: find where each utterance ends from the audio (an energy voice "
                                 "activity detector) and " + what_vad_does);
  app.add_option("--vad-threshold", o.threshold,
                 "Turn detection: how far speech must stand above the room's noise, 0 to 1 (default 0.5; higher for "
                 "noisy rooms)")
      ->check(finite_range(0.0, 1.0));
  app.add_option("--vad-silence-ms", o.silence_duration_ms,
                 "Turn detection: the pause in ms that ends an utterance (default 500)")
      ->check(whole_range(10, 10000));
  app.add_option("--vad-padding-ms", o.prefix_padding_ms,
                 "Turn detection: audio in ms kept before the detected start of speech (default 300)")
      ->check(whole_range(0, 10000));
}

}  // namespace voxtral
