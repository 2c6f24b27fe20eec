#!/usr/bin/env python3
"""Synthetic speech for the demo model: espeak-ng, connected and word by word, with word timings.

Each utterance is a sentence of the demo domain (digits, numbers, a few hundred common words,
short commands) or a random order of its words, spoken by one espeak-ng voice (an English
accent plus a voice variant) at one rate and pitch, in one of two styles:
  - connected: the whole phrase spoken at once through libespeak-ng, each word's first and last
    sample taken from the synthesizer's own events (espeak_api.py; check_alignment.py measures
    them), then room reverberation, coloured noise and gain (augment.py);
  - words: every word synthesized on its own by the espeak-ng command, trimmed of silence and
    joined with short random pauses, white noise and gain (the original corpus).
--style mix (default) plans: the original word-by-word held-out set (set "words", ids
heldout-NNNNN, the same audio as before), four connected held-out sets (HELDOUT_SETS), and
training utterances, 70% connected (40% of them random word orders) and 30% word by word, with
none of the held-out sentences. --style words plans the original corpus exactly.

Runs where espeak-ng, libespeak-ng and numpy exist (a Debian machine: apt-get install espeak-ng
python3-numpy; or the GPU test machine, with them carried there):
  tools/demo_model/corpus.py --out /tmp/corpus --train 30000 --jobs 16
writes shards of 16 kHz 16-bit audio (audio_NNN.npy) and manifest.jsonl, one line per
utterance: {"id", "split", "set", "style", "voice", "rate", "pitch", "condition", "shard",
"offset", "samples", "text", "words": [[word, start, end]...]}. `--wavs heldout` also writes
that split's utterances as WAV files under <out>/wav/. The plan is seeded: the same arguments
give the same sentences, voices, conditions and audio on any machine (up to FFT rounding).
"""
import argparse
import io
import json
import os
import random
import subprocess
import sys
import wave
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import augment
import espeak_api

RATE = 16000
ESPEAK_RATE = 22050

DIGITS = "zero one two three four five six seven eight nine".split()
TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ["hundred", "thousand"]
COMMON = (
    "the a an and or but of to in on at for with from by up down out over under again then once here there "
    "when where why how all any both each few more most other some such no not only own same so than too "
    "very can will just don't should now i you he she it we they me him her us them my your his its our "
    "their this that these those am is are was were be been have has had do does did say said get got make "
    "made go went come came see saw know knew take took give gave find think tell ask work seem feel try "
    "leave call good new first last long great little old right big high different small large next early "
    "young important few public bad same able time year people way day man woman child world life hand "
    "part place case week company system program question government number night point home water room "
    "mother area money story fact month lot study book eye job word business issue side kind head house "
    "service friend father power hour game line end member law car city community name president team "
    "minute idea kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force education "
    "yes please thank thanks hello goodbye sorry okay today tomorrow yesterday"
).split()
COMMANDS = (
    "turn switch set start stop pause play resume open close lock unlock show hide call send read "
    "add remove delete find search cancel repeat skip volume louder quieter brighter dimmer lights light "
    "music song timer alarm reminder message weather kitchen bedroom bathroom living garage front back "
    "door window temperature degrees percent minutes seconds hours channel radio television fan heating "
    "oven coffee list shopping note camera photo video screen mute unmute up down left right off"
).split()
# Words that espeak-ng says exactly like another word of the vocabulary (espeak-ng -x, in the
# training accents and the held-out en-029, which says "they" as "day"): no model can tell them
# apart in a list of random words, so the vocabulary keeps one of each.
HOMOPHONES = {"eye", "hour", "knew", "know", "their", "too", "they"}
VOCABULARY = sorted(set(DIGITS + TEENS + TENS + SCALES + COMMON + COMMANDS) - HOMOPHONES)
# "to" and "for" sound like "two" and "four": they appear in commands, where context tells
# them apart, never in random word lists.
RANDOM_WORDS = [w for w in VOCABULARY if w not in ("to", "for")]

ACCENTS_TRAIN = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbcwmd"]
ACCENTS_HELDOUT = ["en-029"]
VARIANTS_TRAIN = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3",
                  "Alex", "Andy", "adam", "anika", "belinda", "david", "edward", "iven", "john", "linda", "max",
                  "michel", "paul", "robert", "steph", "travis", "zac", ""]
VARIANTS_HELDOUT = ["f5", "m8", "klatt4", "Annie", "benjamin", "grandma"]
# Held-out rates lie between training rates: the model is asked to interpolate, not extrapolate.
RATES_TRAIN = [100, 115, 130, 150, 165, 180, 195, 215, 230]
RATES_HELDOUT = [140, 205]
# Connected speech draws on more of espeak-ng's variants (the robotic, whispered and novelty
# ones left out) and on a wider range of rates; none of the held-out variants or rates.
VARIANTS_TRAIN_CONNECTED = VARIANTS_TRAIN + [
    "Alicia", "Andrea", "AnxiousAndy", "Denis", "Diogo", "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee",
    "Marco", "Mario", "Michael", "Mike", "Nguyen", "antonio", "aunty", "boris", "caleb", "ed", "edward2",
    "grandpa", "gustave", "iven2", "iven3", "iven4", "klatt5", "klatt6", "marcelo", "miguel", "norbert", "pablo",
    "pedro", "quincy", "rob", "sandro", "shelby", "steph2", "steph3", "victor"]
RATES_TRAIN_CONNECTED = [90] + RATES_TRAIN + [250]


def number_words(n):
    """English words for 0 <= n < 10000 (e.g. 342 -> three hundred forty two)."""
    if n < 10:
        return [DIGITS[n]]
    if n < 20:
        return [TEENS[n - 10]]
    if n < 100:
        return [TENS[n // 10 - 2]] + ([] if n % 10 == 0 else [DIGITS[n % 10]])
    if n < 1000:
        return [DIGITS[n // 100], "hundred"] + ([] if n % 100 == 0 else number_words(n % 100))
    return number_words(n // 1000) + ["thousand"] + ([] if n % 1000 == 0 else number_words(n % 1000))


def sentence(rng):
    """One sentence of the domain, as a word list (a third of them random word lists)."""
    kind = rng.random()
    if kind < 0.25:
        return command(rng)
    if kind < 0.5:
        return number_sentence(rng)
    if kind < 0.65:
        return digit_string(rng)
    return random_words(rng, 2, 9)


def grammar_sentence(rng):
    """A command, a number or a digit string, in sentence()'s proportions."""
    kind = rng.random() * 0.65
    return command(rng) if kind < 0.25 else number_sentence(rng) if kind < 0.5 else digit_string(rng)


def random_words(rng, shortest, longest):
    return [rng.choice(RANDOM_WORDS) for _ in range(rng.randint(shortest, longest))]


def digit_string(rng):
    return [rng.choice(DIGITS) for _ in range(rng.randint(3, 8))]


def number_sentence(rng):
    return number_words(rng.choice([rng.randint(0, 9), rng.randint(10, 99), rng.randint(100, 999), rng.randint(1000, 9999)]))


def command(rng):
    return rng.choice([
        lambda: ["set", "a", "timer", "for"] + number_words(rng.randint(1, 99)) + [rng.choice(["minutes", "seconds", "hours"])],
        lambda: ["turn", rng.choice(["on", "off"]), "the", rng.choice(["kitchen", "bedroom", "bathroom", "living", "garage"]),
                 rng.choice(["lights", "light", "fan", "heating"])],
        lambda: ["set", "the", "temperature", "to"] + number_words(rng.randint(10, 30)) + ["degrees"],
        lambda: ["call", rng.choice(["mother", "father", "friend", "office", "home"]), rng.choice(["now", "today", "tomorrow"])],
        lambda: [rng.choice(["play", "pause", "stop", "skip"]), "the", rng.choice(["music", "song", "radio", "video"])],
        lambda: ["volume", rng.choice(["up", "down"])] + number_words(rng.randint(1, 100)) + ["percent"],
        lambda: [rng.choice(["open", "close", "lock", "unlock"]), "the", rng.choice(["front", "back", "garage"]), "door"],
        lambda: ["add", rng.choice(RANDOM_WORDS), "to", "the", "shopping", "list"],
    ])()


def resample(x, source_rate):
    """Band-limited resampling to RATE by truncating the spectrum (an ideal low-pass at the
    new Nyquist); espeak-ng's output has silence at both ends, so the periodic wrap is harmless."""
    n_out = int(round(len(x) * RATE / source_rate))
    if len(x) == 0 or n_out == 0:
        return np.zeros(0, np.float32)
    spectrum = np.fft.rfft(x)[: n_out // 2 + 1]
    return (np.fft.irfft(spectrum, n_out) * (n_out / len(x))).astype(np.float32)


def espeak(word, voice, rate, pitch):
    args = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "--stdout", word]
    data = subprocess.run(args, check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(data)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        source_rate = w.getframerate()
    audio = resample(pcm, source_rate)
    # Trim the silence espeak-ng puts around a word.
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if len(loud) == 0:
        return audio[:0]
    return audio[max(loud[0] - 80, 0): loud[-1] + 160]


def synthesize(job):
    """One utterance: (id, split, words, voice, rate, pitch, seed) -> (audio, spans)."""
    uid, split, words, voice, rate, pitch, seed = job
    rng = random.Random(seed)
    pieces, spans, at = [], [], 0
    lead = rng.randint(int(0.05 * RATE), int(0.4 * RATE))
    pieces.append(np.zeros(lead, np.float32))
    at += lead
    for w in words:
        clip = espeak(w, voice, rate, pitch)
        spans.append([w, at, at + len(clip)])
        pieces.append(clip)
        at += len(clip)
        gap = rng.randint(int(0.03 * RATE), int(0.2 * RATE))
        pieces.append(np.zeros(gap, np.float32))
        at += gap
    pieces.append(np.zeros(rng.randint(int(0.1 * RATE), int(0.5 * RATE)), np.float32))
    audio = np.concatenate(pieces) * rng.uniform(0.3, 1.2)
    speech_power = float(np.mean(audio[spans[0][1]:spans[-1][2]] ** 2)) + 1e-12
    snr_db = rng.uniform(15.0, 45.0)
    noise = np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32)
    audio += noise * np.sqrt(speech_power / 10 ** (snr_db / 10))
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16)
    return uid, split, words, pcm, spans


def synthesize_connected(job):
    """One utterance spoken whole by libespeak-ng, word spans from its events (espeak_api.py), in
    augment.py's recording conditions. job: a dict of plan_mix(); returns (job, int16 audio, spans)."""
    rng = np.random.default_rng(job["seed"])
    audio, spans = espeak_api.Synth.get().speak_words(job["words"], job["voice"], job["rate"], job["pitch"], job["range"])
    speech = resample(audio.astype(np.float32) / 32768.0, espeak_api.SOURCE_RATE)
    lead = int(rng.integers(int(0.05 * RATE), int(0.4 * RATE)))
    tail = int(rng.integers(int(0.1 * RATE), int(0.5 * RATE)))
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    scale = RATE / espeak_api.SOURCE_RATE
    words = [[w, lead + int(round(s * scale)), lead + min(int(round(e * scale)), len(speech))]
             for w, (s, e) in zip(job["words"], spans)]
    audio = augment.apply(audio, (words[0][1], words[-1][2]), rng, job["condition"])
    return job, np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16), words


def synthesize_any(job):
    """A plan_mix() job in either style, as (manifest fields, int16 audio)."""
    if job["style"] == "words":
        _, _, words, pcm, spans = synthesize((job["id"], job["split"], job["words"], job["voice"], job["rate"],
                                              job["pitch"], job["seed"]))
    else:
        try:
            _, pcm, spans = synthesize_connected(job)
        except ValueError as e:  # events that cannot be matched to the words: left out, reported
            return {"id": job["id"], "error": str(e)}, None
        words = job["words"]
    meta = {k: job[k] for k in ("id", "split", "set", "style", "voice", "rate", "pitch")}
    if "condition" in job:
        meta["condition"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in job["condition"].items()}
    return dict(meta, text=" ".join(words), words=spans), pcm


def write_wav(path, pcm):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def plan(n_train, n_heldout, seed):
    rng = random.Random(seed)
    heldout_sentences, jobs = set(), []
    while len(heldout_sentences) < n_heldout:
        heldout_sentences.add(" ".join(sentence(rng)))
    heldout = sorted(heldout_sentences)
    rng.shuffle(heldout)
    for i, text in enumerate(heldout):
        voice = f"{rng.choice(ACCENTS_TRAIN + ACCENTS_HELDOUT)}+{rng.choice(VARIANTS_HELDOUT)}"
        jobs.append((f"heldout-{i:05d}", "heldout", text.split(), voice, rng.choice(RATES_HELDOUT),
                     rng.randint(30, 70), rng.randrange(1 << 30)))
    i = 0
    while i < n_train:
        words = sentence(rng)
        if " ".join(words) in heldout_sentences:
            continue
        variant = rng.choice(VARIANTS_TRAIN)
        voice = rng.choice(ACCENTS_TRAIN) + (f"+{variant}" if variant else "")
        jobs.append((f"train-{i:06d}", "train", words, voice, rng.choice(RATES_TRAIN), rng.randint(25, 75),
                     rng.randrange(1 << 30)))
        i += 1
    return jobs


# Connected-speech held-out sets: what each one holds and which of its parts training never
# saw. Every held-out sentence is also kept out of training.
HELDOUT_SETS = {
    "sentences": "unseen commands, numbers and digit strings; training voices and rates",
    "voices": "unseen sentences, 6 unseen voice variants (a third in the unseen en-029 accent); training rates",
    "rates": "unseen sentences at unseen rates (140, 205 words/min); training voices",
    "random": "random orders of 3-9 vocabulary words; half in unseen voices, half at unseen rates",
}


def _voice(rng, accents, variants):
    variant = rng.choice(variants)
    return rng.choice(accents) + (f"+{variant}" if variant else "")


def heldout_job(name, i, seed):
    """Job i of held-out set `name`: its own seeded stream, so sets and their sizes are independent."""
    rng = random.Random(f"{seed}:{name}:{i}")
    unseen_voice = lambda: _voice(rng, ACCENTS_TRAIN + ACCENTS_HELDOUT, VARIANTS_HELDOUT)  # noqa: E731
    seen_voice = lambda: _voice(rng, ACCENTS_TRAIN, VARIANTS_TRAIN_CONNECTED)  # noqa: E731
    if name == "sentences":
        words, voice, rate = grammar_sentence(rng), seen_voice(), rng.choice(RATES_TRAIN_CONNECTED)
    elif name == "voices":
        words, voice, rate = grammar_sentence(rng), unseen_voice(), rng.choice(RATES_TRAIN_CONNECTED)
    elif name == "rates":
        words, voice, rate = grammar_sentence(rng), seen_voice(), rng.choice(RATES_HELDOUT)
    else:
        unseen = i % 2 == 0
        words = random_words(rng, 3, 9)
        voice = unseen_voice() if unseen else seen_voice()
        rate = rng.choice(RATES_TRAIN_CONNECTED if unseen else RATES_HELDOUT)
    return _connected_job(f"{name}-{i:04d}", "heldout", name, words, voice, rate, rng, pitch=(30, 70))


def _connected_job(uid, split, name, words, voice, rate, rng, pitch=(20, 80)):
    seed = rng.randrange(1 << 30)
    return {"id": uid, "split": split, "set": name, "style": "connected", "words": words, "voice": voice,
            "rate": rate, "pitch": rng.randint(*pitch), "range": rng.randint(20, 90), "seed": seed,
            "condition": augment.condition(np.random.default_rng(seed + 1))}


def plan_mix(n_train, n_words_heldout, n_per_set, seed, connected_share=0.7, random_share=0.4):
    """Held-out: the word-by-word set of plan() (same ids, same audio), then each connected set.
    Training: connected_share connected speech (random_share of it random word orders of 1-12
    words, the rest sentence()), the rest word by word as before; no held-out sentence."""
    jobs = []
    for uid, split, words, voice, rate, pitch, s in plan(0, n_words_heldout, seed):
        jobs.append({"id": uid, "split": split, "set": "words", "style": "words", "words": words, "voice": voice,
                     "rate": rate, "pitch": pitch, "seed": s})
    jobs += [heldout_job(name, i, seed) for name in HELDOUT_SETS for i in range(n_per_set)]
    # The legacy plan's held-out sentences, for any size up to 600, are kept out as well.
    held = {" ".join(j["words"]) for j in jobs} | {" ".join(j[2]) for j in plan(0, max(n_words_heldout, 600), seed)}
    rng = random.Random(f"{seed}:train")
    i = 0
    while i < n_train:
        connected = rng.random() < connected_share
        words = random_words(rng, 1, 12) if connected and rng.random() < random_share else sentence(rng)
        if " ".join(words) in held:
            continue
        uid = f"train-{i:06d}"
        if connected:
            voice = _voice(rng, ACCENTS_TRAIN, VARIANTS_TRAIN_CONNECTED)
            jobs.append(_connected_job(uid, "train", "train", words, voice, rng.choice(RATES_TRAIN_CONNECTED), rng))
        else:
            jobs.append({"id": uid, "split": "train", "set": "train", "style": "words", "words": words,
                         "voice": _voice(rng, ACCENTS_TRAIN, VARIANTS_TRAIN_CONNECTED),
                         "rate": rng.choice(RATES_TRAIN), "pitch": rng.randint(25, 75), "seed": rng.randrange(1 << 30)})
        i += 1
    return jobs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--style", choices=["mix", "words"], default="mix",
                    help="mix: connected and word-by-word training speech plus the connected held-out sets; "
                         "words: the original word-by-word corpus, exactly")
    ap.add_argument("--train", type=int, default=20000)
    ap.add_argument("--heldout", type=int, default=600, help="word-by-word held-out utterances (set 'words')")
    ap.add_argument("--heldout-per-set", type=int, default=200, help="utterances in each connected held-out set")
    ap.add_argument("--connected-share", type=float, default=0.7, help="share of connected training speech")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--shard", type=int, default=2000, help="utterances per audio shard")
    ap.add_argument("--wavs", choices=["train", "heldout"], action="append", default=[],
                    help="also write this split's utterances as 16-bit WAV files under <out>/wav/")
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "wav") if args.wavs else args.out, exist_ok=True)
    if args.style == "words":
        jobs = [{"id": uid, "split": split, "set": "words" if split == "heldout" else "train", "style": "words",
                 "words": words, "voice": voice, "rate": rate, "pitch": pitch, "seed": seed}
                for uid, split, words, voice, rate, pitch, seed in plan(args.train, args.heldout, args.seed)]
    else:
        jobs = plan_mix(args.train, args.heldout, args.heldout_per_set, args.seed, args.connected_share)
    manifest = open(os.path.join(args.out, "manifest.jsonl"), "w")
    shard, buffer, offset, skipped = 0, [], 0, 0
    with ProcessPoolExecutor(args.jobs) as pool:
        for done, (meta, audio) in enumerate(pool.map(synthesize_any, jobs, chunksize=16)):
            if audio is None:
                print(f"left out {meta['id']}: {meta['error']}", flush=True)
                skipped += 1
                continue
            manifest.write(json.dumps(dict(meta, shard=shard, offset=offset, samples=len(audio))) + "\n")
            buffer.append(audio)
            if meta["split"] in args.wavs:
                write_wav(os.path.join(args.out, "wav", meta["id"] + ".wav"), audio)
            offset += len(audio)
            if len(buffer) == args.shard:
                np.save(os.path.join(args.out, f"audio_{shard:03d}.npy"), np.concatenate(buffer))
                shard, buffer, offset = shard + 1, [], 0
            if done % 1000 == 0:
                print(f"{done}/{len(jobs)} utterances", flush=True)
    if buffer:
        np.save(os.path.join(args.out, f"audio_{shard:03d}.npy"), np.concatenate(buffer))
        shard += 1
    manifest.close()
    print(f"wrote {len(jobs) - skipped} utterances in {shard} shards to {args.out} ({skipped} left out)")


if __name__ == "__main__":
    sys.exit(main())
