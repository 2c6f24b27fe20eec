#!/usr/bin/env python3
"""Full-size parity and speed against transformers, on the GPU test machine.

Loads a Mistral-layout model directory (e.g. the random-weight one `voxtral-bench make-model`
writes with the real shapes) into transformers' VoxtralRealtimeForConditionalGeneration in
BF16 on the GPU, then:
  * parity: feeds the input ids our engine used at every decode step (dumped with
    `voxtral-bench run --dump-logits PREFIX`) with teacher forcing, and compares transformers'
    logits with ours position by position: cosine similarity and top-1 agreement;
  * speed: times transformers' own generate() (greedy, EOS suppressed, so the whole audio
    is decoded) in ms per step, with its default cache and with the static cache.
Prints one JSON object per measurement.
"""
import argparse
import json
import math
import os
import sys
import time
import wave

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import LogitsProcessor, LogitsProcessorList, VoxtralRealtimeFeatureExtractor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (name mapping, RoPE row order, padding)


def hf_config_from_params(params):
    enc = params["multimodal"]["whisper_model_args"]["encoder_args"]
    spec = {
        "enc": dict(dim=enc["dim"], n_layers=enc["n_layers"], n_heads=enc["n_heads"], head_dim=enc["head_dim"],
                    hidden_dim=enc["hidden_dim"], sliding_window=enc["sliding_window"]),
        "dec": dict(dim=params["dim"], n_layers=params["n_layers"], n_heads=params["n_heads"],
                    n_kv_heads=params["n_kv_heads"], head_dim=params["head_dim"], hidden_dim=params["hidden_dim"],
                    sliding_window=params["sliding_window"]),
        "model_max_length": params["model_max_length"],
    }
    return mf.hf_config(spec, params["vocab_size"])


def load_model(model_dir):
    params = json.load(open(os.path.join(model_dir, "params.json")))
    cfg = hf_config_from_params(params)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = mf.VoxtralRealtimeForConditionalGeneration(cfg)
    torch.set_default_dtype(torch.float32)
    model.eval()
    sd = load_file(os.path.join(model_dir, "consolidated.safetensors"), device="cuda")
    enc_h = cfg.audio_config.num_attention_heads
    dec_h, dec_kv = cfg.text_config.num_attention_heads, cfg.text_config.num_key_value_heads
    names = {mf.hf_to_mistral_name(k): k for k in model.state_dict() if mf.hf_to_mistral_name(k)}
    hf = {}
    for name, v in sd.items():
        k = names[name]
        if "audio_tower" in k and ("q_proj" in k or "k_proj" in k):
            v = mf.rope_rows(v, enc_h, False)
        elif "language_model" in k and "q_proj" in k:
            v = mf.rope_rows(v, dec_h, False)
        elif "language_model" in k and "k_proj" in k:
            v = mf.rope_rows(v, dec_kv, False)
        hf[k] = v.to(torch.bfloat16)
    missing, unexpected = model.load_state_dict(hf, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]
    assert not missing and not unexpected, (missing[:5], unexpected[:5])
    model.tie_weights()
    return model, cfg


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


class StepTimer(LogitsProcessor):
    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        return scores


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--dump", help="prefix of our engine's --dump-logits files")
    ap.add_argument("--delay-ms", type=int, default=480)
    ap.add_argument("--speed", action="store_true", help="also time transformers' generate()")
    ap.add_argument("--setups", default="dynamic,static",
                    help="generate() setups to time: dynamic (default cache), static (static cache, compiled)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model, cfg = load_model(args.model)
    print(json.dumps({"what": "load", "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    n_delay = args.delay_ms // 80
    samples = read_wav(args.audio)
    padded = mf.pad_offline(samples, n_delay)
    fe = VoxtralRealtimeFeatureExtractor()
    feats = mf.mel_features(fe, padded).to("cuda", torch.bfloat16)[None]
    n_pos = len(padded) // mf.SAMPLES_PER_POSITION
    prompt = [mf.BOS] + [mf.STREAMING_PAD] * (mf.LEFT_PAD_POSITIONS + n_delay)

    if args.dump:
        meta = json.load(open(args.dump + ".json"))
        ours_ids = np.fromfile(args.dump + ".ids", dtype=np.int32)
        ours = np.fromfile(args.dump + ".f32", dtype=np.float32).reshape(meta["steps"], meta["vocab"])
        first = meta["first_position"]
        assert first == len(prompt) - 1 and first + len(ours_ids) == n_pos, (first, len(ours_ids), n_pos)
        ids = torch.tensor([prompt[:first] + ours_ids.tolist()], device="cuda")
        with torch.no_grad():
            logits = model(input_ids=ids, input_features=feats, num_delay_tokens=n_delay, use_cache=False).logits[0]
        theirs = logits[first:].float()
        mine = torch.from_numpy(ours).to("cuda")
        cos = torch.nn.functional.cosine_similarity(theirs, mine, dim=-1)
        agree = (theirs.argmax(-1) == mine.argmax(-1))
        top2 = torch.topk(theirs, 2, dim=-1).values
        margin = (top2[:, 0] - top2[:, 1]) / theirs.std(dim=-1)
        disagree_margins = margin[~agree].tolist()
        print(json.dumps({
            "what": "parity", "positions": int(len(cos)), "cos_min": round(cos.min().item(), 6),
            "cos_mean": round(cos.mean().item(), 6), "cos_at_least_0.999": round((cos >= 0.999).float().mean().item(), 4),
            "top1_agreement": round(agree.float().mean().item(), 4),
            "disagreements": int((~agree).sum().item()),
            "transformers_top2_margin_at_disagreements_in_logit_std": [round(m, 4) for m in disagree_margins[:20]],
            "median_top2_margin_in_logit_std": round(margin.median().item(), 4),
        }), flush=True)

    if args.speed:
        ids = torch.tensor([prompt], device="cuda")
        setups = {"dynamic": ("dynamic cache", {}), "static": ("static cache", {"cache_implementation": "static"})}
        for name in args.setups.split(","):
            label, extra = setups[name]
            try:
                for run in range(2):  # the first run warms up (and compiles, for the static cache)
                    timer = StepTimer()
                    start = time.perf_counter()
                    with torch.no_grad():
                        out = model.generate(input_ids=ids, input_features=feats, num_delay_tokens=n_delay,
                                             do_sample=False, suppress_tokens=[mf.EOS],
                                             logits_processor=LogitsProcessorList([timer]), **extra)
                    torch.cuda.synchronize()
                    total = time.perf_counter() - start
                steps = np.diff(np.array(timer.times)) * 1000.0
                print(json.dumps({
                    "what": "transformers generate", "setup": label, "new_tokens": int(out.shape[1] - ids.shape[1]),
                    "step_ms_median": round(float(np.median(steps)), 2), "step_ms_p90": round(float(np.percentile(steps, 90)), 2),
                    "total_s": round(total, 2)}), flush=True)
            except Exception as e:  # report and go on: the parity figures matter more
                print(json.dumps({"what": "transformers generate", "setup": label, "error": f"{type(e).__name__}: {e}"[:300]}),
                      flush=True)


if __name__ == "__main__":
    main()
