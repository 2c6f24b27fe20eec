"""Shared fixtures of the Python package's tests: the demo model (models/demo, real words) and
the shipped samples with what espeak-ng spoke in them (samples/NAME.json: the text and every
word's true start and end, tools/demo_model/make_samples.py)."""

import json
import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

import voxtral

SOURCE = Path(os.environ.get("VOXTRAL_SOURCE_DIR", Path(__file__).resolve().parents[2]))
SAMPLES = ["timer", "lights", "numbers", "commands"]
BACKEND = os.environ.get("VOXTRAL_TEST_BACKEND", "cpu")


def sample_path(name: str) -> Path:
    return SOURCE / "samples" / f"{name}.wav"


def truth(name: str) -> dict:
    with open(SOURCE / "samples" / f"{name}.json") as f:
        return json.load(f)


def read_wav(path) -> tuple[np.ndarray, int]:
    """16-bit mono WAV as int16 samples and the rate (Python's wave module, not the engine's reader)."""
    with wave.open(str(path)) as f:
        assert f.getsampwidth() == 2 and f.getnchannels() == 1, path
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16), f.getframerate()


def sox_resampled(name: str, rate: int, tmp_path: Path) -> np.ndarray:
    """The sample at another rate, resampled by sox (an independent resampler)."""
    out = tmp_path / f"{name}-{rate}.wav"
    subprocess.run(["sox", str(sample_path(name)), "-r", str(rate), "-b", "16", str(out)], check=True)
    audio, got = read_wav(out)
    assert got == rate
    return audio


@pytest.fixture(scope="session")
def model():
    with voxtral.Model(SOURCE / "models" / "demo", backend=BACKEND, max_streams=4) as m:
        yield m
