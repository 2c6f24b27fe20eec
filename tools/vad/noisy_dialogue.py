#!/usr/bin/env python3
"""Turn detection on a recorded-like dialogue: espeak-ng turns (connected phrases, word times
from libespeak-ng's synthesis events, tools/demo_model/espeak_api.py) over room noise that is
not steady (pink plus brown noise, its level drifting by a few dB), with breath-like bursts
(band-limited noise under a smooth 250-450 ms envelope, 25-32 dB below the speech, as
inhales at a normal distance from the microphone are: at most 8 dB over the noise, under
the detector's 12 dB start margin) in the pauses inside turns and before some turns, where
a talker inhales. Everything is drawn from a fixed seed, so the audio and its truth are the
same on every run. (The detector before the percentile floor merged two of its turns.)

Each turn is two phrases 200-350 ms apart (a pause inside the turn, often with a breath);
turns are 0.7-1.6 s apart. The file goes through `voxtral --vad --debug` (the CLI's turn
detection, runtime/voice_activity.h, at its defaults: threshold 0.5, silence 500 ms) and the
detected edges ("speech starts/ends at") are compared with the first word's start and the
last word's end of each turn.

  tools/vad/noisy_dialogue.py --cli build/src/voxtral [--seed 1] [--keep out.wav] [--check]
--check exits 1 unless every turn is found once and every edge is within --tolerance (0.15 s).
"""
import argparse
import os
import random
import sys
import tempfile
import wave

import numpy as np

from cli_turns import detect

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "demo_model"))
import corpus  # noqa: E402
import espeak_api  # noqa: E402

RATE = corpus.RATE  # 16 kHz


def phrase(words, voice, speed, pitch):
    """libespeak-ng speaking the words as one phrase: 16 kHz float audio, word spans in seconds."""
    audio, spans = espeak_api.Synth.get().speak_words(words, voice, speed, pitch)
    scale = RATE / espeak_api.SOURCE_RATE
    return corpus.resample(audio.astype(np.float32) / 32768.0, espeak_api.SOURCE_RATE), \
        [(s * scale / RATE, e * scale / RATE) for s, e in spans]


def coloured_noise(n, exponent, gen):
    """Noise whose power falls as 1/f^exponent (1: pink, 2: brown), unit RMS, above 20 Hz."""
    spectrum = np.fft.rfft(gen.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum *= np.where(f > 20, 1 / np.maximum(f, 20) ** (exponent / 2), 0)
    x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x ** 2))


def breath(seconds, gen):
    """An inhale: noise band-limited to 400-4000 Hz (the air in the throat and mouth), under a
    rising-then-falling envelope; unit peak RMS."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(gen.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spectrum *= (f > 400) & (f < 4000)
    x = np.fft.irfft(spectrum, n)
    x /= np.sqrt(np.mean(x ** 2))
    t = np.linspace(0, 1, n)
    return x * np.sin(np.pi * t) ** 2 / np.sqrt(0.375)  # sin^4's mean is 3/8: the peak RMS is 1


def rms_db(x):
    return 10 * np.log10(np.mean(x ** 2) + 1e-20)


def dialogue(seed):
    """(float audio at 16 kHz, turns [(first word start, last word end)] in seconds, breaths
    [(start, end)])."""
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    voices = ["en-us+m3", "en-gb+f2"]
    pieces, turns, breaths, at = [np.zeros(int(0.8 * RATE), np.float32)], [], [], 0.8
    speech_db = -22.0
    for k in range(4):
        spans = []
        for p in range(2):
            words = []
            while len(words) < 3:
                words = corpus.grammar_sentence(rng)
            audio, word_spans = phrase(words, voices[k % 2], rng.choice([150, 165, 180]), rng.randint(35, 65))
            audio = audio * 10 ** ((speech_db + rng.uniform(-3, 3) - rms_db(audio)) / 20)
            spans += [(at + s, at + e) for s, e in word_spans]
            pieces.append(audio)
            at += len(audio) / RATE
            if p == 0:  # the pause inside the turn, most with a breath in it
                gap = rng.uniform(0.2, 0.35)
                pause = np.zeros(int(gap * RATE))
                if rng.random() < 0.7:
                    b = breath(gap * 0.8, gen) * 10 ** ((speech_db - rng.uniform(25, 32)) / 20)
                    pause[int(0.1 * gap * RATE):int(0.1 * gap * RATE) + len(b)] += b
                    breaths.append((at + 0.1 * gap, at + 0.1 * gap + len(b) / RATE))
                pieces.append(pause)
                at += len(pause) / RATE
        turns.append((spans[0][0], spans[-1][1]))
        gap = rng.uniform(0.7, 1.6)
        pause = np.zeros(int(gap * RATE))
        if rng.random() < 0.6:  # an inhale before the next turn, 100-200 ms before it
            seconds = rng.uniform(0.25, 0.45)
            b = breath(seconds, gen) * 10 ** ((speech_db - rng.uniform(25, 32)) / 20)
            begin = len(pause) - len(b) - int(rng.uniform(0.1, 0.2) * RATE)
            pause[begin:begin + len(b)] += b
            breaths.append((at + begin / RATE, at + (begin + len(b)) / RATE))
        pieces.append(pause)
        at += len(pause) / RATE
    pieces.append(np.zeros(RATE))
    audio = np.concatenate(pieces)
    # Room noise: pink plus brown, 30 dB under the speech above 100 Hz (where the detector
    # listens: the brown part's rumble is mostly below), drifting +-3 dB over seconds.
    noise = coloured_noise(len(audio), 1, gen) + 0.7 * coloured_noise(len(audio), 2, gen)
    spectrum = np.fft.rfft(noise)
    spectrum[np.fft.rfftfreq(len(noise), 1 / RATE) < 100] = 0
    in_band_db = rms_db(np.fft.irfft(spectrum, len(noise)))
    drift = 3 * np.sin(2 * np.pi * np.arange(len(audio)) / RATE / 5.3 + gen.uniform(0, 6.3))
    audio = audio + noise * 10 ** ((speech_db - 30 - in_band_db + drift) / 20)
    return audio.astype(np.float32), turns, breaths


def write_wav(path, audio):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2").tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True, help="the voxtral binary")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=0.15)
    ap.add_argument("--keep", help="also write the audio here")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    audio, truth, breaths = dialogue(args.seed)
    if args.keep:
        write_wav(args.keep, audio)
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "dialogue.wav")
        write_wav(wav, audio)
        found = detect(args.cli, args.model, wav)
    print(f"seed {args.seed}: {len(truth)} turns, {len(breaths)} breaths at "
          + ", ".join(f"{a:.2f}-{b:.2f}" for a, b in breaths))
    errors = []
    for k, (start, end) in enumerate(truth):
        hits = [f for f in found if f[0] < end + 0.3 and (f[1] is None or f[1] > start - 0.3)]
        line = f"turn {k}: true {start:.2f}-{end:.2f} s, detected " + \
               ", ".join(f"{a:.2f}-{b if b is None else f'{b:.2f}'}" for a, b in hits)
        if len(hits) == 1 and hits[0][1] is not None:
            errors += [hits[0][0] - start, hits[0][1] - end]
            line += f" (errors {hits[0][0] - start:+.3f}, {hits[0][1] - end:+.3f} s)"
        print(line)
    ok = len(found) == len(truth) and len(errors) == 2 * len(truth) and all(abs(e) <= args.tolerance for e in errors)
    print(f"detected {len(found)} turns; largest edge error "
          f"{max(map(abs, errors), default=float('nan')):.3f} s (tolerance {args.tolerance} s)")
    if args.check:
        print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
