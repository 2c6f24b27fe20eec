#!/usr/bin/env python3
"""Writes a teacher-ids file (the PREFIX.ids format of `voxtral-bench run --dump-logits`) whose
tokens follow the pattern of speech: words of a few tokens, separated by pads. Random-weight
models emit no such pattern, so speculative decoding's benchmarks force one with
`voxtral-bench run --teacher FILE`: the cost of each step is what it would be on a real model
with that much text.

    token_pattern.py --out /tmp/fast.ids --seconds 20 --text-tokens-per-second 4.5
"""
import argparse
import random
import struct

PAD = 32           # [STREAMING_PAD]
POSITIONS_PER_SECOND = 12.5


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, required=True, help="audio length the pattern covers (padding included)")
    p.add_argument("--text-tokens-per-second", type=float, default=4.0,
                   help="text tokens a second (English speech at 150-180 words a minute: about 3.5-4.5)")
    p.add_argument("--tokens-per-word", type=float, default=1.3)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    rng = random.Random(a.seed)
    positions = int(a.seconds * POSITIONS_PER_SECOND) + 1
    words_per_position = a.text_tokens_per_second / a.tokens_per_word / POSITIONS_PER_SECOND
    ids = [PAD]  # the first entry is the prompt's last input; the tokens follow it
    while len(ids) < positions:
        if rng.random() < words_per_position:
            # A word: 1 token, or 2 with the probability that makes the mean tokens_per_word.
            n = 2 if rng.random() < a.tokens_per_word - 1 else 1
            ids.extend(1000 + rng.randrange(100000) for _ in range(n))
        else:
            ids.append(PAD)
    ids = ids[:positions]
    with open(a.out, "wb") as f:
        f.write(struct.pack("<%di" % len(ids), *ids))
    text = sum(1 for i in ids[1:] if i != PAD)
    print("%s: %d positions, %d text tokens (%.1f a second), pad share %.2f" % (
        a.out, len(ids) - 1, text, text / a.seconds, 1 - text / (len(ids) - 1)))


if __name__ == "__main__":
    main()
