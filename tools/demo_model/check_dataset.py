#!/usr/bin/env python3
"""Checks dataset.py (what train.py feeds the model) on a small corpus, without torch:
  tools/demo_model/corpus.py --out /tmp/c --train 300 --heldout 20 --heldout-per-set 5
  tools/demo_model/check_dataset.py --corpus /tmp/c
Every word of every sequence must come out as its token, in order, at the position computed
here from the manifest's word end (a position is 1280 samples; 32 positions of left padding;
a delay of 6), every other target must be [STREAMING_PAD], and the input ids must be the
targets one position later behind the prompt.
"""
import argparse
import random
import sys

import numpy as np

import dataset as ds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args()
    data = ds.Corpus(args.corpus)
    toks, word_ids = ds.token_table()
    styles = {(it["style"] if "style" in it else "words") for it in data.train}
    print(f"{len(data.train)} training utterances ({', '.join(sorted(styles))}), held-out sets "
          f"{ {k: len(v) for k, v in data.sets.items()} }")
    for it in data.items:
        assert len(data.samples(it)) == it["samples"], it["id"]
        assert all(0 <= s < e <= it["samples"] for _, s, e in it["words"]), it["id"]
        assert " ".join(w for w, _, _ in it["words"]) == it["text"], it["id"]
    rng = random.Random(1)
    checked = 0
    for _ in range(args.batches):
        k = rng.choice([1, 2, 4])
        sequences = [ds.joined_sequence(data, rng, k) for _ in range(3)]
        audio, n_pos, labels = ds.batch_arrays(sequences, word_ids)
        assert audio.shape[1] % 1280 == 0 and labels.shape == (3, max(n_pos))
        for (samples, words), row, n in zip(sequences, labels, n_pos):
            assert n * 1280 == 32 * 1280 + len(samples) + (-len(samples)) % 1280 + 17 * 1280
            want, free = {}, 0
            for w, _, end in sorted(words, key=lambda x: x[2]):
                p = max(32 + (end - 1) // 1280 + 6, free)
                want[p], free = word_ids[w], p + 1
            got = {p: int(t) for p, t in enumerate(row) if t != ds.STREAMING_PAD}
            assert got == want, (got, want)
            assert [toks[t - 1000].decode().strip() for _, t in sorted(got.items())] == \
                   [w for w, _, _ in sorted(words, key=lambda x: x[2])]
            checked += len(words)
    audio, labels, ids = ds.training_arrays(data, rng, word_ids, 16)
    assert (ids[:, 0] == ds.BOS).all() and (ids[:, 1:ds.PROMPT_LEN] == ds.STREAMING_PAD).all()
    assert np.array_equal(ids[:, ds.PROMPT_LEN:], labels[:, ds.FIRST_OUTPUT:-1])
    print(f"targets of {checked} words in {args.batches} batches as expected; input ids shift checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
