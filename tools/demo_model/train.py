#!/usr/bin/env python3
"""Trains the demo model: a few million parameters of the real architecture on the espeak-ng corpus.

Runs on the GPU test machine (torch + transformers 5.17), after corpus.py:
  tools/demo_model/train.py --corpus /tmp/corpus --out /tmp/demo
writes the Mistral-layout model (params.json, consolidated.safetensors in BF16, tekken.json),
train_log.json (settings, loss curve, timings) and heldout_transformers.json (what transformers
transcribes for every held-out utterance with the exported BF16 weights, and the WER of every
held-out set: corpus.py's "set" field).

The model is transformers' VoxtralRealtimeForConditionalGeneration with a small config. Targets
follow the streaming format of docs/MODEL.md: the prompt is [BOS] + [STREAMING_PAD] x (32 + n_delay),
there is one target per 80 ms position, a word's token starts n_delay positions after the
position holding the word's last sample, and every other position is [STREAMING_PAD]. Training
sequences join 1 to 8 utterances, longer than both attention windows, so the model sees its
windows full and works on audio of any length (RoPE attention only sees relative positions).
"""
import argparse
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
sys.path.insert(0, HERE)
import dataset as ds  # noqa: E402  (corpus, targets, batches: numpy only)
from wer import word_errors  # noqa: E402
import make_fixtures as mf  # noqa: E402  (config, tekken and Mistral-layout writers)

from transformers import VoxtralRealtimeFeatureExtractor, VoxtralRealtimeForConditionalGeneration  # noqa: E402

N_DELAY, PROMPT_LEN, FIRST_OUTPUT = ds.N_DELAY, ds.PROMPT_LEN, ds.FIRST_OUTPUT
FRAMES_PER_POSITION = mf.SAMPLES_PER_POSITION // mf.HOP
assert (ds.SAMPLES_PER_POSITION, ds.LEFT_PAD_POSITIONS, ds.RIGHT_EXTRA_POSITIONS, ds.NUM_SPECIAL, ds.BOS,
        ds.STREAMING_PAD) == (mf.SAMPLES_PER_POSITION, mf.LEFT_PAD_POSITIONS, mf.RIGHT_EXTRA_POSITIONS,
                              mf.NUM_SPECIAL, mf.BOS, mf.STREAMING_PAD), "dataset.py's constants drifted"

SPEC = dict(
    enc=dict(dim=256, n_layers=4, n_heads=4, head_dim=64, hidden_dim=1024, sliding_window=250),
    dec=dict(dim=256, n_layers=4, n_heads=8, n_kv_heads=2, head_dim=32, hidden_dim=512, sliding_window=64),
    model_max_length=131072,
)


class LogMel:
    """docs/MODEL.md's log-mel on the GPU, batched; checked against transformers' extractor at start."""

    def __init__(self, fe, device):
        self.filters = torch.from_numpy(fe.mel_filters.astype(np.float32)).to(device).T.contiguous()  # [128, 201]
        self.window = torch.hann_window(400, periodic=True, device=device)

    def __call__(self, audio):  # [B, samples] float32
        spec = torch.stft(audio, 400, mf.HOP, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)[..., :-1]
        mel = self.filters @ (spec.real ** 2 + spec.imag ** 2)
        log = torch.clamp(mel, min=1e-10).log10()
        return (torch.maximum(log, torch.tensor(1.5 - 8.0, device=audio.device)) + 4.0) / 4.0


def padded_batch(sequences, device):
    audio, n_pos, _ = ds.batch_arrays(sequences, None, with_labels=False)
    return torch.from_numpy(audio).to(device), n_pos


def training_batch(data, rng, word_ids, device, utterances_per_batch):
    audio, labels, ids = ds.training_arrays(data, rng, word_ids, utterances_per_batch)
    return tuple(torch.from_numpy(x).to(device) for x in (audio, ids, labels))


@torch.no_grad()
def transcribe(model, mel, data, items, toks, device, batch=100):
    """Greedy offline schedule, batched; every position recomputes the causal prefix, so the
    zero padding after a shorter utterance never reaches its own positions."""
    out = {}
    items = sorted(items, key=lambda it: it["samples"])
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        audio, n_pos = padded_batch([(data.samples(it), it["words"]) for it in chunk], device)
        feats = mel(audio)
        n = max(n_pos)
        ids = torch.full((len(chunk), n), mf.STREAMING_PAD, dtype=torch.long, device=device)
        ids[:, 0] = mf.BOS
        produced = []
        for p in range(FIRST_OUTPUT, n):
            logits = model(input_ids=ids[:, :p + 1], input_features=feats[:, :, :(p + 1) * FRAMES_PER_POSITION],
                           num_delay_tokens=N_DELAY, use_cache=False, logits_to_keep=1).logits[:, -1]
            tok = logits.argmax(-1)
            produced.append(tok)
            if p + 1 < n:
                ids[:, p + 1] = tok
        produced = torch.stack(produced, 1).tolist()
        for j, it in enumerate(chunk):
            got = produced[j][:n_pos[j] - FIRST_OUTPUT]
            out[it["id"]] = {"ids": got, "text": mf.decode_text(got, toks).strip()}
    return out


def wer(items, hyps):
    errors = words = 0
    for it in items:
        e, n = word_errors(it["text"], hyps[it["id"]]["text"])
        errors, words = errors + e, words + n
    return errors / max(words, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--utterances-per-batch", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="if > 0, lower --steps to what fits in this time (decided at step 60, logged)")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-items", type=int, default=0,
                    help="held-out utterances of each set for the final WER (0: all)")
    args = ap.parse_args()
    device = "cuda"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()

    data = ds.Corpus(args.corpus)
    toks, word_ids = ds.token_table()
    vocab_size = mf.NUM_SPECIAL + len(toks)
    print(f"{len(data.train)} training and {len(data.heldout)} held-out utterances, "
          f"{len(data.audio) / 16000 / 3600:.2f} h of audio, vocabulary {vocab_size}", flush=True)

    fe = VoxtralRealtimeFeatureExtractor()
    mel = LogMel(fe, device)
    probe = mf.pad_offline(data.samples(data.heldout[0]).astype(np.float32) / 32768.0, N_DELAY)
    diff = (mel(torch.from_numpy(probe)[None].to(device))[0].cpu() - mf.mel_features(fe, probe)).abs().max().item()
    print(f"GPU log-mel vs transformers' extractor: max |diff| {diff:.2e}", flush=True)
    assert diff < 1e-3, "the GPU log-mel differs from transformers"

    cfg = mf.hf_config(SPEC, vocab_size)
    model = VoxtralRealtimeForConditionalGeneration(cfg).to(device)
    # Every id is a real input here: no embedding row may be frozen as a padding row.
    model.get_input_embeddings().padding_idx = None
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))

    log = {"spec": SPEC, "n_delay": N_DELAY, "parameters": n_params, "args": vars(args), "loss": [], "evals": []}
    # During training: the same few utterances of every held-out set, about 100 in all.
    eval_subset = [it for items in data.sets.values() for it in items[:max(1, 100 // max(1, len(data.sets)))]]
    steps_done, t_train = 0, time.time()
    model.train()
    for step in range(args.steps):
        if step == 10:
            t_ten = time.time()
        if step == 60 and args.max_minutes > 0:
            # Fit the run into the time budget by choosing the step count now, before warm-up
            # ends, so the schedule still anneals; --steps N --max-minutes 0 repeats it exactly.
            per_step = (time.time() - t_ten) / 50
            fit = int((args.max_minutes * 60 - (time.time() - t_train)) / per_step) + 60
            if fit < args.steps:
                print(f"{per_step * 1000:.0f} ms per step: {fit} steps fit in {args.max_minutes} min", flush=True)
                args.steps = fit
        if step >= args.steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        audio, ids, labels = training_batch(data, rng, word_ids, device, args.utterances_per_batch)
        feats = mel(audio)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(input_ids=ids, input_features=feats, num_delay_tokens=N_DELAY, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits[:, FIRST_OUTPUT:].float().reshape(-1, vocab_size),
                                                 labels[:, FIRST_OUTPUT:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps_done = step + 1
        if step % 50 == 0:
            log["loss"].append([step, round(loss.item(), 5)])
        if step % 250 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr_at(step):.2e} "
                  f"{time.time() - t_train:.0f} s", flush=True)
        if args.eval_every and step > 0 and step % args.eval_every == 0:
            model.eval()
            w = wer(eval_subset, transcribe(model, mel, data, eval_subset, toks, device))
            model.train()
            log["evals"].append([step, w])
            print(f"step {step}: held-out WER on {len(eval_subset)} utterances {100 * w:.2f}%", flush=True)
    log["steps_done"] = steps_done
    log["args"]["steps"] = args.steps
    log["train_seconds"] = time.time() - t_train

    # Export, then evaluate the exported BF16 weights loaded into a fresh model (float32 math).
    model.eval()
    spec = dict(SPEC)
    with open(os.path.join(args.out, "params.json"), "w") as f:
        json.dump(mf.params_json(spec, vocab_size), f, indent=2)
    mf.write_tekken(os.path.join(args.out, "tekken.json"), toks)
    st = os.path.join(args.out, "consolidated.safetensors")
    from safetensors.torch import save_file
    save_file({k: v.cpu() for k, v in mf.mistral_state_dict(model, cfg).items()}, st, metadata={"format": "pt"})
    exported = VoxtralRealtimeForConditionalGeneration(cfg).eval()
    mf.load_mistral_into_hf(st, exported, cfg)
    exported.to(device)
    items = [it for group in data.sets.values() for it in (group[:args.eval_items] if args.eval_items else group)]
    t_eval = time.time()
    hyps = transcribe(exported, mel, data, items, toks, device)
    log["eval_seconds"] = time.time() - t_eval
    w = wer(items, hyps)
    log["heldout_wer"] = w
    print(f"exported BF16 model, transformers float32: held-out WER {100 * w:.2f}% on {len(items)} utterances",
          flush=True)
    sets = {}
    for name in data.sets:
        group = [it for it in items if it["set"] == name]
        e = sum(word_errors(it["text"], hyps[it["id"]]["text"])[0] for it in group)
        n = sum(len(it["text"].split()) for it in group)
        sets[name] = {"utterances": len(group), "words": n, "errors": e, "wer": e / max(n, 1)}
        print(f"  set {name}: WER {100 * e / max(n, 1):.2f}% ({e} / {n} words, {len(group)} utterances)", flush=True)
    log["heldout_sets"] = sets
    wrong = [(it["text"], hyps[it["id"]]["text"]) for it in items if hyps[it["id"]]["text"] != it["text"]]
    for ref, hyp in wrong[:15]:
        print(f"  ref: {ref}\n  hyp: {hyp}")
    with open(os.path.join(args.out, "heldout_transformers.json"), "w") as f:
        json.dump({"wer": w, "utterances": len(items), "sets": sets,
                   "hypotheses": {it["id"]: {"set": it["set"], "text": hyps[it["id"]]["text"], "ids": hyps[it["id"]]["ids"],
                                             "audio_sha256": hashlib.sha256(data.samples(it).astype("<i2").tobytes())
                                             .hexdigest()} for it in items}}, f, indent=0)
    log["total_seconds"] = time.time() - t_start
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(log, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
