"""Recording conditions for synthetic speech: room reverberation, background noise, gain.

All of it is numpy and seeded by the caller's generator, so a corpus plan gives the same audio
on any machine (up to the last bit of FFT rounding).

Reverberation is a synthetic room impulse response: the direct sound, then Gaussian noise
under an exponential decay whose RT60 (the time to fall by 60 dB) is drawn per utterance; a
late onset and a low-pass of the tail (absorption rises with frequency) keep it room-like. The
impulse response starts at the direct sound, so word times do not move; the tail only smears
each word into the next, as in a real room.
"""
import numpy as np

RATE = 16000


def room_impulse_response(rng, rt60, direct_to_reverb_db):
    n = int(RATE * min(1.2 * rt60, 1.0))
    t = np.arange(n) / RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # -60 dB at t = rt60
    tail[: int(RATE * rng.uniform(0.002, 0.015))] = 0.0  # first reflections arrive a little late
    # One-pole low-pass: high frequencies die out faster in a real room.
    a = rng.uniform(0.2, 0.7)
    tail = _one_pole(tail, a)
    tail *= np.sqrt(10 ** (-direct_to_reverb_db / 10) / (np.sum(tail ** 2) + 1e-12))
    tail[0] += 1.0
    return tail.astype(np.float32)


def _one_pole(x, a):
    """y[n] = (1 - a) x[n] + a y[n-1], through the FFT (exact for a decayed filter length)."""
    k = int(np.ceil(np.log(1e-6) / np.log(a))) if a > 0 else 1
    h = (1 - a) * a ** np.arange(k)
    return fft_convolve(x, h)[: len(x)]


def fft_convolve(x, h):
    n = len(x) + len(h) - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


def reverberate(audio, rng, rt60, direct_to_reverb_db):
    """Same length as audio: the tail past the end is cut (the utterance ends in silence)."""
    return fft_convolve(audio, room_impulse_response(rng, rt60, direct_to_reverb_db))[: len(audio)].astype(np.float32)


def noise(rng, n, kind):
    """Unit-power noise: white, pink (1/f), brown (1/f^2) or mains hum with harmonics."""
    if kind == "hum":
        t = np.arange(n) / RATE
        f0 = rng.choice([50.0, 60.0])
        x = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 6))
        x = x + 0.1 * rng.standard_normal(n)
    else:
        x = rng.standard_normal(n)
        if kind != "white":
            power = {"pink": 0.5, "brown": 1.0}[kind]
            spectrum = np.fft.rfft(x)
            f = np.arange(len(spectrum), dtype=np.float64)
            f[0] = 1.0
            x = np.fft.irfft(spectrum / f ** power, n)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def condition(rng):
    """Draws one utterance's recording conditions (a dict, stored in the manifest)."""
    c = {"gain": float(np.exp(rng.uniform(np.log(0.15), np.log(1.2)))),
         "noise": str(rng.choice(["white", "white", "pink", "brown", "hum"])),
         "snr_db": float(rng.uniform(10.0, 45.0))}
    if rng.random() < 0.5:
        c["rt60"] = float(rng.uniform(0.15, 0.9))
        c["drr_db"] = float(rng.uniform(-3.0, 12.0))
    return c


def apply(audio, speech, rng, c):
    """audio: float32 speech; speech: (first, last) sample of the words, where the SNR is measured."""
    if "rt60" in c:
        audio = reverberate(audio, rng, c["rt60"], c["drr_db"])
    audio = audio * c["gain"]
    power = float(np.mean(audio[speech[0]:speech[1]] ** 2)) + 1e-12
    audio = audio + noise(rng, len(audio), c["noise"]) * np.sqrt(power / 10 ** (c["snr_db"] / 10))
    return audio
