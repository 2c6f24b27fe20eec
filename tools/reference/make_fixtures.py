#!/usr/bin/env python3
"""Builds the tiny random-weight reference models and records what transformers computes.

Runs on the GPU test machine (torch + transformers 5.17); CI never runs it. Everything runs on
the CPU in float32: the tiny models take seconds. See tools/reference/README.md.

For each tiny model:
  * build VoxtralRealtimeForConditionalGeneration from a small config, seeded;
  * draw weights with scales that make greedy decoding produce varied text ids (with the
    default init a tiny model repeats [STREAMING_PAD] forever, which tests nothing);
  * round every weight to BF16 (the reference is then float32 math on BF16 weights);
  * write params.json, consolidated.safetensors (BF16, Mistral names, q/k rows
    un-permuted back to the interleaved RoPE layout) and tekken.json;
  * reload those files through the HF name mapping and check the outputs are unchanged,
    which proves the layout conversion;
  * for every clip: record the mel features, encoder output, adapter output, the greedy ids,
    and the logits at every position with teacher forcing on the greedy sequence.
"""
import argparse
import base64
import json
import math
import os
import sys
import wave

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (
    VoxtralRealtimeConfig,
    VoxtralRealtimeFeatureExtractor,
    VoxtralRealtimeForConditionalGeneration,
)

HOP = 160
SAMPLES_PER_POSITION = 1280
LEFT_PAD_POSITIONS = 32
RIGHT_EXTRA_POSITIONS = 10
NUM_SPECIAL = 1000
BOS, EOS, AUDIO, BEGIN_AUDIO, STREAMING_PAD, STREAMING_WORD = 1, 2, 24, 25, 32, 33

ENC = "mm_streams_embeddings.embedding_module.whisper_encoder."
ADAPTER = "mm_streams_embeddings.embedding_module.audio_language_projection."
TOK_EMB = "mm_streams_embeddings.embedding_module.tok_embeddings.weight"

# Two shapes, so that nothing about head counts, GQA ratio, widths or windows can be
# hard-coded and still pass. Attention width differs from model width in both, as in the
# real model (encoder 32 x 64 = 2048 vs dim 1280).
MODELS = {
    "tiny-a": dict(
        enc=dict(dim=64, n_layers=2, n_heads=4, head_dim=32, hidden_dim=256, sliding_window=24),
        dec=dict(dim=96, n_layers=2, n_heads=6, n_kv_heads=2, head_dim=32, hidden_dim=256,
                 sliding_window=48),
        model_max_length=1024,
        max_text_fraction=0.95,  # some [STREAMING_PAD] in the output, to test skipping specials
        clips=[("speech_short", 480), ("speech_long", 480), ("noise", 480)],
    ),
    "tiny-b": dict(
        enc=dict(dim=48, n_layers=3, n_heads=3, head_dim=32, hidden_dim=192, sliding_window=40),
        dec=dict(dim=64, n_layers=3, n_heads=4, n_kv_heads=2, head_dim=16, hidden_dim=160,
                 sliding_window=32),
        model_max_length=512,
        max_text_fraction=1.0,
        clips=[("speech_long", 240), ("speech_short", 960)],
    ),
}

# Whole-word tokens appended after the 256 byte tokens, plus some multi-byte UTF-8 pieces
# (complete and split) so that decoding a character that spans tokens gets exercised.
WORDS = (
    "the of and to in is it you that he was for on are with as his they be at one have this "
    "from or had by word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like "
    "so these her long make thing see him two has look more day could go come did number "
    "sound no most people my over know water than call first who may down side been now "
    "find any new work part take get place made live where after back little only round man "
    "year came show every good me give our under name very through just form sentence great "
    "think say help low line differ turn cause much mean before move right boy old too same "
    "tell does set three want air well also play small end put home read hand port large "
    "spell add even land here must big high such follow act why ask men change went light "
    "kind off need house picture try us again animal point mother world near build self "
    "earth father hello test voxtral engine quick brown fox jumps lazy dog forest"
).split()
UTF8_PIECES = ["é", " café", "ü", "日本", "語", "€", "🙂", b"\xe2\x82", b"\xac", b"\xf0\x9f", b"\x99\x82"]


def vocab_bytes():
    """Token bytes for ids >= NUM_SPECIAL, in rank order."""
    toks = [bytes([b]) for b in range(256)]
    toks += [(" " + w).encode() for w in WORDS]
    toks += [w.encode() for w in WORDS[:40]]
    toks += [p if isinstance(p, bytes) else p.encode() for p in UTF8_PIECES]
    toks += [b".", b",", b" .", b"?", b"!"]
    seen, out = set(), []
    for t in toks:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def special_names():
    names = [f"<SPECIAL_{i}>" for i in range(NUM_SPECIAL)]
    for i, n in {0: "<unk>", BOS: "<s>", EOS: "</s>", 3: "[INST]", 4: "[/INST]",
                 AUDIO: "[AUDIO]", BEGIN_AUDIO: "[BEGIN_AUDIO]", STREAMING_PAD: "[STREAMING_PAD]",
                 STREAMING_WORD: "[STREAMING_WORD]"}.items():
        names[i] = n
    return names


def write_tekken(path, toks):
    vocab = []
    for rank, t in enumerate(toks):
        try:
            s = t.decode("utf-8")
        except UnicodeDecodeError:
            s = None
        vocab.append({"rank": rank, "token_bytes": base64.b64encode(t).decode(), "token_str": s})
    doc = {
        "config": {
            "pattern": "",
            "num_vocab_tokens": len(toks),
            "default_vocab_size": NUM_SPECIAL + len(toks),
            "default_num_special_tokens": NUM_SPECIAL,
            "version": "v13",
        },
        "vocab": vocab,
        "special_tokens": [{"rank": i, "token_str": n, "is_control": True}
                           for i, n in enumerate(special_names())],
        "audio": {
            "sampling_rate": 16000,
            "frame_rate": 12.5,
            "audio_encoding_config": {"num_mel_bins": 128, "hop_length": HOP, "window_size": 400},
            "transcription_delay_ms": 480,
            "streaming_n_left_pad_tokens": LEFT_PAD_POSITIONS,
            "streaming_look_ahead_ms": 2.5,
            "streaming_look_back_ms": 52.5,
        },
    }
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)


def params_json(spec, vocab_size):
    enc, dec = spec["enc"], spec["dec"]
    return {
        "dim": dec["dim"], "n_layers": dec["n_layers"], "head_dim": dec["head_dim"],
        "hidden_dim": dec["hidden_dim"], "n_heads": dec["n_heads"], "n_kv_heads": dec["n_kv_heads"],
        "use_biases": False, "causal": True, "rope_theta": 1000000.0, "norm_eps": 1e-05,
        "vocab_size": vocab_size, "model_parallel": 1, "tied_embeddings": True,
        "sliding_window": dec["sliding_window"], "model_max_length": spec["model_max_length"],
        "multimodal": {"whisper_model_args": {
            "encoder_args": {
                "audio_encoding_args": {
                    "sampling_rate": 16000, "frame_rate": 12.5, "num_mel_bins": 128,
                    "hop_length": HOP, "window_size": 400, "chunk_length_s": None,
                    "global_log_mel_max": 1.5, "transcription_format": "streaming"},
                "dim": enc["dim"], "n_layers": enc["n_layers"], "head_dim": enc["head_dim"],
                "hidden_dim": enc["hidden_dim"], "n_heads": enc["n_heads"], "vocab_size": vocab_size,
                "n_kv_heads": enc["n_heads"], "use_biases": True, "use_cache": False,
                "rope_theta": 1000000.0, "causal": True, "norm_eps": 1e-05, "pos_embed": "rope",
                "max_source_positions": None, "ffn_type": "swiglu", "norm_type": "rms_norm",
                "sliding_window": enc["sliding_window"]},
            "downsample_args": {"downsample_factor": 4}}},
        "ada_rms_norm_t_cond": True,
        "ada_rms_norm_t_cond_dim": 32,
    }


def hf_config(spec, vocab_size):
    enc, dec = spec["enc"], spec["dec"]
    rope = {"rope_type": "default", "rope_theta": 1000000.0}
    assert enc["hidden_dim"] == 4 * enc["dim"], "transformers reshapes by intermediate_size"
    return VoxtralRealtimeConfig(
        audio_config=dict(
            hidden_size=enc["dim"], intermediate_size=enc["hidden_dim"],
            num_hidden_layers=enc["n_layers"], num_attention_heads=enc["n_heads"],
            head_dim=enc["head_dim"], sliding_window=enc["sliding_window"],
            rms_norm_eps=1e-5, rope_parameters=rope, num_mel_bins=128, vocab_size=vocab_size),
        text_config=dict(
            vocab_size=vocab_size, hidden_size=dec["dim"], intermediate_size=dec["hidden_dim"],
            num_hidden_layers=dec["n_layers"], num_attention_heads=dec["n_heads"],
            num_key_value_heads=dec["n_kv_heads"], head_dim=dec["head_dim"],
            sliding_window=dec["sliding_window"], max_position_embeddings=spec["model_max_length"],
            rms_norm_eps=1e-5, rope_parameters=rope, tie_word_embeddings=True),
        projector_hidden_act="gelu", audio_length_per_tok=8, default_num_delay_tokens=6,
        downsample_factor=4, tie_word_embeddings=True)


# ---------------------------------------------------------------- weights and names

def init_weights(model, gen, emb_std, audio_gain):
    """Scaled random weights: unit-gain linears, visible biases and norm weights, and an
    embedding table that does not let the residual stream just echo the input token."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("lm_head.weight"):
                continue  # tied
            if "embed_tokens" in name:
                w = torch.randn(p.shape, generator=gen) * emb_std
                # Special ids rarely win the argmax except the streaming pad/word tokens, so the
                # greedy output carries text; EOS never wins (the fixtures decode the full span).
                w[:NUM_SPECIAL] *= 0.5
                w[EOS] *= 0.05
                w[STREAMING_PAD] *= 2.4
                w[STREAMING_WORD] *= 2.0
                # Lone non-ASCII bytes mostly produce broken UTF-8: keep them less likely.
                w[NUM_SPECIAL + 128:NUM_SPECIAL + 256] *= 0.5
            elif "norm" in name and p.dim() == 1 and "ada_rms_norm" not in name:
                w = 0.6 + 0.8 * torch.rand(p.shape, generator=gen)
            elif p.dim() == 1:  # biases
                w = torch.randn(p.shape, generator=gen) * 0.2
            elif "ada_rms_norm.linear2" in name:
                w = torch.randn(p.shape, generator=gen) * (0.5 / math.sqrt(p.shape[1]))
            elif "multi_modal_projector.linear_2" in name:
                w = torch.randn(p.shape, generator=gen) * (audio_gain / math.sqrt(p.shape[1]))
            elif p.dim() == 3:  # conv [out, in, k]
                w = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1] * p.shape[2])
            else:
                w = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1])
            p.copy_(w.to(torch.bfloat16).to(torch.float32))
    model.tie_weights()


def hf_to_mistral_name(k):
    """Maps an HF state-dict key to its Mistral name (None for the tied LM head). Matches on
    the part after 'audio_tower.' / 'language_model.' so that wrapper prefixes ('model.',
    'language_model.model.') of any transformers version map alike."""
    if k.endswith("lm_head.weight"):
        return None
    if "embed_tokens.weight" in k:
        return TOK_EMB
    if "multi_modal_projector." in k:
        rest = k.split("multi_modal_projector.", 1)[1]
        return ADAPTER + rest.replace("linear_1", "0").replace("linear_2", "2")
    sub = [("self_attn.q_proj", "attention.wq"), ("self_attn.k_proj", "attention.wk"),
           ("self_attn.v_proj", "attention.wv"), ("self_attn.o_proj", "attention.wo"),
           ("mlp.gate_proj", "feed_forward.w1"), ("mlp.down_proj", "feed_forward.w2"),
           ("mlp.up_proj", "feed_forward.w3"), ("ada_rms_norm.linear1", "ada_rms_norm_t_cond.0"),
           ("ada_rms_norm.linear2", "ada_rms_norm_t_cond.2")]
    if "audio_tower." in k:
        rest = k.split("audio_tower.", 1)[1]
        if rest.startswith("embedder.conv1."):
            return ENC + "conv_layers.0.conv." + rest[len("embedder.conv1."):]
        if rest.startswith("embedder.conv2."):
            return ENC + "conv_layers.1.conv." + rest[len("embedder.conv2."):]
        rest = rest.replace("self_attn_layer_norm", "attention_norm").replace(
            "final_layer_norm", "ffn_norm")
        for a, b in sub:
            rest = rest.replace(a, b)
        return ENC + "transformer." + rest
    if "language_model." in k:
        rest = k.rsplit("language_model.", 1)[1]
        rest = rest[len("model."):] if rest.startswith("model.") else rest
        rest = rest.replace("post_attention_layernorm", "ffn_norm").replace(
            "input_layernorm", "attention_norm")
        for a, b in sub:
            rest = rest.replace(a, b)
        return rest
    raise SystemExit(f"unmapped HF tensor {k}")


def rope_rows(t, n_heads, to_interleaved):
    """HF keeps q/k rows in rotate-half order: per head, HF row j is Mistral row 2j and
    HF row d/2+j is Mistral row 2j+1."""
    shape = t.shape
    hd = shape[0] // n_heads
    t = t.reshape(n_heads, 2, hd // 2, -1) if to_interleaved else t.reshape(n_heads, hd // 2, 2, -1)
    return t.transpose(1, 2).reshape(shape)


def mistral_state_dict(model, cfg):
    out = {}
    enc_h = cfg.audio_config.num_attention_heads
    dec_h, dec_kv = cfg.text_config.num_attention_heads, cfg.text_config.num_key_value_heads
    for k, v in model.state_dict().items():
        name = hf_to_mistral_name(k)
        if name is None:
            continue
        v = v.detach().clone()
        if "audio_tower" in k and ("q_proj" in k or "k_proj" in k):
            v = rope_rows(v, enc_h, True)
        elif "language_model" in k and "q_proj" in k:
            v = rope_rows(v, dec_h, True)
        elif "language_model" in k and "k_proj" in k:
            v = rope_rows(v, dec_kv, True)
        out[name] = v.to(torch.bfloat16).contiguous()
    return out


def load_mistral_into_hf(path, model, cfg):
    """Inverse mapping, used to prove the written files hold the same model."""
    sd = load_file(path)
    enc_h = cfg.audio_config.num_attention_heads
    dec_h, dec_kv = cfg.text_config.num_attention_heads, cfg.text_config.num_key_value_heads
    hf = {}
    names = {hf_to_mistral_name(k): k for k in model.state_dict() if hf_to_mistral_name(k)}
    for name, v in sd.items():
        k = names[name]
        v = v.to(torch.float32)
        if "audio_tower" in k and ("q_proj" in k or "k_proj" in k):
            v = rope_rows(v, enc_h, False)
        elif "language_model" in k and "q_proj" in k:
            v = rope_rows(v, dec_h, False)
        elif "language_model" in k and "k_proj" in k:
            v = rope_rows(v, dec_kv, False)
        hf[k] = v
    missing, unexpected = model.load_state_dict(hf, strict=False)
    missing = [m for m in missing if not m.endswith("lm_head.weight")]
    assert not missing and not unexpected, (missing, unexpected)
    model.tie_weights()


# ---------------------------------------------------------------- audio and schedule

def read_wav_s16(path):
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000, path
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data.astype(np.float32) / 32768.0


def pad_offline(samples, n_delay):
    n = len(samples)
    right = (-n) % SAMPLES_PER_POSITION + (n_delay + 1 + RIGHT_EXTRA_POSITIONS) * SAMPLES_PER_POSITION
    return np.concatenate([np.zeros(LEFT_PAD_POSITIONS * SAMPLES_PER_POSITION, np.float32), samples,
                           np.zeros(right, np.float32)])


def mel_features(fe, padded):
    feats = fe(padded, sampling_rate=16000, return_tensors="pt")["input_features"]
    return feats[0].to(torch.float32)  # [128, frames]


def mel_float64(fe, padded):
    """Same recipe in float64, to report how much float32 noise the oracle itself carries."""
    x = torch.from_numpy(padded.astype(np.float64))
    window = torch.hann_window(400, dtype=torch.float64)
    stft = torch.stft(x, 400, HOP, window=window, return_complex=True, center=True)
    power = stft[..., :-1].abs() ** 2
    mel = torch.from_numpy(fe.mel_filters.astype(np.float64)).T @ power
    log = torch.clamp(mel, min=1e-10).log10()
    log = torch.maximum(log, torch.tensor(1.5 - 8.0, dtype=torch.float64))
    return ((log + 4.0) / 4.0).to(torch.float32)


@torch.no_grad()
def forward_logits(model, ids, feats, n_delay):
    out = model(input_ids=ids[None], input_features=feats[None], num_delay_tokens=n_delay,
                use_cache=False)
    return out.logits[0]


@torch.no_grad()
def greedy(model, feats, n_delay, n_positions):
    """Offline schedule: prompt of 1 + 32 + n_delay ids, then one token per position; the token
    produced at position p is the input id at p+1. Returns the ids produced at positions
    prompt_len-1 .. n_positions-1 and the full input-id sequence."""
    prompt = [BOS] + [STREAMING_PAD] * (LEFT_PAD_POSITIONS + n_delay)
    ids = list(prompt)
    produced = []
    for p in range(len(prompt) - 1, n_positions):
        frames = (p + 1) * 8  # the encoder is causal: audio up to position p suffices
        logits = forward_logits(model, torch.tensor(ids[:p + 1]), feats[:, :frames], n_delay)
        tok = int(torch.argmax(logits[-1]))
        produced.append(tok)
        if p + 1 < n_positions:
            ids.append(tok)
    return produced, ids


def check_structure(name, model, spec):
    """Fails early if this transformers version builds something other than what we export."""
    bufs = dict(model.named_buffers())
    print(f"[{name}] attn_implementation={model.config._attn_implementation}")
    for part, hd in (("audio_tower", spec["enc"]["head_dim"]), ("language_model", spec["dec"]["head_dim"])):
        inv = [v for k, v in bufs.items() if part in k and k.endswith("rotary_emb.inv_freq")]
        assert inv, f"no rotary inv_freq buffer under {part}"
        want = 1e6 ** (-2 / hd)
        print(f"[{name}] {part} rope inv_freq[1] = {inv[0][1].item():.6g} (theta 1e6 wants {want:.6g})")
        assert abs(inv[0][1].item() - want) < 1e-3 * want
    sd = model.state_dict()
    ada = [v for k, v in sd.items() if k.endswith("layers.0.ada_rms_norm.linear1.weight")]
    assert ada and ada[0].shape[0] == 32, "ada-norm width differs from params.json's 32"
    for k in sd:
        hf_to_mistral_name(k)  # raises on anything unmapped


def audio_features(model, feats):
    fn = getattr(model, "get_audio_features", None) or model.model.get_audio_features
    with torch.no_grad():
        return fn(input_features=feats[None], return_dict=True)


def margins(logits, rows):
    top2 = torch.topk(logits[rows], 2, dim=-1).values
    return (top2[:, 0] - top2[:, 1])


def decode_text(ids, toks):
    return b"".join(toks[i - NUM_SPECIAL] for i in ids if i >= NUM_SPECIAL).decode("utf-8", "replace")


# ---------------------------------------------------------------- main

def build_one(name, spec, audio_dir, out_dir, toks, fe):
    vocab_size = NUM_SPECIAL + len(toks)
    cfg = hf_config(spec, vocab_size)
    model_dir = os.path.join(out_dir, name)
    os.makedirs(model_dir, exist_ok=True)
    clips = [(c, d, read_wav_s16(os.path.join(audio_dir, c + ".wav"))) for c, d in spec["clips"]]

    chosen = None
    # A tied LM head echoes whatever token embedding dominates the residual stream, so
    # greedy output latches onto one id; small embeddings against a strong audio path give
    # text that follows the audio. Search a small grid of scales and seeds.
    grid = [(e, g) for g in (1.0, 2.0) for e in (0.1, 0.05, 0.15, 0.03)]
    for attempt in range(64):
        seed = 1000 * (1 + list(MODELS).index(name)) + attempt
        emb_std, audio_gain = grid[attempt % len(grid)]
        torch.manual_seed(seed)
        model = VoxtralRealtimeForConditionalGeneration(cfg).eval()
        if attempt == 0:
            check_structure(name, model, spec)
        gen = torch.Generator().manual_seed(seed)
        init_weights(model, gen, emb_std, audio_gain)
        results, ok, why = [], True, ""
        for clip, delay_ms, samples in clips:
            n_delay = delay_ms // 80
            padded = pad_offline(samples, n_delay)
            n_pos = len(padded) // SAMPLES_PER_POSITION
            feats = mel_features(fe, padded)
            produced, ids = greedy(model, feats, n_delay, n_pos)
            logits = forward_logits(model, torch.tensor(ids), feats, n_delay)
            first = 1 + LEFT_PAD_POSITIONS + n_delay - 1
            assert torch.equal(torch.argmax(logits[first:], -1), torch.tensor(produced)), \
                "teacher forcing disagrees with the greedy loop"
            m = margins(logits, slice(first, n_pos))
            rel = float(m.min() / logits.std())
            text_ids = [t for t in produced if t >= NUM_SPECIAL]
            distinct = len(set(text_ids))
            frac = len(text_ids) / len(produced)
            results.append(dict(clip=clip, delay_ms=delay_ms, padded=padded, n_samples=len(samples), feats=feats, ids=ids,
                                produced=produced, logits=logits, n_pos=n_pos, min_margin=float(m.min()),
                                rel_margin=rel, distinct=distinct, frac=frac))
            if EOS in produced:
                ok, why = False, f"{clip}: EOS"
            elif rel < 1e-3:
                ok, why = False, f"{clip}: near tie (margin {rel:.2e} x std)"
            elif clip != "noise" and (distinct < 5 or not 0.1 <= frac <= spec["max_text_fraction"]):
                ok, why = False, f"{clip}: {distinct} distinct text ids, text fraction {frac:.2f}"
            if not ok:
                break
        print(f"[{name}] attempt {attempt} seed {seed} emb_std {emb_std} audio_gain {audio_gain}: "
              f"{'ok' if ok else 'rejected: ' + why}")
        if ok:
            chosen = (seed, emb_std, audio_gain, model, results)
            break
    if chosen is None:
        raise SystemExit(f"[{name}] no seed gave a usable model")
    seed, emb_std, audio_gain, model, results = chosen

    # Mistral-layout files.
    with open(os.path.join(model_dir, "params.json"), "w") as f:
        json.dump(params_json(spec, vocab_size), f, indent=2)
    write_tekken(os.path.join(model_dir, "tekken.json"), toks)
    st_path = os.path.join(model_dir, "consolidated.safetensors")
    save_file(mistral_state_dict(model, cfg), st_path, metadata={"format": "pt"})

    # Round trip: a fresh HF model loaded from the Mistral files must compute the same logits.
    torch.manual_seed(12345)
    fresh = VoxtralRealtimeForConditionalGeneration(cfg).eval()
    load_mistral_into_hf(st_path, fresh, cfg)
    r0 = results[0]
    again = forward_logits(fresh, torch.tensor(r0["ids"]), r0["feats"], r0["delay_ms"] // 80)
    diff = float((again - r0["logits"]).abs().max())
    print(f"[{name}] Mistral-layout round trip max |logit diff| = {diff:.3g}")
    assert diff == 0.0, "written files do not reproduce the model"

    summary = {"model": name, "seed": seed, "embedding_std": emb_std, "audio_gain": audio_gain,
               "transformers": transformers.__version__, "torch": torch.__version__, "clips": []}
    for r in results:
        n_delay = r["delay_ms"] // 80
        audio = audio_features(model, r["feats"])
        enc_out = audio.last_hidden_state[0]
        adapter_out = audio.pooler_output[0]
        assert adapter_out.shape[0] == r["n_pos"]
        mel64 = mel_float64(fe, r["padded"])
        tensors = {
            "mel": r["feats"].contiguous(),
            "encoder_out": enc_out.contiguous(),
            "adapter_out": adapter_out.contiguous(),
            "logits": r["logits"].contiguous(),
            "input_ids": torch.tensor(r["ids"], dtype=torch.int32),
            "greedy_ids": torch.tensor(r["produced"], dtype=torch.int32),
        }
        tag = f"{name}_{r['clip']}_{r['delay_ms']}ms"
        save_file(tensors, os.path.join(out_dir, tag + ".safetensors"))

        gen_ids = None
        try:
            prompt = torch.tensor([r["ids"][:1 + LEFT_PAD_POSITIONS + n_delay]])
            out = model.generate(input_ids=prompt, input_features=r["feats"][None],
                                 num_delay_tokens=n_delay, do_sample=False)
            gen_ids = out[0, prompt.shape[1]:].tolist()
            agree = gen_ids == r["produced"][:len(gen_ids)]
            print(f"[{name}] {tag}: HF generate gave {len(gen_ids)} ids, "
                  f"{'agrees' if agree else 'DISAGREES'} with the greedy loop")
        except Exception as e:  # generate is a cross-check only
            print(f"[{name}] {tag}: HF generate not usable here: {type(e).__name__}: {e}")
        entry = {
            "tag": tag, "audio": f"audio/{r['clip']}.wav", "delay_ms": r["delay_ms"],
            "n_samples": r["n_samples"],
            "n_positions": r["n_pos"], "n_mel_frames": int(r["feats"].shape[1]),
            "n_encoder_frames": int(enc_out.shape[0]), "greedy_ids": r["produced"],
            "text": decode_text(r["produced"], toks),
            "min_top2_margin": r["min_margin"], "min_top2_margin_over_logit_std": r["rel_margin"],
            "logit_std": float(r["logits"].std()),
            "distinct_text_ids": r["distinct"], "text_fraction": r["frac"],
            "mel_max_abs_diff_float32_vs_float64": float((r["feats"] - mel64).abs().max()),
            "hf_generate_ids": gen_ids,
        }
        summary["clips"].append(entry)
        print(f"[{name}] {tag}: {r['n_pos']} positions, margin {r['min_margin']:.3g} "
              f"({r['rel_margin']:.2e} std), {r['distinct']} distinct text ids, "
              f"mel f32-f64 {entry['mel_max_abs_diff_float32_vs_float64']:.2e}, "
              f"text {entry['text']!r}")
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--audio", default="tests/fixtures/audio")
    ap.add_argument("--out", default="tests/fixtures")
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    fe = VoxtralRealtimeFeatureExtractor()
    os.makedirs(args.out, exist_ok=True)
    save_file({"mel_filters": torch.from_numpy(fe.mel_filters.astype(np.float32)).contiguous()},
              os.path.join(args.out, "mel_filters.safetensors"))
    toks = vocab_bytes()
    for name in args.models:
        build_one(name, MODELS[name], args.audio, args.out, toks, fe)


if __name__ == "__main__":
    sys.exit(main())
