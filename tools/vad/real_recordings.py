#!/usr/bin/env python3
"""Turn detection on real recordings, whose pauses are not known in advance: the CLI's turns
(`voxtral --vad --debug`, default threshold 0.5 and silence 500 ms) against reference pauses
found offline from the whole file's frame levels, with no listening:

  - the level of each 10 ms frame after a 100 Hz high-pass (dBFS), its 30 ms moving maximum
    (a lone frame neither makes nor breaks a pause);
  - around each frame (+-2.5 s, seen from both sides, unlike the detector, which only has the
    past) the 10th and 90th percentiles of the levels, taken as the noise and the speech;
  - a frame is quiet below noise + 35% of (speech - noise) in dB; a reference pause is a run
    of quiet frames of at least --min-pause seconds (0.6) inside the file.
Printed per file: the reference pauses, the detected turns, which pauses a detected turn edge
falls into (found), which not (missed), and each detected gap between turns outside every
reference pause with its median level against the speech around it (so it can be judged:
a gap well under the speech is a pause the reference's stricter cut did not take).

  tools/vad/real_recordings.py --cli build/src/voxtral FILE.wav ...   (16 kHz mono 16-bit WAV)
"""
import argparse
import os
import sys
import wave

import numpy as np

from cli_turns import detect

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def levels(path):
    with wave.open(path) as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 16000):
            raise SystemExit(f"{path}: not a 16 kHz mono 16-bit WAV")
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
    # The detector's high-pass: RBJ cookbook, 100 Hz, Q 1/sqrt(2), by its difference equation.
    w0 = 2 * np.pi * 100 / 16000
    c, alpha = np.cos(w0), np.sin(w0) / np.sqrt(2)
    b = np.array([(1 + c) / 2, -(1 + c), (1 + c) / 2]) / (1 + alpha)
    a1, a2 = -2 * c / (1 + alpha), (1 - alpha) / (1 + alpha)
    y = np.zeros_like(x)
    x1 = x2 = y1 = y2 = 0.0
    for i, v in enumerate(x):
        o = b[0] * v + b[1] * x1 + b[2] * x2 - a1 * y1 - a2 * y2
        x2, x1, y2, y1, y[i] = x1, v, y1, o, o
    n = len(y) // 160
    return 10 * np.log10((y[:n * 160].reshape(n, 160) ** 2).mean(1) + 1e-12)


def reference_pauses(level, min_pause, half=250, share=0.35):
    n = len(level)
    smooth = np.array([level[max(0, i - 1):i + 2].max() for i in range(n)])
    quiet = np.zeros(n, bool)
    for i in range(n):
        around = level[max(0, i - half):i + half]
        noise, speech = np.quantile(around, 0.1), np.quantile(around, 0.9)
        quiet[i] = smooth[i] < noise + share * (speech - noise)
    pauses, i = [], 0
    while i < n:
        j = i
        while j < n and quiet[j] == quiet[i]:
            j += 1
        if quiet[i] and j - i >= min_pause * 100 and i > 0 and j < n:
            pauses.append((i / 100, j / 100))
        i = j
    return pauses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--min-pause", type=float, default=0.6)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    for path in args.files:
        level = levels(path)
        pauses = reference_pauses(level, args.min_pause)
        turns = detect(args.cli, args.model, path)
        end_of_file = len(level) / 100
        gaps = [(a[1], b[0]) for a, b in zip(turns, turns[1:])]
        found = [p for p in pauses if any(g0 < p[1] and g1 > p[0] for g0, g1 in gaps)]
        # A pause after the last turn's end also counts (the file ends in it).
        if turns and turns[-1][1] is not None:
            found += [p for p in pauses if p not in found and p[1] > turns[-1][1]]
        print(f"{os.path.basename(path)} ({end_of_file:.1f} s): {len(turns)} turns, "
              f"{len(found)}/{len(pauses)} reference pauses >= {args.min_pause} s found")
        print("  reference pauses: " + ", ".join(f"{a:.2f}-{b:.2f}" for a, b in pauses))
        print("  turns: " + ", ".join(f"{a:.2f}-{'open' if b is None else f'{b:.2f}'}" for a, b in turns))
        missed = [p for p in pauses if p not in found]
        if missed:
            print("  missed: " + ", ".join(f"{a:.2f}-{b:.2f}" for a, b in missed))
        for g0, g1 in gaps:
            if any(g0 < p[1] and g1 > p[0] for p in pauses):
                continue
            inside = level[int(g0 * 100):int(g1 * 100)]
            around = level[max(0, int(g0 * 100) - 200):int(g1 * 100) + 200]
            print(f"  gap {g0:.2f}-{g1:.2f} outside the reference pauses: median {np.median(inside):.1f} dBFS, "
                  f"speech around it (90th percentile) {np.quantile(around, 0.9):.1f} dBFS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
