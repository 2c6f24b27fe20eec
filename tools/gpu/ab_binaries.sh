# A/B of two voxtral-bench binaries, interleaved rounds: base (carried in .device-carry/base) vs new.
source tools/gpu/device_env.sh
make_full_size_model > /dev/null
for round in 1 2 3; do
  for which in base new; do
    b="$bin/voxtral-bench"; [ $which = base ] && b=.device-carry/base/voxtral-bench
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
