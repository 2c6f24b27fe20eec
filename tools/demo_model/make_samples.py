#!/usr/bin/env python3
"""Writes the demo WAVs shipped under samples/: espeak-ng speech of the demo domain in voices,
an accent and rates that training never saw, with each word's true start and end.

  apt-get install espeak-ng python3-numpy
  tools/demo_model/make_samples.py --out samples

For every sample NAME: NAME.wav (16 kHz mono 16-bit) and NAME.json ({"text", "words": [[word,
start_seconds, end_seconds], ...]}), which the end-to-end tests read.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402

# name, sentences (joined with a pause), voice, rate, pitch, seed
SAMPLES = [
    ("timer", ["set a timer for ten minutes"], "en-us+f5", 140, 50, 11),
    ("lights", ["turn on the kitchen lights"], "en-gb+m8", 205, 45, 12),
    ("numbers", ["four one five two", "nine hundred twelve"], "en-029+benjamin", 140, 55, 13),
    ("commands", ["set the temperature to twenty one degrees", "close the garage door", "play the music",
                  "add coffee to the shopping list", "volume down ten percent"], "en-gb-x-rp+Annie", 140, 50, 14),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="samples")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for name, sentences, voice, rate, pitch, seed in SAMPLES:
        pieces, words, at = [], [], 0
        for i, text in enumerate(sentences):
            _, _, _, pcm, spans = corpus.synthesize((name, "sample", text.split(), voice, rate, pitch, seed + i))
            pieces.append(pcm)
            words += [[w, round((s + at) / corpus.RATE, 4), round((e + at) / corpus.RATE, 4)] for w, s, e in spans]
            at += len(pcm)
        corpus.write_wav(os.path.join(args.out, name + ".wav"), np.concatenate(pieces))
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump({"text": " ".join(sentences), "voice": voice, "rate": rate, "words": words}, f, indent=1)
        print(f"{name}.wav: {at / corpus.RATE:.1f} s, {' / '.join(sentences)}")


if __name__ == "__main__":
    sys.exit(main())
