#!/usr/bin/env bash
# Runs the GPU checks on the GPU test machine with binaries built elsewhere and carried in
# .device-carry/ (bin/, lib/ and audio/; CARRY= names another; see device_env.sh). Stages:
# info unit parity capi sanitize model bench quantbench quantab encoderab fixedcost decodeab profile ncu
# fullparity latency demo demoformats serverload longrun.
#   tools/gpu/device_check.sh info unit parity
set -uo pipefail
source "$(dirname "$0")/device_env.sh"

# Prints, per key (every field of a line but the last), the median of the lines' last fields,
# with the values: medians FILE UNIT DIGITS.
medians() {
  python3 - "$@" <<'PY'
import collections, statistics, sys
path, unit, digits = sys.argv[1], sys.argv[2], int(sys.argv[3])
runs = collections.defaultdict(list)
for line in open(path):
    *key, value = line.split()
    runs[tuple(key)].append(float(value))
for key, values in sorted(runs.items()):
    print(" ".join(key), "median %.*f %s" % (digits, statistics.median(values), unit), ["%.*f" % (digits, v) for v in values])
PY
}

for stage in "$@"; do
  case "$stage" in
    info)
      step info
      nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv
      nvcc --version | tail -1; g++ --version | head -1; cmake --version | head -1
      python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
      ldd "$bin/voxtral" | grep -E "not found" || echo "all libraries found"
      ;;
    unit)
      step unit: CUDA ops against the CPU backend
      "$bin/voxtral_gpu_tests" 2>&1 | tee "$out/unit.log" | grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is|actual|error" | head -60
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    parity)
      step parity: transformers fixtures on CUDA, exact mode
      VOXTRAL_TEST_BACKEND=cuda VOXTRAL_TEST_CLI_ARGS="--backend cuda --precision exact --kv-cache f32" \
        "$bin/voxtral_tests" --gtest_filter='Fixtures/Parity.*:ParitySensitivity.*:Stream.*:BatchedDecoder.*:Scheduler.*:Cli.PrintsTheRecordedTranscript:Cli.HonoursTheDelayOption:CliStreaming.*:CliDemo.*:DemoModel.*' \
        2>&1 | tee "$out/parity.log" | grep -E "^\[ tiny|^\[  (FAILED|PASSED) |Failure|Expected|actual" | head -60
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    capi)
      step "C API on CUDA"
      VOXTRAL_TEST_BACKEND=cuda "$bin/c_api_test" "$root/tests/fixtures/tiny-a" \
        "$root/tests/fixtures/audio/speech_short.wav" "$root/tests/fixtures/tiny-a_speech_short_480ms.txt" || status=1
      ;;
    latency)
      for interval in 0 0.32; do
        step "streaming latency, 20 s at real-time pace, interval $interval"
        "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/jfk.wav" --seconds 20 --backend cuda --realtime \
          -I "$interval"
      done
      ;;
    sanitize)
      # memcheck: the CLI on three files at once (batched encoder passes and decoder steps
      # through the scheduler); SANITIZE_ARGS adds CLI options, e.g. "--weights q4 --precision
      # fast" for the quantized products' rings and programmatic launches.
      step "compute-sanitizer memcheck ${SANITIZE_ARGS:-}"
      a="$root/tests/fixtures/audio"
      compute-sanitizer --tool memcheck --error-exitcode 1 "$bin/voxtral" -d "$root/tests/fixtures/tiny-a" \
        -i "$a/noise.wav" "$a/speech_short.wav" "$a/speech_long.wav" --backend cuda ${SANITIZE_ARGS:-} \
        > "$out/sanitize_memcheck.log" 2>&1 || status=1
      tail -3 "$out/sanitize_memcheck.log"
      # racecheck: our kernels (shared memory rings, attention slices, merges) one by one
      # through the op tests at their small shapes (about 6 minutes). It reports hazards in
      # cuBLASLt's own nvjet kernels, which synchronize in ways it does not follow: only hazards
      # in other kernels fail the stage (--kernel-name-exclude for them made the sanitizer fail
      # with an internal error). Racecheck on the whole CLI grew to 130 GB of host memory and
      # was killed by the OOM killer (session 15), with or without programmatic launches.
      step "compute-sanitizer racecheck, decode kernels"
      timeout "${RACECHECK_TIMEOUT:-480}" compute-sanitizer --tool racecheck "$bin/voxtral_gpu_tests" \
        --gtest_filter="${RACECHECK_FILTER:-CudaQuantized.*:Shapes/CudaQuantizedDecodeOps.*/0:Shapes/CudaBatchedAttention.*:Shapes/CudaBatchedDecodeOps.*/0:Shapes/CudaBatchedDecodeOps.*/1}" \
        > "$out/sanitize_racecheck.log" 2>&1 || status=1
      grep -E "^\[  (PASSED|FAILED) " "$out/sanitize_racecheck.log"
      ours="$(grep "Race reported" "$out/sanitize_racecheck.log" | grep -vc nvjet)"
      echo "hazards in our kernels: $ours (cuBLASLt's: $(grep "Race reported" "$out/sanitize_racecheck.log" | grep -c nvjet))"
      [ "$ours" = 0 ] || status=1
      ;;
    quantab)
      # Issue 17: the decoder step alone, 1 and 2 streams at context 64 (QUANT_CONTEXTS: several),
      # in each weight format and precision (QUANT_SETTINGS: "weights:precision ..."), under each
      # of QUANT_VARIANTS (comma-separated variant sets, space-separated; "default" for none), for
      # each build in QUANT_BINARIES ("label=path/to/voxtral-bench ..."; default: this one, to A/B
      # two kernel versions that need not both live in the product), in QUANT_ROUNDS interleaved
      # rounds; then the medians. To keep the old build here before packing the new one:
      #   mkdir -p /tmp/base && tar xJf .device-carry/pack.tar.xz -C /tmp/base bin/voxtral-bench
      #   tools/gpu/pack_carry.sh && mkdir -p .device-carry/base && cp /tmp/base/bin/voxtral-bench .device-carry/base/
      # and run with QUANT_BINARIES="base=.device-carry/base/voxtral-bench new=.device-carry/bin/voxtral-bench".
      make_full_size_model || status=1
      settings="${QUANT_SETTINGS:-q8:fast q4:fast fp8:fast q8:exact q4:exact fp8:exact}"
      for round in $(seq "${QUANT_ROUNDS:-3}"); do
        for build in ${QUANT_BINARIES:-this=$bin/voxtral-bench}; do
          label="${build%%=*}" bench="${build#*=}"
          for variant in ${QUANT_VARIANTS:-default}; do
            for setting in $settings; do
              weights="${setting%%:*}" precision="${setting##*:}"
              extra=(); [ "$variant" != default ] && extra=(--variant "$variant")
              contexts="${QUANT_CONTEXTS:-64}"
              "$bench" step -d "$model" --backend cuda --weights "$weights" --precision "$precision" \
                --batch 1,2 --context "${contexts// /,}" --steps 60 --skip-bandwidth "${extra[@]}" 2>&1 |
                awk -v v="$label:$variant" -v w="$weights $precision" '$1 ~ /^[0-9]+$/ && NF >= 4 {print v, w, "context", $2, $1, $3}' \
                  >> "$out/quantab.txt" || status=1
            done
          done
        done
      done
      medians "$out/quantab.txt" ms 3
      ;;
    encoderab)
      # Issue 17: the encoder and adapter alone on the 60 s clip (requests of 64 positions, the
      # streaming size), each of ENCODER_SETTINGS ("weights:precision ..."), for each build in
      # QUANT_BINARIES (as quantab), in QUANT_ROUNDS interleaved rounds of 7 passes; then the
      # medians of the rounds' medians, in ms to 0.1 (the bench's --json).
      make_full_size_model || status=1
      for round in $(seq "${QUANT_ROUNDS:-2}"); do
        for build in ${QUANT_BINARIES:-this=$bin/voxtral-bench}; do
          label="${build%%=*}" bench="${build#*=}"
          for setting in ${ENCODER_SETTINGS:-bf16:fast fp8:fast}; do
            "$bench" encoder -d "$model" -i "$carry/audio/speech60.wav" --backend cuda --repeats 7 \
              --weights "${setting%%:*}" --precision "${setting##*:}" --json 2>/dev/null |
              python3 -c 'import json, sys; print(sys.argv[1], json.load(sys.stdin)["encoder_ms_median"])' \
                "$label $setting encoder" >> "$out/encoderab.txt" || status=1
          done
        done
      done
      medians "$out/encoderab.txt" ms 1
      ;;
    fixedcost)
      # Issue 17: the decode step's fixed cost, the part that reading the weights does not
      # explain: the real decoder's 26 layers and kernel chain with tiny matrices
      # (tools/gpu/thin_params.json), per format, with and without programmatic launches.
      step "the kernel chain's fixed cost (thin model)"
      [ -f /tmp/thin/consolidated.safetensors ] ||
        "$bin/voxtral-bench" make-model --params "$root/tools/gpu/thin_params.json" --out /tmp/thin > /dev/null || status=1
      for variant in default programmatic_launch=0; do
        for setting in bf16:exact q8:fast q4:fast fp8:fast; do
          extra=(); [ "$variant" != default ] && extra=(--variant "$variant")
          echo "$variant $setting $("$bin/voxtral-bench" step -d /tmp/thin --backend cuda --weights "${setting%%:*}" \
            --precision "${setting##*:}" --batch 1 --context 64 --steps 60 --skip-bandwidth "${extra[@]}" 2>&1 | tail -1)"
        done
      done
      ;;
    model)
      step full-size random model
      make_full_size_model || status=1
      ;;
    bench)
      # 10 s (first token, short context), 60 s (encoder, real-time factor), 330 s (a decode
      # step at ~4096 positions of context), 10 min (real-time factor, peak GPU memory).
      for run in "jfk.wav --seconds 10" "speech60.wav" "speech60.wav --seconds 330" "speech60.wav --seconds 600" \
                 "speech60.wav --precision fast"; do
        step "bench $run"
        set -- $run
        clip="$1"; shift
        "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/$clip" --backend cuda "$@" --json > "$out/bench.json"
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k not in ("model",)})' "$out/bench.json"
      done
      ;;
    quantbench)
      # Issue 17: the decoder step alone (1 and 8 streams, context 64) and a 60 s run (encoder,
      # first token) in each weight format, quantized at load from the full-size BF16 model.
      for format in ${WEIGHT_FORMATS:-bf16 q8 q4 fp8}; do
        step "weights $format: decoder step, full-size random model"
        "$bin/voxtral-bench" step -d "$model" --backend cuda --weights "$format" --batch ${QUANT_BATCHES:-1,8} --context 64 \
          --steps 60 --skip-bandwidth ${QUANT_ARGS:-} || status=1
        step "weights $format: 60 s of speech"
        "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/speech60.wav" --backend cuda --weights "$format" \
          --skip-bandwidth ${QUANT_ARGS:-} | grep -E "model|encoder|decoder|first token" || status=1
      done
      ;;
    batch)
      # Offline batches: N copies of 60 s through the scheduler (aggregate real-time factor,
      # every copy's ids checked against one run alone), and the decoder step alone.
      for n in ${BATCH_SIZES:-1 8 32 128}; do
        step "bench run --batch $n: 60 s each, full-size random model, $*"
        "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/speech60.wav" --backend cuda --batch "$n" \
          --skip-bandwidth ${BATCH_ARGS:-} || status=1
      done
      step "decoder step: N streams, context 64 (vLLM's published H200 figures: 201 tok/s at 1, 655 at 4, 1020 at 8)"
      "$bin/voxtral-bench" step -d "$model" --backend cuda --batch 1,4,8,16,32,64,128,256 --context 64 --steps 50 || status=1
      ;;
    decodeab)
      # The decode step with the fused one-row kernels (default), with the general attention
      # kernels instead of the one-row one, and with the separate ops (the kernels before the
      # fusion): short context (10 s) and ~4100 positions (330 s). DECODE_CONFIGS picks.
      for config in ${DECODE_CONFIGS:-default fused=gemv fused=0}; do
        for run in "jfk.wav --seconds 10" "speech60.wav --seconds 330"; do
          step "decode $config: $run"
          set -- $run
          clip="$1"; shift
          "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/$clip" --backend cuda --skip-bandwidth \
            $([ "$config" = default ] || echo "--variant $config") "$@" | grep -E "decoder|encoder|first token"
        done
      done
      ;;
    longrun)
      # Issue 5's 3-hour run of the full-size model: 577 s on the H100 with the fused decode
      # step, so it needs a call of its own: run `model` in one call, then `longrun` alone in
      # the next while the machine is still warm (/tmp/vox4b survives). The bench reports
      # time, peak RSS and GPU memory every 10 minutes of audio.
      step "3 hours of audio, full-size random model"
      [ -f "$model/consolidated.safetensors" ] || { echo "no $model: run the model stage first"; status=1; continue; }
      timeout "${LONG_TIMEOUT:-595}" "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/speech60.wav" \
        --seconds 10800 --backend cuda --skip-bandwidth --json > "$out/long.json"
      echo "exit $?"
      ;;
    fullparity)
      step "full-size parity and speed against transformers (45 s of speech)"
      "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/speech45.wav" --backend cuda --skip-bandwidth \
        --dump-logits /tmp/ours45 | grep -E "decoder|encoder"
      timeout "${PARITY_TIMEOUT:-420}" python3 "$root/tools/reference/full_size_parity.py" --model "$model" \
        --audio "$carry/audio/speech45.wav" --dump /tmp/ours45 --speed --setups "${SPEED_SETUPS:-dynamic,static}" 2>&1 | grep -v -i warn | tee "$out/fullparity.log"
      ;;
    profile)
      step "profile: per-op times (each op waited for) on 60 s of audio"
      VOXTRAL_PROFILE=1 "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/jfk.wav" --seconds 60 \
        --backend cuda --skip-bandwidth 2>&1 | grep -A28 "voxtral profile"
      ;;
    ncu)
      # Only the decode step's kernels count (the load's warm-up and the encoder run thousands
      # of others): skip 20 steps of 134 launches (embedding, 5 per layer, LM head, argmax in 2).
      step "ncu: the kernels of one decode step"
      ncu --graph-profiling node --kernel-name regex:"streamed_kernel|decode_attention|embed|argmax" \
        --launch-skip "${NCU_SKIP:-2680}" --launch-count "${NCU_COUNT:-134}" \
        --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum \
        --csv "$bin/voxtral-bench" run -d "$model" -i "$carry/audio/jfk.wav" --backend cuda --skip-bandwidth \
        > "$out/ncu.csv" 2> "$out/ncu.err"
      python3 "$root/tools/gpu/ncu_summary.py" "$out/ncu.csv" || tail -5 "$out/ncu.err"
      ;;
    serverload)
      # voxtral-server on the full-size random model; N realtime streams paced at real time.
      step "server: concurrent realtime streams, full-size random model"
      "$bin/voxtral-server" -d "$model" --backend cuda --port 8100 2> "$out/server.log" &
      server_pid=$!
      for _ in $(seq 300); do grep -q listening "$out/server.log" && break; sleep 0.1; done
      "$bin/voxtral-loadtest" --port 8100 -i "$carry/audio/speech60.wav" --seconds "${LOAD_SECONDS:-20}" \
        -n ${LOAD_STREAMS:-1 16 32 64 96 128} || status=1
      nvidia-smi --query-gpu=memory.used --format=csv
      kill "$server_pid"; wait "$server_pid"
      step "server tests on CUDA (demo model)"
      VOXTRAL_TEST_BACKEND=cuda "$bin/voxtral_tests" --gtest_filter='Server*:Realtime*:Scheduler*:DemoModel*:CliDemo*' \
        2>&1 | grep -E "^\[  (FAILED|PASSED) |Failure|Expected" | head -20
      [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
      ;;
    demo)
      # Needs espeak-ng carried in .device-carry/espeak (ESPEAK=1 tools/gpu/pack_carry.sh).
      step "demo model: held-out WER on CUDA and on the CPU, against transformers"
      PATH="$carry/espeak/bin:$PATH" LD_LIBRARY_PATH="$carry/espeak/lib:$LD_LIBRARY_PATH" \
        ESPEAK_DATA_PATH="$carry/espeak" python3 "$root/tools/demo_model/corpus.py" --out /tmp/heldout \
        --train 0 --heldout 600 --wavs heldout --jobs "$(nproc)" > /dev/null || status=1
      for backend in cuda cpu; do
        python3 "$root/tools/demo_model/wer.py" --corpus /tmp/heldout --model "$root/models/demo" \
          --cli "$bin/voxtral" --backend "$backend" --jobs 8 \
          --transformers "$root/tools/demo_model/results/heldout_transformers.json" \
          --json "$out/demo_wer_$backend.json" | tail -20 || status=1
      done
      ;;
    demoformats)
      # Needs espeak-ng as the demo stage does. Held-out WER of the demo model on CUDA per weight
      # format (the words corpus of BENCHMARKS.md's CPU table).
      step "demo model: held-out WER on CUDA, bf16 / q8 / q4 / fp8 weights"
      PATH="$carry/espeak/bin:$PATH" LD_LIBRARY_PATH="$carry/espeak/lib:$LD_LIBRARY_PATH" \
        ESPEAK_DATA_PATH="$carry/espeak" python3 "$root/tools/demo_model/corpus.py" --out /tmp/heldout-words \
        --style words --train 0 --heldout 600 --wavs heldout --jobs "$(nproc)" > /dev/null || status=1
      for weights in ${DEMO_FORMATS:-bf16 q8 q4 fp8}; do
        echo "weights $weights"
        python3 "$root/tools/demo_model/wer.py" --corpus /tmp/heldout-words --model "$root/models/demo" \
          --cli "$bin/voxtral" --backend cuda --jobs 4 --files-per-run 50 --cli-args "--weights $weights" \
          --json "$out/demo_wer_cuda_$weights.json" | tail -1 | cut -c1-160 || status=1
      done
      ;;
    *) echo "unknown stage $stage"; status=2 ;;
  esac
done
exit $status
