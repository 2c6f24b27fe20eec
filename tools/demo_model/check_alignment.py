#!/usr/bin/env python3
"""Checks the word spans that espeak_api.py takes from espeak-ng's events against the audio.

1. Pauses: every phrase is also spoken with a pause between words (espeak-ng's word gap), so
   each word's sound is an island of energy. The span from the events must hold the island:
   we measure, per word, the first and last sample above -34 dBFS between the neighbouring
   words' spans against the span's start and end.
2. Connected speech: the same phrase without pauses. The spans must tile the phrase (no
   sample between one word's span and the next) and hold its first and last loud sample; each
   word's duration is compared with (1) (espeak-ng lengthens a word before a pause, so they
   differ: the events follow the synthesizer's own timing in both).
3. Joined words ("on the"): the split by phoneme counts is checked the same way in (1).

Seeded phrases: random vocabulary words and domain sentences, training voices (less those with
an echo) and rates.
  tools/demo_model/check_alignment.py --phrases 300
prints the error distributions in ms and fails if the end of a word (what the training
targets use) is off by more than --tolerance-ms for more than 5% of words.
"""
import argparse
import os
import random
import sys

import numpy as np

import corpus
import espeak_api

MS = espeak_api.SOURCE_RATE / 1000.0
DATA = os.environ.get("ESPEAK_DATA_PATH", "/usr/lib/x86_64-linux-gnu") + "/espeak-ng-data/voices/!v/"


def has_echo(variant):
    """Variants with an echo (e.g. m2: 130 ms at 15%) put sound into the pauses: their words'
    islands are not where the words are, so this check leaves them out."""
    try:
        return any(line.split()[:1] == ["echo"] for line in open(DATA + variant, errors="replace"))
    except (FileNotFoundError, IsADirectoryError):  # "" is the accent's own voice: no echo
        return False


def islands(audio, spans, threshold):
    """First and last loud sample of each word between its neighbours' spans."""
    loud = np.abs(audio.astype(np.float32)) > threshold
    out = []
    for i, (s, e) in enumerate(spans):
        lo = spans[i - 1][1] if i else 0
        hi = spans[i + 1][0] if i + 1 < len(spans) else len(audio)
        idx = np.flatnonzero(loud[lo:hi])
        out.append((lo + idx[0], lo + idx[-1] + 1) if len(idx) else (s, s))
    return out, loud


def stats(name, values):
    v = np.abs(np.asarray(values)) / MS
    print(f"{name}: n={len(v)} median {np.median(v):.1f} ms, p95 {np.percentile(v, 95):.1f} ms, max {v.max():.1f} ms")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phrases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--gap", type=int, default=20, help="espeak-ng word gap, in 10 ms units")
    ap.add_argument("--tolerance-ms", type=float, default=25.0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    synth = espeak_api.Synth.get()
    start_err, end_err, dur_diff, joined, outside, total_loud = [], [], [], 0, 0, 0
    c_edges, gaps = [], 0
    for _ in range(args.phrases):
        words = corpus.random_words(rng, 3, 8) if rng.random() < 0.5 else corpus.grammar_sentence(rng)
        voice = corpus._voice(rng, corpus.ACCENTS_TRAIN, [v for v in corpus.VARIANTS_TRAIN_CONNECTED if not has_echo(v)])
        rate, pitch = rng.choice(corpus.RATES_TRAIN_CONNECTED), rng.randint(20, 80)
        count = lambda w: synth.phoneme_count(w, voice, rate)  # noqa: E731
        audio, events = synth.speak(" ".join(words), voice, rate, pitch, 50, word_gap=args.gap)
        spans = espeak_api.word_spans(events, words, len(audio), count)
        joined += len(words) - sum(1 for e in events if e[0] == espeak_api.EVENT_WORD)
        threshold = 0.02 * np.abs(audio).max()
        found, loud = islands(audio, spans, threshold)
        for (s, e), (on, off) in zip(spans, found):
            start_err.append(on - s)
            end_err.append(off - e)
        inside = np.zeros(len(audio), bool)
        for s, e in spans:
            inside[s:e] = True
        outside += int(np.sum(loud & ~inside))
        total_loud += int(np.sum(loud))
        c_audio, c_events = synth.speak(" ".join(words), voice, rate, pitch, 50)
        c_spans = espeak_api.word_spans(c_events, words, len(c_audio), count)
        dur_diff += [(ce - cs) - (e - s) for (cs, ce), (s, e) in zip(c_spans, spans)]
        c_loud = np.flatnonzero(np.abs(c_audio.astype(np.float32)) > 0.02 * np.abs(c_audio).max())
        c_edges += [c_loud[0] - c_spans[0][0], c_loud[-1] + 1 - c_spans[-1][1]]
        gaps += sum(b[0] - a[1] for a, b in zip(c_spans, c_spans[1:]))
    print(f"{args.phrases} phrases, {len(end_err)} words ({joined} in joined pairs), word gap {args.gap * 10} ms")
    print(f"loud samples outside every word span: {outside} of {total_loud} ({100 * outside / total_loud:.3f}%)")
    stats("start: first loud sample - span start (positive: a plosive's closure)", start_err)
    print(f"  starts before the span (sound cut off): {sum(1 for x in start_err if x < 0)}")
    ends = stats("end: last loud sample - span end", end_err)
    print(f"  ends after the span (sound cut off): {sum(1 for x in end_err if x > 0)}")
    stats("connected vs paused duration of a word", dur_diff)
    print(f"connected: samples between one word's span and the next: {gaps}")
    stats("connected: phrase's first/last loud sample - first start/last end", c_edges)
    print(f"  of which outside the spans: {sum(1 for i, x in enumerate(c_edges) if (x < 0 if i % 2 == 0 else x > 0))}")
    over = float(np.mean(ends > args.tolerance_ms))
    print(f"ends off by more than {args.tolerance_ms} ms: {100 * over:.2f}% of words")
    return 1 if over > 0.05 or outside > 0.01 * total_loud else 0


if __name__ == "__main__":
    sys.exit(main())
