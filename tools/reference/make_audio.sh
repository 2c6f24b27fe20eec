#!/usr/bin/env bash
# Regenerates the fixture clips in tests/fixtures/audio with espeak-ng and sox
# (Debian packages installed by scripts/setup.sh). Output: 16 kHz mono s16 WAV.
set -euo pipefail
out="$(cd "$(dirname "$0")/../.." && pwd)/tests/fixtures/audio"
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

speak() {  # name voice speed text
  espeak-ng -v "$2" -s "$3" -w "$tmp/$1.raw.wav" "$4"
  sox "$tmp/$1.raw.wav" -r 16000 -c 1 -b 16 "$out/$1.wav"
}

speak speech_short en 160 "Hello world. This is a short test of the voxtral engine."
speak speech_long en-us 150 "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."
# Seeded-repeatable white noise at -12 dBFS, 1.6 s.
sox -R -n -r 16000 -c 1 -b 16 "$out/noise.wav" synth 1.6 whitenoise vol 0.25
soxi "$out"/*.wav | grep -E "^Input File|Duration"
