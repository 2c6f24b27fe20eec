#!/usr/bin/env bash
# Trains the demo model on the GPU test machine, which has torch and transformers but no
# espeak-ng: tools/demo_model/carry_espeak.sh (run on a Debian machine with espeak-ng) copies
# espeak-ng, its libraries and its English data into .device-carry/espeak first.
#   tools/demo_model/device_train.sh [train.py options]    (results in $OUT/demo)
# A short smoke run (tiny corpus, 20 steps, export and evaluation) goes first, so a mistake
# costs seconds rather than a whole training run (DEMO_SMOKE=0 skips it).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
espeak="$root/.device-carry/espeak"
export PATH="$espeak/bin:$PATH" LD_LIBRARY_PATH="$espeak/lib:${LD_LIBRARY_PATH:-}" ESPEAK_DATA_PATH="$espeak"
export PYTHONUNBUFFERED=1
out="${OUT:-/tmp/voxtral-out}/demo"
mkdir -p "$out"
espeak-ng --version
nvidia-smi --query-gpu=name --format=csv,noheader
python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
jobs=$(nproc)

if [ "${DEMO_SMOKE:-1}" != 0 ]; then
  echo "=== smoke run"
  python3 "$root/tools/demo_model/corpus.py" --out /tmp/corpus-smoke --train 300 --heldout 40 --jobs "$jobs"
  python3 "$root/tools/demo_model/train.py" --corpus /tmp/corpus-smoke --out /tmp/demo-smoke --steps 20 \
    --eval-every 10 --utterances-per-batch 32
fi

echo "=== corpus"
start=$(date +%s)
python3 "$root/tools/demo_model/corpus.py" --out /tmp/corpus --train "${DEMO_TRAIN_UTTERANCES:-20000}" \
  --heldout 600 --jobs "$jobs"
echo "corpus took $(( $(date +%s) - start )) s"

echo "=== training"
python3 "$root/tools/demo_model/train.py" --corpus /tmp/corpus --out "$out" "$@" 2>&1 | tee "$out/train.log"
