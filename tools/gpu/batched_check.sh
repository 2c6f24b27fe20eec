#!/usr/bin/env bash
# Issue 15's GPU checks of the batched decode step in one device call, with binaries built
# elsewhere and carried (CARRY: a folder with bin/ and lib/, as .device-carry/ is for
# device_check.sh): the CUDA op tests, parity on CUDA, compute-sanitizer on batched runs, and
# `voxtral-bench step` on the full-size random model (made meanwhile in the background).
#   CARRY=build-x/carry tools/gpu/batched_check.sh [unit] [parity] [sanitize] [crossover] [step]
set -uo pipefail
: "${CARRY:?CARRY names the folder with bin/ and lib/}"
[ -d "$CARRY" ] || { echo "CARRY=$CARRY: no such folder" >&2; exit 2; }
source "$(dirname "$0")/device_env.sh"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
maker=
if [ ! -f "$model/consolidated.safetensors" ]; then
  make_full_size_model > "$out/make_model.log" 2>&1 &
  maker=$!
fi
# The stages that need the model wait for its making (once).
wait_for_model() {
  [ -n "$maker" ] || return 0
  wait "$maker" || status=1
  maker=
  tail -1 "$out/make_model.log"
}

for stage in "$@"; do
  case "$stage" in
    unit)
      step "unit: CUDA ops against the CPU backend"
      timeout "${UNIT_TIMEOUT:-200}" "$bin/voxtral_gpu_tests" > "$out/unit.log" 2>&1
      rc=$?
      grep -E "^\[  (FAILED|PASSED) |Failure|Expected|Which is|actual|error|tests ran" "$out/unit.log" | head -40
      [ $rc -eq 0 ] || { echo "unit exit $rc"; status=1; }
      ;;
    parity)
      step "parity: transformers fixtures on CUDA, exact mode"
      VOXTRAL_TEST_BACKEND=cuda VOXTRAL_TEST_CLI_ARGS="--backend cuda --precision exact --kv-cache f32" \
        timeout "${PARITY_TIMEOUT:-150}" "$bin/voxtral_tests" \
        --gtest_filter='Fixtures/Parity.*:ParitySensitivity.*:Stream.*:Cli.PrintsTheRecordedTranscript:Cli.HonoursTheDelayOption:CliStreaming.*:CliDemo.*:DemoModel.*' \
        > "$out/parity.log" 2>&1
      rc=$?
      grep -E "^\[  (FAILED|PASSED) |Failure|Expected|actual|tests ran" "$out/parity.log" | head -30
      [ $rc -eq 0 ] || { echo "parity exit $rc"; status=1; }
      ;;
    sanitize)
      # Batched steps of the decoder pool (buckets with padding rows) and N-row attention.
      step "compute-sanitizer memcheck: batched steps on the tiny fixture model"
      timeout 90 compute-sanitizer --tool memcheck --error-exitcode 1 "$bin/voxtral-bench" step \
        -d "$root/tests/fixtures/tiny-a" --backend cuda --batch 1,3,8,12 --context 5,300 --steps 2 --warmup 1 \
        --skip-bandwidth > "$out/sanitize_step.log" 2>&1
      rc=$?; tail -4 "$out/sanitize_step.log"; [ $rc -eq 0 ] || { echo "memcheck step exit $rc"; status=1; }
      step "compute-sanitizer memcheck and racecheck: the batched op tests"
      for tool in memcheck racecheck; do
        filter='*CudaBatchedAttention.*/0:*CudaBatchedAttention.*/4:*CudaBatchedAttention.*/6'
        [ "$tool" = memcheck ] && filter="CudaDecoderPool.*:*CudaBatchedAttention.*/5:$filter"
        timeout 120 compute-sanitizer --tool "$tool" --error-exitcode 1 "$bin/voxtral_gpu_tests" \
          --gtest_filter="$filter" > "$out/sanitize_$tool.log" 2>&1
        rc=$?; tail -3 "$out/sanitize_$tool.log"; [ $rc -eq 0 ] || { echo "$tool exit $rc"; status=1; }
      done
      ;;
    crossover)
      wait_for_model
      # Steps of 1-16 rows with products on the weight-streaming kernel up to 0, 1, 2, 4, 8 rows.
      for rows in 0 1 2 4 8; do
        step "crossover: streamed products up to $rows rows"
        timeout 60 "$bin/voxtral-bench" step -d "$model" --backend cuda --variant "streamed_rows=$rows" \
          --batch 1,2,3,4,8,16 --context 64 --steps 50 --skip-bandwidth | tail -6
      done
      ;;
    step)
      wait_for_model
      step "voxtral-bench step: N streams at context 64 and 4096"
      timeout 150 "$bin/voxtral-bench" step -d "$model" --backend cuda --batch "${BATCHES:-1,2,4,8,16,32,64,128,256}" \
        --context 64,4096 --steps 60 --json > "$out/step.json" 2> "$out/step.err"
      rc=$?
      [ $rc -eq 0 ] || { echo "step exit $rc"; tail -5 "$out/step.err"; status=1; }
      python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["backend"])
for x in r["results"]:
    print("%5d streams  context %5d  %8.3f ms/step  %9.1f tok/s  floor %.2f  floor+kv %.2f" % (
        x["streams"], x["context"], x["step_ms_median"], x["tokens_per_s"], x["floor_fraction"], x["floor_with_kv_fraction"]))
' "$out/step.json"
      ;;
    *) echo "unknown stage $stage"; status=1 ;;
  esac
done
wait_for_model > /dev/null
exit $status
