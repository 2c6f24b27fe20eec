#!/usr/bin/env bash
# On the GPU test machine: the decoder step alone (1 and 2 rows, context 64) of two builds,
# `base` (.device-carry/base/voxtral-bench) and `new` (the carried bin/), in three interleaved
# rounds, then the medians: an A/B of two kernel versions that need not both live in the product.
# Here, before packing the new build: keep the old one's binary, e.g.
#   mkdir -p /tmp/base && tar xJf .device-carry/pack.tar.xz -C /tmp/base bin/voxtral-bench
#   tools/gpu/pack_carry.sh && mkdir -p .device-carry/base && cp /tmp/base/bin/voxtral-bench .device-carry/base/
# then run `tools/gpu/ab_binaries.sh` there (AB_SETTINGS="weights:precision ..." picks formats).
set -uo pipefail
source "$(dirname "$0")/device_env.sh"
make_full_size_model > /dev/null
for round in 1 2 3; do
  for which in base new; do
    b="$bin/voxtral-bench"; [ $which = base ] && b="$root/.device-carry/base/voxtral-bench"
    for setting in ${AB_SETTINGS:-q4:fast q8:fast fp8:fast q4:exact}; do
      w="${setting%%:*}" p="${setting##*:}"
      "$b" step -d "$model" --backend cuda --weights "$w" --precision "$p" --batch 1,2 --context 64 --steps 60 --skip-bandwidth 2>&1 |
        awk -v v="$which" -v w="$w $p" '$1 ~ /^[0-9]+$/ && NF >= 4 {print v, w, $2, $1, $3}' >> "$out/ab.txt"
    done
  done
done
python3 - "$out/ab.txt" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    v, w, p, c, r, ms = line.split()
    runs[(w, p, r, v)].append(float(ms))
for key, values in sorted(runs.items()):
    print(" ".join(key), "median %.3f ms" % statistics.median(values), values)
PY
