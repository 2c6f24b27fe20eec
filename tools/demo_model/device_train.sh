#!/usr/bin/env bash
# Trains the demo model on the GPU test machine in one call of at most 10 minutes: corpus
# (connected + word-by-word speech and the held-out sets), training, export, and the held-out
# WER of every set with transformers. The machine has torch and transformers but no espeak-ng:
# tools/demo_model/carry_espeak.sh (run on a Debian machine with espeak-ng) copies espeak-ng,
# libespeak-ng, their libraries and the English data into .device-carry/espeak first.
#   tools/demo_model/device_train.sh [train.py options]    (results in $OUT/demo)
# A smoke run (tiny corpus, 20 steps, export and evaluation) goes first, so a mistake costs
# seconds rather than the whole call (DEMO_SMOKE=0 skips it). Training gets what is left of
# DEMO_BUDGET_S (default 560 s, from this script's start) after the corpus, less
# DEMO_EVAL_RESERVE_S (default 75 s) for loading, export and evaluation.
set -euo pipefail
t0=$(date +%s)
root="$(cd "$(dirname "$0")/../.." && pwd)"
espeak="$root/.device-carry/espeak"
# The carried libraries only for the corpus: torch keeps the machine's own.
with_espeak() { LD_LIBRARY_PATH="$espeak/lib:${LD_LIBRARY_PATH:-}" "$@"; }
export PATH="$espeak/bin:$PATH" ESPEAK_DATA_PATH="$espeak"
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/voxtral-out}/demo"
mkdir -p "$out"
with_espeak espeak-ng --version
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
jobs=$(nproc)
corpus="$root/tools/demo_model/corpus.py"
train="$root/tools/demo_model/train.py"

if [ "${DEMO_SMOKE:-1}" != 0 ]; then
  echo "=== smoke run"
  with_espeak python3 "$corpus" --out /tmp/corpus-smoke --train 300 --heldout 20 --heldout-per-set 10 --jobs "$jobs"
  python3 "$root/tools/demo_model/check_dataset.py" --corpus /tmp/corpus-smoke
  python3 "$train" --corpus /tmp/corpus-smoke --out /tmp/demo-smoke --steps 20 --eval-every 10 \
    --utterances-per-batch 32
  echo "smoke run done at $(( $(date +%s) - t0 )) s"
fi

echo "=== corpus"
start=$(date +%s)
with_espeak python3 "$corpus" --out /tmp/corpus --train "${DEMO_TRAIN_UTTERANCES:-30000}" \
  --heldout 600 --heldout-per-set 200 --jobs "$jobs" 2>&1 | tee "$out/corpus.log"
echo "corpus took $(( $(date +%s) - start )) s"

left=$(( ${DEMO_BUDGET_S:-560} - ($(date +%s) - t0) - ${DEMO_EVAL_RESERVE_S:-75} ))
minutes=$(python3 -c "print(round(max($left, 60) / 60, 2))")
echo "=== training (at most $minutes min)"
python3 "$train" --corpus /tmp/corpus --out "$out" --max-minutes "$minutes" "$@" 2>&1 | tee "$out/train.log"
echo "all done in $(( $(date +%s) - t0 )) s"
