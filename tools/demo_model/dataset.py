"""The demo corpus as training sequences and streaming targets; numpy only, so it can be checked
on a machine without torch (check_dataset.py) and used by train.py on the GPU machine.

Targets follow docs/MODEL.md's streaming format: the prompt is [BOS] + [STREAMING_PAD] x
(LEFT_PAD_POSITIONS + N_DELAY), there is one target per 80 ms position, a word's token sits
N_DELAY positions after the position holding the word's last sample, every other position is
[STREAMING_PAD]. The constants equal tools/reference/make_fixtures.py's (train.py asserts it).
"""
import json
import os

import numpy as np

import corpus

SAMPLES_PER_POSITION = 1280
LEFT_PAD_POSITIONS = 32
RIGHT_EXTRA_POSITIONS = 10
NUM_SPECIAL = 1000
BOS, STREAMING_PAD = 1, 32
N_DELAY = 6  # 480 ms, the real model's default
PROMPT_LEN = 1 + LEFT_PAD_POSITIONS + N_DELAY
FIRST_OUTPUT = PROMPT_LEN - 1


def token_table():
    """Byte tokens, then one token per domain word with its leading space (as tekken does)."""
    toks = [bytes([b]) for b in range(256)] + [(" " + w).encode() for w in corpus.VOCABULARY]
    word_ids = {w: NUM_SPECIAL + 256 + i for i, w in enumerate(corpus.VOCABULARY)}
    return toks, word_ids


def word_tokens(word, word_ids):
    if word in word_ids:
        return [word_ids[word]]
    return [NUM_SPECIAL + b for b in (" " + word).encode()]


def pad_offline(samples, n_delay=N_DELAY):
    """float32 samples with the offline schedule's left and right padding (docs/MODEL.md)."""
    n = len(samples)
    right = (-n) % SAMPLES_PER_POSITION + (n_delay + 1 + RIGHT_EXTRA_POSITIONS) * SAMPLES_PER_POSITION
    return np.concatenate([np.zeros(LEFT_PAD_POSITIONS * SAMPLES_PER_POSITION, np.float32), samples,
                           np.zeros(right, np.float32)])


def labels_for(words, n_positions, word_ids):
    """Target id per position: each word's tokens from N_DELAY positions after its last sample;
    when two words would share a position (joined words end together), the later one moves on."""
    labels = np.full(n_positions, STREAMING_PAD, np.int64)
    free = 0
    for w, _, end in sorted(words, key=lambda x: x[2]):
        p = max(LEFT_PAD_POSITIONS + (end - 1) // SAMPLES_PER_POSITION + N_DELAY, free)
        for t in word_tokens(w, word_ids):
            if p >= n_positions:
                raise ValueError(f"target past the end of the audio ({w} at {p} of {n_positions})")
            labels[p] = t
            p += 1
        free = p
    return labels


class Corpus:
    """corpus.py's output: manifest.jsonl and the int16 audio shards."""

    def __init__(self, path):
        self.items = [json.loads(line) for line in open(os.path.join(path, "manifest.jsonl"))]
        shards = sorted({it["shard"] for it in self.items})
        starts, audio, at = {}, [], 0
        for s in shards:
            a = np.load(os.path.join(path, f"audio_{s:03d}.npy"))
            starts[s] = at
            audio.append(a)
            at += len(a)
        self.audio = np.concatenate(audio) if audio else np.zeros(0, np.int16)
        for it in self.items:
            it["start"] = starts[it["shard"]] + it["offset"]
            it.setdefault("set", "words" if it["split"] == "heldout" else "train")
        self.train = [it for it in self.items if it["split"] == "train"]
        self.heldout = [it for it in self.items if it["split"] == "heldout"]
        self.sets = {}
        for it in self.heldout:
            self.sets.setdefault(it["set"], []).append(it)

    def samples(self, it):
        return self.audio[it["start"]: it["start"] + it["samples"]]


def joined_sequence(data, rng, k):
    """k random training utterances end to end: (int16 samples, [[word, start, end], ...])."""
    parts, words, at = [], [], 0
    for it in rng.sample(data.train, k):
        a = data.samples(it)
        parts.append(a)
        words += [[w, s + at, e + at] for w, s, e in it["words"]]
        at += len(a)
    return np.concatenate(parts), words


def batch_arrays(sequences, word_ids, with_labels=True):
    """sequences: [(int16 samples, words)] -> padded float32 audio [B, S], positions per item,
    and (if with_labels) the labels [B, max positions] padded with STREAMING_PAD."""
    padded = [pad_offline(s.astype(np.float32) / 32768.0) for s, _ in sequences]
    n_pos = [len(p) // SAMPLES_PER_POSITION for p in padded]
    audio = np.zeros((len(padded), max(n_pos) * SAMPLES_PER_POSITION), np.float32)
    for i, p in enumerate(padded):
        audio[i, :len(p)] = p
    if not with_labels:
        return audio, n_pos, None
    n = max(n_pos)
    labels = np.stack([np.concatenate([labels_for(w, p, word_ids), np.full(n - p, STREAMING_PAD)])
                       for (_, w), p in zip(sequences, n_pos)])
    return audio, n_pos, labels


def training_arrays(data, rng, word_ids, utterances_per_batch):
    """One batch: sequences of 1, 2, 4 or 8 utterances (so both attention windows fill), about
    utterances_per_batch utterances in all; returns (audio, labels, input ids) as numpy arrays."""
    k = rng.choices([1, 2, 4, 8], weights=[0.3, 0.3, 0.25, 0.15])[0]
    sequences = [joined_sequence(data, rng, k) for _ in range(max(1, utterances_per_batch // k))]
    audio, _, labels = batch_arrays(sequences, word_ids)
    ids = np.full_like(labels, STREAMING_PAD)
    ids[:, 0] = BOS
    ids[:, PROMPT_LEN:] = labels[:, FIRST_OUTPUT:-1]
    return audio, labels, ids
