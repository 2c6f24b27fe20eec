#!/usr/bin/env python3
"""Compares two engine runs' logits position by position (numpy only).

Both runs come from `voxtral-bench run --dump-logits PREFIX`; the second is made with
`--teacher FIRST.ids` so that it decodes the first run's tokens and every position sees the
same inputs. Prints one JSON object: positions, cosine similarity (min, mean, the share of
positions at >= 0.999), top-1 agreement, and the largest logit difference relative to the
reference's spread. Exit status 1 if the two runs' inputs differ (teacher forcing failed).

    compare_logits.py REFERENCE_PREFIX OTHER_PREFIX [--label NAME]
"""
import argparse
import json
import sys

import numpy as np


def load(prefix):
    with open(prefix + ".json") as f:
        meta = json.load(f)
    ids = np.fromfile(prefix + ".ids", dtype=np.int32)
    logits = np.memmap(prefix + ".f32", dtype=np.float32, mode="r").reshape(meta["steps"], meta["vocab"])
    return meta, ids, logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    meta_a, ids_a, a = load(args.reference)
    meta_b, ids_b, b = load(args.other)
    n = min(len(ids_a), len(ids_b))
    if meta_a["first_position"] != meta_b["first_position"] or not np.array_equal(ids_a[:n], ids_b[:n]):
        print(f"{args.other}: its step inputs differ from {args.reference}'s (run it with --teacher)", file=sys.stderr)
        return 1
    cos = np.empty(n)
    top1 = np.empty(n, dtype=bool)
    worst = 0.0
    for i in range(n):
        x = a[i].astype(np.float64)
        y = b[i].astype(np.float64)
        cos[i] = x.dot(y) / (np.linalg.norm(x) * np.linalg.norm(y))
        top1[i] = np.argmax(x) == np.argmax(y)
        worst = max(worst, float(np.max(np.abs(x - y)) / (x.std() + 1e-30)))
    print(json.dumps({"label": args.label, "positions": int(n), "cos_min": round(float(cos.min()), 6),
                      "cos_mean": round(float(cos.mean()), 6),
                      "cos_at_least_0.999": round(float((cos >= 0.999).mean()), 4),
                      "top1_agreement": round(float(top1.mean()), 4),
                      "max_abs_diff_over_std": round(worst, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
