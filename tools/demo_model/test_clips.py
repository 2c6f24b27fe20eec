#!/usr/bin/env python3
"""Copies a few held-out utterances and what transformers made of them into tests/fixtures/demo,
for the CI test of the demo model. Only utterances whose audio here is bit-identical to the audio
transformers transcribed on the GPU machine qualify (numpy's FFT may round the resampled
espeak-ng output differently on another machine), so the test compares like with like.
  tools/demo_model/test_clips.py --heldout /tmp/heldout --ids heldout-00060 heldout-00483 ...
  tools/demo_model/test_clips.py --heldout /tmp/heldout --per-set 4 --name connected.json   # connected sets
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import wave

HERE = os.path.dirname(os.path.abspath(__file__))


def _digest(wav):
    with wave.open(wav) as w:
        return hashlib.sha256(w.readframes(w.getnframes())).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--heldout", required=True, help="corpus.py --train 0 --heldout 600 --wavs heldout output")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "heldout_transformers.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "fixtures", "demo"))
    ap.add_argument("--ids", nargs="+", default=[])
    ap.add_argument("--per-set", type=int, default=0,
                    help="instead of --ids: the first N bit-identical clips of each set in --sets")
    ap.add_argument("--sets", nargs="+", default=["sentences", "voices", "rates", "random"])
    ap.add_argument("--name", default="heldout.json", help="the clip list's file name in --out")
    args = ap.parse_args()
    hyps = json.load(open(args.results))["hypotheses"]
    manifest = {}
    for line in open(os.path.join(args.heldout, "manifest.jsonl")):
        it = json.loads(line)
        manifest[it["id"]] = it
    if args.per_set:
        for name in args.sets:
            ids = [u for u, it in manifest.items() if it.get("set") == name and u in hyps and
                   _digest(os.path.join(args.heldout, "wav", u + ".wav")) == hyps[u]["audio_sha256"]]
            args.ids += ids[:args.per_set]
    os.makedirs(args.out, exist_ok=True)
    clips = []
    for uid in args.ids:
        wav = os.path.join(args.heldout, "wav", uid + ".wav")
        if _digest(wav) != hyps[uid]["audio_sha256"]:
            raise SystemExit(f"{wav}: not the audio transformers transcribed")
        shutil.copy(wav, os.path.join(args.out, uid + ".wav"))
        clips.append({"audio": f"demo/{uid}.wav", "set": manifest[uid].get("set", "words"),
                      "reference": manifest[uid]["text"],
                      "transformers_text": hyps[uid]["text"], "transformers_ids": hyps[uid]["ids"]})
    with open(os.path.join(args.out, args.name), "w") as f:
        json.dump({"model": "models/demo", "delay_ms": 480, "clips": clips}, f, indent=1)
    print(f"wrote {len(clips)} clips to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
