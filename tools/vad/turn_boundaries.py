#!/usr/bin/env python3
"""Measures the server's turn detection on espeak-ng dialogues whose pauses and word times are
known: each dialogue is a few turns of the demo model's domain (commands, numbers, digit
strings) in two voices, with a pause of known length between turns, over a constant noise bed.
Half the dialogues are connected speech, word times from libespeak-ng's synthesis events
(tools/demo_model/espeak_api.py); half are words spoken one by one 30-200 ms apart, as the
samples are (tools/demo_model/corpus.py), whose times are known by construction and whose
gaps inside a turn test splitting. (The demo model transcribes the second style; it was not
made for this machine's libespeak-ng phrases, so their transcripts are reported, not checked.)

Each dialogue goes to voxtral-server's /v1/realtime as an OpenAI transcription session (24 kHz
PCM, server_vad), as fast as the socket takes it, twice:
  - with prefix_padding_ms 0, so speech_started.audio_start_ms is the detected start of speech
    and speech_stopped.audio_end_ms - silence_duration_ms its detected end (within one 10 ms
    frame): the boundaries, compared with the first word's start and the last word's end;
  - with the defaults (300 ms of padding): the transcripts, compared with the turns' words.
A turn split inside a word shows as more detected turns than spoken, or a boundary inside a
word's span; both are counted.

  tools/vad/turn_boundaries.py --server build/src/voxtral-server --dialogues 20 [--check]
  (needs espeak-ng, python3-numpy and python3-websockets, as scripts/setup.sh installs)
--check exits 1 unless every turn is found once, within --tolerance seconds (0.3), no
boundary falls inside a word, and every word-by-word turn's transcript is its words.
"""
import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import sys

import numpy as np
import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "demo_model"))
sys.path.insert(0, os.path.join(ROOT, "tests", "realtime_clients"))
import corpus  # noqa: E402
import espeak_api  # noqa: E402
from server_process import Server  # noqa: E402

RATE = 24000  # OpenAI's PCM rate: the server resamples
PAUSES = [0.7, 0.9, 1.2, 1.5, 2.0]  # seconds between turns
SILENCE_MS = 500


def connected(words, voice, speed, pitch):
    """libespeak-ng speaking the words as one phrase: 16 kHz audio, word spans in seconds."""
    audio, spans = espeak_api.Synth.get().speak_words(words, voice, speed, pitch)
    scale = corpus.RATE / espeak_api.SOURCE_RATE
    return corpus.resample(audio.astype(np.float32) / 32768.0, espeak_api.SOURCE_RATE), \
        [(s * scale / corpus.RATE, e * scale / corpus.RATE) for s, e in spans]


def word_by_word(words, voice, speed, pitch, rng):
    """Each word spoken alone (espeak-ng, its silence trimmed), 30 to 200 ms apart, as the
    samples are made (tools/demo_model/corpus.py): 16 kHz audio, word spans in seconds."""
    pieces, spans, at = [], [], 0
    for w in words:
        clip = corpus.espeak(w, voice, speed, pitch)
        spans.append((at / corpus.RATE, (at + len(clip)) / corpus.RATE))
        gap = np.zeros(rng.randint(int(0.03 * corpus.RATE), int(0.2 * corpus.RATE)), np.float32)
        pieces += [clip, gap]
        at += len(clip) + len(gap)
    return np.concatenate(pieces), spans


def dialogue(seed, noise=(-65, -50)):
    """(int16 audio at RATE, turns: [{"text", "words": [[word, start, end], ...]}], style) for
    one seed: odd seeds speak word by word, even seeds in connected phrases."""
    rng = random.Random(seed)
    style = "words" if seed % 2 else "connected"
    voices = [f"{rng.choice(corpus.ACCENTS_TRAIN)}+{v}" for v in rng.sample(["m1", "m3", "f2", "f3", "m7", "f4"], 2)]
    speeds = [rng.choice([130, 150, 165, 180]) for _ in voices]
    lead = 0.8
    pieces, turns, at = [np.zeros(int(lead * corpus.RATE), np.float32)], [], lead
    for k in range(rng.randint(3, 5)):
        words = []
        while len(words) < 3:
            words = corpus.grammar_sentence(rng)
        pitch = rng.randint(35, 65)
        speech, spans = (word_by_word(words, voices[k % 2], speeds[k % 2], pitch, rng) if style == "words"
                         else connected(words, voices[k % 2], speeds[k % 2], pitch))
        turns.append({"text": " ".join(words), "words": [[w, at + s, at + e] for w, (s, e) in zip(words, spans)]})
        pause = rng.choice(PAUSES)
        pieces += [speech * rng.uniform(0.4, 1.0), np.zeros(int(pause * corpus.RATE), np.float32)]
        at += len(speech) / corpus.RATE + int(pause * corpus.RATE) / corpus.RATE
    pieces.append(np.zeros(corpus.RATE, np.float32))
    audio = np.concatenate(pieces)
    # To OpenAI's 24 kHz by the spectrum (band-limited), then a constant noise bed.
    n = len(audio) * RATE // corpus.RATE
    audio = np.fft.irfft(np.fft.rfft(audio), n) * (n / len(audio))
    noise_db = rng.uniform(*noise)
    audio += np.random.default_rng(seed).standard_normal(len(audio)) * 10 ** (noise_db / 20)
    return np.round(np.clip(audio, -1, 32767 / 32768) * 32768).astype("<i2"), turns, style


async def session(url, audio, padding_ms):
    """The turn events of one session: [{"start", "end", "transcript"}] in seconds."""
    async with websockets.connect(url + "/v1/realtime?intent=transcription", max_size=1 << 24) as ws:
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": RATE},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": padding_ms,
                               "silence_duration_ms": SILENCE_MS}}}}}))
        data = audio.tobytes()
        piece = RATE // 10 * 2
        for at in range(0, len(data), piece):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(data[at:at + piece]).decode()}))
        # A commit after the audio: refused as empty once the last turn has ended by itself,
        # its error marks where the turn events end; then each turn's transcript is awaited.
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "end_of_audio"}))
        turns, open_turns, started, ended = [], {}, 0, False
        while not ended or len(turns) < started:
            event = json.loads(await asyncio.wait_for(ws.recv(), 120))
            kind = event["type"]
            if kind == "error":
                if event["error"]["event_id"] == "end_of_audio" and event["error"]["code"] == "input_audio_buffer_commit_empty":
                    ended = True
                    continue
                raise RuntimeError(f"error event: {event}")
            if kind == "input_audio_buffer.committed" and "end" not in open_turns.get(event["item_id"], {"end": 0}):
                ended = True  # a turn still open at the end of the audio, committed by us
            if kind == "input_audio_buffer.speech_started":
                started += 1
                open_turns[event["item_id"]] = {"start": event["audio_start_ms"] / 1000 + padding_ms / 1000}
            elif kind == "input_audio_buffer.speech_stopped":
                open_turns[event["item_id"]]["end"] = (event["audio_end_ms"] - SILENCE_MS) / 1000
            elif kind == "conversation.item.input_audio_transcription.completed":
                turn = open_turns.pop(event["item_id"])
                turn["transcript"] = event["transcript"]
                turns.append(turn)
        return turns


def inside_a_word(t, turns, own_word):
    """Whether a detected edge at `t` splits a word (more than 20 ms from its edges): any word
    but `own_word` ((turn, word index): the turn's own first word for its start, last word for
    its end, where an edge found early or late is a boundary error, measured as such, and cuts
    nothing: the turn's audio runs from its padding to its silence)."""
    return any(s + 0.02 < t < e - 0.02 for k, turn in enumerate(turns) for i, (_, s, e) in enumerate(turn["words"])
               if (k, i) != own_word)


async def measure(url, seeds, noise):
    rows = []
    for seed in seeds:
        audio, truth, style = dialogue(seed, noise)
        bounds = await session(url, audio, 0)
        texts = await session(url, audio, 300)
        row = {"seed": seed, "style": style, "turns": len(truth), "found": len(bounds), "found_padded": len(texts), "start_errors": [],
               "end_errors": [], "inside_word": 0, "exact_transcripts": 0}
        row["inside_word"] = sum(inside_a_word(b["start"], truth, (k, 0)) +
                                 inside_a_word(b.get("end", 1e9), truth, (k, len(truth[min(k, len(truth) - 1)]["words"]) - 1))
                                 for k, b in enumerate(bounds))
        if len(bounds) == len(truth):
            for b, t in zip(bounds, truth):
                row["start_errors"].append(b["start"] - t["words"][0][1])
                row["end_errors"].append(b["end"] - t["words"][-1][2])
        if len(texts) == len(truth):
            row["exact_transcripts"] = sum(x["transcript"] == t["text"] for x, t in zip(texts, truth))
        rows.append(row)
        errors = [abs(e) for e in row["start_errors"] + row["end_errors"]]
        print(f"dialogue {seed} ({style}): {len(truth)} turns, found {len(bounds)} (padded {len(texts)}), "
              f"largest boundary error {max(errors, default=float('nan')):.3f} s, "
              f"{row['inside_word']} inside a word, {row['exact_transcripts']} exact transcripts", flush=True)
    return rows


def summary(rows, tolerance):
    starts = [e for r in rows for e in r["start_errors"]]
    ends = [e for r in rows for e in r["end_errors"]]
    turns = sum(r["turns"] for r in rows)
    both = [abs(e) for e in starts + ends]
    within = sum(x <= tolerance for x in both)
    out = {
        "dialogues": len(rows), "turns": turns,
        "turns_found_once": sum(r["turns"] for r in rows if r["found"] == r["turns"]),
        "boundaries_within_tolerance": f"{within}/{len(both)}",
        "start_error_s": {"median": statistics.median(starts), "max_abs": max(map(abs, starts))} if starts else None,
        "end_error_s": {"median": statistics.median(ends), "max_abs": max(map(abs, ends))} if ends else None,
        "boundaries_inside_a_word": sum(r["inside_word"] for r in rows),
        "exact_transcripts": {style: f"{sum(r['exact_transcripts'] for r in rows if r['style'] == style)}/"
                                     f"{sum(r['turns'] for r in rows if r['style'] == style)}"
                              for style in ("words", "connected")},
    }
    ok = (out["turns_found_once"] == turns and within == len(both) == 2 * turns and out["boundaries_inside_a_word"] == 0
          and all(r["found_padded"] == r["turns"] for r in rows)
          and all(r["exact_transcripts"] == r["turns"] for r in rows if r["style"] == "words"))
    return out, ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", required=True, help="the voxtral-server binary (started on the demo model)")
    ap.add_argument("--dialogues", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tolerance", type=float, default=0.3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--noise", type=float, nargs=2, default=(-65, -50), metavar=("LOW", "HIGH"),
                    help="the noise bed's level, dBFS RMS, drawn per dialogue (speech is about -20 dBFS)")
    args = ap.parse_args()
    with Server(args.server, ROOT) as server:
        rows = asyncio.run(measure("ws://" + server.authority, range(args.seed, args.seed + args.dialogues), args.noise))
    out, ok = summary(rows, args.tolerance)
    print(json.dumps(out, indent=1))
    if args.check:
        print(f"{1 if ok else 0} passed, {0 if ok else 1} failed")
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
