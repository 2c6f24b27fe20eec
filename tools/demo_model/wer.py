#!/usr/bin/env python3
"""Word error rate of our engine on the demo model's held-out utterances.

Runs the `voxtral` CLI on every held-out WAV written by corpus.py --wavs heldout, scores it
against the manifest's text (overall and per held-out set: corpus.py's "set" field), and (given transformers' hypotheses from train.py) counts the
utterances where our transcript equals what transformers transcribes with the same weights.
Standard library only, so it runs anywhere the CLI does:
  tools/demo_model/corpus.py --out /tmp/heldout --train 0 --heldout 600 --wavs heldout
  tools/demo_model/wer.py --corpus /tmp/heldout --model models/demo --cli ./voxtral --backend cpu \
      --transformers tools/demo_model/results/heldout_transformers.json
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def word_errors(ref, hyp):
    """Levenshtein distance over words, and the reference length."""
    r, h = ref.split(), hyp.split()
    d = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(h) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r[i - 1] != h[j - 1]))
    return d[len(h)], len(r)


def transcribe(args, group):
    """Transcripts of a group of utterances, from one CLI run (one model load for all)."""
    wavs = [os.path.join(args.corpus, "wav", it["id"] + ".wav") for it in group]
    cmd = [args.cli, "-d", args.model, "-i", *wavs, "--backend", args.backend, "--precision", args.precision,
           "--silent", "-t", str(args.threads), "--format", "json"]
    cmd += shlex.split(args.cli_args)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({done.returncode}): {done.stderr.strip()}")
    out = json.loads(done.stdout)
    if not isinstance(out, list):  # one input: one object
        out = [out]
    by_file = {os.path.abspath(r["file"]): " ".join(r["text"].split()) for r in out}
    return [by_file[os.path.abspath(w)] for w in wavs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="corpus.py output with --wavs heldout")
    ap.add_argument("--model", default="models/demo")
    ap.add_argument("--cli", default="./voxtral")
    ap.add_argument("--backend", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="exact", choices=["exact", "fast"], help="the CLI's --precision")
    ap.add_argument("--transformers", help="heldout_transformers.json from train.py, to compare against")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--threads", type=int, default=1, help="threads per CLI run")
    ap.add_argument("--files-per-run", type=int, default=25,
                    help="utterances one CLI run transcribes together (a GPU batches them)")
    ap.add_argument("--cli-args", default="", help="more CLI arguments for every run, e.g. '--weights q4'")
    ap.add_argument("--limit", type=int, default=0, help="only the first N held-out utterances of each set")
    ap.add_argument("--sets", nargs="+", help="only these held-out sets (corpus.py's 'set' field)")
    ap.add_argument("--json", help="write the per-utterance results here")
    args = ap.parse_args()

    items = [json.loads(line) for line in open(os.path.join(args.corpus, "manifest.jsonl"))]
    items = [it for it in items if it["split"] == "heldout" and (not args.sets or it.get("set") in args.sets)]
    if args.limit:
        taken = {}
        items = [it for it in items if taken.setdefault(it.get("set"), []).append(it) or
                 len(taken[it.get("set")]) <= args.limit]
    if not items:
        raise SystemExit(f"{args.corpus}: no held-out utterances in manifest.jsonl")
    step = max(1, args.files_per_run)
    groups = [items[i:i + step] for i in range(0, len(items), step)]
    with ThreadPoolExecutor(args.jobs) as pool:
        hyps = [h for done in pool.map(lambda g: transcribe(args, g), groups) for h in done]

    errors = words = 0
    per_set = {}
    for it, hyp in zip(items, hyps):
        e, n = word_errors(it["text"], hyp)
        errors, words = errors + e, words + n
        s = per_set.setdefault(it.get("set", "heldout"), {"utterances": 0, "words": 0, "errors": 0})
        s["utterances"], s["words"], s["errors"] = s["utterances"] + 1, s["words"] + n, s["errors"] + e
    for s in per_set.values():
        s["wer"] = round(s["errors"] / s["words"], 4)
    result = {"backend": args.backend, "utterances": len(items), "words": words, "errors": errors,
              "wer": errors / words, "sets": per_set}
    if args.transformers:
        ref = json.load(open(args.transformers))["hypotheses"]
        same = [hyp == ref[it["id"]]["text"] for it, hyp in zip(items, hyps)]
        result["same_as_transformers"] = sum(same)
        te = sum(word_errors(it["text"], ref[it["id"]]["text"])[0] for it in items)
        result["transformers_wer"] = te / words
        for it, hyp, s in zip(items, hyps, same):
            if not s:
                print(f"differs from transformers: {it['id']}\n  ours:         {hyp}\n"
                      f"  transformers: {ref[it['id']]['text']}\n  reference:    {it['text']}")
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": result, "hypotheses": {it["id"]: h for it, h in zip(items, hyps)}}, f, indent=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
