"""Model.stream on the demo model: audio fed in pieces (int16 or float, at the rate declared)
gives the spoken text, while it arrives; many streams of one model at once, from threads."""

import threading
import time

import numpy as np
import pytest

import voxtral
from conftest import BACKEND, SOURCE, read_wav, sample_path, sox_resampled, truth


def uneven_chunks(audio, seed):
    rng = np.random.default_rng(seed)
    at = 0
    while at < len(audio):
        n = int(rng.integers(1, 6000))
        yield audio[at : at + n]
        at += n


def stream_text(stream, audio, seed=0):
    """Feeds `audio` in uneven pieces, taking the new text after each; returns it and the
    text that was out before finish()."""
    text = ""
    for chunk in uneven_chunks(audio, seed):
        stream.feed(chunk)
        text += "".join(p.text for p in stream)
    before_finish = text
    stream.finish()
    text += "".join(p.text for p in stream)
    return text.lstrip(), before_finish


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_pieces_give_the_spoken_text_while_the_audio_arrives(model, dtype):
    audio, rate = read_wav(sample_path("commands"))
    samples = audio if dtype == "int16" else audio.astype(np.float32) / 32768
    with model.stream(sample_rate=rate) as s:
        text, before_finish = stream_text(s, samples)
        assert s.finished
    assert text == truth("commands")["text"]
    # Live: the first four commands are out before the end of the audio is announced.
    assert before_finish.lstrip().startswith("set the temperature to twenty one degrees close the garage door")


@pytest.mark.parametrize("rate", [24000, 44100, 48000])
def test_audio_at_the_declared_rate_is_resampled(model, rate, tmp_path):
    audio = sox_resampled("commands", rate, tmp_path)
    with model.stream(sample_rate=rate) as s:
        assert s.sample_rate == rate
        text, _ = stream_text(s, audio, seed=rate)
    assert text == truth("commands")["text"]


def test_pieces_carry_their_words_times(model):
    audio, rate = read_wav(sample_path("timer"))
    with model.stream() as s:
        s.feed(audio)
        s.finish()
        pieces = list(s)
    words = []
    for p in pieces:
        assert p.text and p.token_id >= 0
        assert p.start <= p.end <= len(audio) / rate + 1e-6
        if p.text.startswith(" ") or not words:
            words.append([p.text.strip(), p.start, p.end])
        else:
            assert [p.start, p.end] == words[-1][1:]
            words[-1][0] += p.text
    true_words = truth("timer")["words"]
    assert [w[0] for w in words] == [w[0] for w in true_words]
    for got, true in zip(words, true_words):
        assert abs(got[1] - true[1]) <= 0.2 and abs(got[2] - true[2]) <= 0.2, (got, true)


def test_flush_brings_out_the_words_so_far(model):
    audio, _ = read_wav(sample_path("numbers"))  # "four one five two", a pause, "nine hundred twelve"
    first = int(truth("numbers")["words"][3][2] * 16000) + 3200  # 200 ms after "two" ends
    with model.stream() as s:
        s.feed(audio[:first])
        s.flush()
        assert "".join(p.text for p in s).strip() == "four one five two"
        s.feed(audio[first:])
        s.finish()
        assert "".join(p.text for p in s).strip() == "nine hundred twelve"


def test_iteration_without_new_text_ends_at_once(model):
    with model.stream() as s:
        assert list(s) == []
        s.feed(np.zeros(1600, dtype=np.float32))
        assert list(s) == []


def test_streams_of_one_model_run_at_once_from_threads(model):
    texts, errors = {}, {}

    def run(name, seed):
        try:
            audio, rate = read_wav(sample_path(name))
            with model.stream(sample_rate=rate) as s:
                texts[name] = stream_text(s, audio, seed)[0]
        except Exception as e:  # reported below
            errors[name] = e

    threads = [threading.Thread(target=run, args=(n, i)) for i, n in enumerate(["commands", "lights", "numbers", "timer"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == {}
    assert texts == {n: truth(n)["text"] for n in texts} and len(texts) == 4


def test_transcriptions_beyond_max_streams_wait_for_a_place():
    with voxtral.Model(SOURCE / "models" / "demo", backend=BACKEND, max_streams=2) as m:
        assert m.max_streams == 2
        names = ["commands", "lights", "numbers", "timer", "lights", "commands"]
        results = [None] * len(names)

        def run(i):
            try:
                results[i] = m.transcribe(sample_path(names[i])).text
            except Exception as e:
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(names))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [truth(n)["text"] for n in names]


def test_the_gil_is_released_while_the_engine_works(model):
    ticks = 0
    stop = threading.Event()

    def count():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    started = time.monotonic()
    model.transcribe(sample_path("commands"))
    elapsed = time.monotonic() - started
    stop.set()
    counter.join()
    # With the GIL held throughout, the counter would not run at all until the end.
    assert elapsed > 0.05 and ticks >= 10, (elapsed, ticks)
